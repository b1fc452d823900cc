//! Per-client-address rate limits on the endpoints that anyone can call without credentials and
//! that make the broker hold state (a pending login per `/authorize`) or do work upstream
//! (`/callback`), and on the admin API. In-process GCRA buckets (governor): each instance limits
//! on its own, which bounds what one address can make one instance store. Back-channel
//! endpoints are not limited here: they need client credentials first.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitSettings;

#[derive(Clone)]
pub struct Limits {
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    client_ip_header: Option<header::HeaderName>,
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

    /// The client's address: the peer, or the first address of a configured proxy header.
    fn client_ip(&self, req: &ServiceRequest) -> Option<IpAddr> {
        if let Some(name) = &self.client_ip_header {
            let forwarded = req.headers().get(name).and_then(|v| v.to_str().ok());
            if let Some(ip) = forwarded
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
            {
                return Some(ip);
            }
        }
        req.peer_addr().map(|a| a.ip())
    }

    /// `Some(seconds to wait)` when this request is over the limit.
    fn check(&self, req: &ServiceRequest) -> Option<u64> {
        let limiter = self.limiter.as_ref()?;
        let ip = self.client_ip(req)?;
        match limiter.check_key(&ip) {
            Ok(()) => None,
            Err(not_until) => Some(
                not_until
                    .wait_time_from(DefaultClock::default().now())
                    .as_secs()
                    .max(1),
            ),
        }
    }
}

fn limited(path: &str) -> bool {
    path == "/authorize"
        || path.starts_with("/callback/")
        || path == "/end_session"
        || path.starts_with("/admin/")
}

pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if limited(req.path()) {
        let wait = req
            .app_data::<web::Data<Limits>>()
            .and_then(|limits| limits.check(&req));
        if let Some(seconds) = wait {
            tracing::warn!(path = req.path(), "rate limit reached");
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
