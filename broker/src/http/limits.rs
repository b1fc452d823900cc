//! Per-client-address rate limits on the endpoints that anyone can call without credentials and
//! that make the broker hold state (a pending login per `/authorize`) or do work upstream
//! (`/callback`), and on the admin API. In-process GCRA buckets (governor): each instance limits
//! on its own, which bounds what one address can make one instance store.
//!
//! The limiter is attached to the resources and scopes themselves (`web::resource(..).wrap(..)`),
//! never matched against the path: the router decodes `/auth%6Frize` into `/authorize`, and a
//! path filter that did not would let such a request through uncounted.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::abuse::ClientKey;
use crate::clock::{Clock as _, SystemClock};
use crate::config::RateLimitSettings;

/// Refused requests are logged as one summary line per this many seconds, not one line each.
const REPORT_EVERY_SECS: i64 = 10;

#[derive(Clone)]
pub struct Limits {
    limiter: Option<Arc<DefaultKeyedRateLimiter<ClientKey>>>,
    client_ip_header: Option<header::HeaderName>,
    refused: Arc<AtomicU64>,
    last_report: Arc<AtomicI64>,
}

impl Limits {
    pub fn new(settings: &RateLimitSettings) -> anyhow::Result<Self> {
        let client_ip_header = match &settings.client_ip_header {
            Some(name) => Some(header::HeaderName::try_from(name.as_str())?),
            None => None,
        };
        let limiter = match (
            NonZeroU32::new(settings.per_second),
            NonZeroU32::new(settings.burst),
        ) {
            (Some(rate), Some(burst)) if settings.enabled => Some(Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))),
            _ => None,
        };
        Ok(Self {
            limiter,
            client_ip_header,
            refused: Arc::new(AtomicU64::new(0)),
            last_report: Arc::new(AtomicI64::new(0)),
        })
    }

    /// Forgets addresses whose buckets are full again, so that the map does not grow forever.
    pub fn spawn_cleanup(&self) {
        if let Some(limiter) = self.limiter.clone() {
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_secs(60));
                loop {
                    ticker.tick().await;
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            });
        }
    }

    /// Who this request counts against (an IPv4 address or an IPv6 /64): the first address of
    /// a configured proxy header, else the peer.
    pub fn client_key(&self, req: &HttpRequest) -> Option<ClientKey> {
        let forwarded = self
            .client_ip_header
            .as_ref()
            .and_then(|name| req.headers().get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        forwarded
            .or_else(|| req.peer_addr().map(|a| a.ip()))
            .map(ClientKey::from_ip)
    }

    /// `Some(seconds to wait)` when this request is over the limit.
    fn check(&self, req: &ServiceRequest) -> Option<u64> {
        let limiter = self.limiter.as_ref()?;
        let key = self.client_key(req.request())?;
        match limiter.check_key(&key) {
            Ok(()) => None,
            Err(not_until) => Some(
                not_until
                    .wait_time_from(DefaultClock::default().now())
                    .as_secs()
                    .max(1),
            ),
        }
    }

    /// Counts a refused request and logs a summary at most once per `REPORT_EVERY_SECS`.
    fn report_refused(&self, path: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        // Only the log cadence reads the wall clock; no decision depends on it.
        let now = SystemClock.now();
        let last = self.last_report.load(Ordering::Relaxed);
        if now - last >= REPORT_EVERY_SECS
            && self
                .last_report
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                refused = self.refused.swap(0, Ordering::Relaxed),
                last_path = path,
                "rate limit reached (requests refused since the last report)"
            );
        }
    }
}

/// Middleware for the limited resources and scopes; wrap them with
/// `actix_web::middleware::from_fn(rate_limit)`.
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let broker = req.app_data::<web::Data<super::Broker>>().cloned();
    if let Some(limits) = broker.as_ref().map(|b| &b.limits) {
        if let Some(seconds) = limits.check(&req) {
            limits.report_refused(req.path());
            let response = HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, seconds.to_string()))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(serde_json::json!({
                    "error": "temporarily_unavailable",
                    "error_description": "too many requests from this address; try again later"
                }));
            return Ok(req.into_response(response));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
