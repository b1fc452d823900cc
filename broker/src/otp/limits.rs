//! The caps on SMS one-time codes, counted with the session store's `incr` so that every
//! instance shares them: per account, per address, per phone, per carrier prefix (or foreign
//! country) and in all.
//!
//! Counts live in fixed windows (15 minutes, an hour, a Vietnamese calendar day), one counter
//! key per window, so a refusal can say exactly when to retry and a counter dies with its
//! window. The caps are counted from the requester's own budgets outwards: a request refused by
//! one cap has already counted against the caps before it, never against the ones after. So a
//! script that hammers one phone spends its account's and address's budgets and that phone's,
//! but not the province's daily budget.

use std::time::Duration;

use super::settings::OtpSettings;
use super::OtpRefused;
use crate::abuse::ClientKey;
use crate::accounts::phone::Phone;
use crate::crypto::{b64url, MasterKey};
use crate::sessions::SessionStore;

/// Vietnam's offset from UTC: daily caps reset at local midnight, like a provider's invoice day.
const VIETNAM_OFFSET: i64 = 7 * 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    QuarterHour,
    Hour,
    Day,
}

impl Window {
    /// The window holding `now`: its number and the instant it ends.
    fn at(self, now: i64) -> (i64, i64) {
        let (length, offset) = match self {
            Window::QuarterHour => (900, 0),
            Window::Hour => (3600, 0),
            Window::Day => (86_400, VIETNAM_OFFSET),
        };
        let index = (now + offset).div_euclid(length);
        (index, (index + 1) * length - offset)
    }
}

/// The caps, named as their settings so that an operator reading the log knows what to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cap {
    Account,
    Address,
    PhoneQuarterHour,
    PhoneDay,
    Prefix,
    Country,
    Global,
}

impl Cap {
    fn name(self) -> &'static str {
        match self {
            Cap::Account => "per_account_per_day",
            Cap::Address => "per_address_per_hour",
            Cap::PhoneQuarterHour => "per_phone_per_15_min",
            Cap::PhoneDay => "per_phone_per_day",
            Cap::Prefix => "per_prefix_per_day",
            Cap::Country => "per_country_per_day",
            Cap::Global => "global_per_day",
        }
    }

    fn window(self) -> Window {
        match self {
            Cap::Address => Window::Hour,
            Cap::PhoneQuarterHour => Window::QuarterHour,
            _ => Window::Day,
        }
    }

    fn limit(self, settings: &OtpSettings) -> u32 {
        match self {
            Cap::Account => settings.per_account_per_day,
            Cap::Address => settings.per_address_per_hour,
            Cap::PhoneQuarterHour => settings.per_phone_per_15_min,
            Cap::PhoneDay => settings.per_phone_per_day,
            Cap::Prefix => settings.per_prefix_per_day,
            Cap::Country => settings.per_country_per_day,
            Cap::Global => settings.global_per_day,
        }
    }

    /// Caps against SMS pumping: operators hear when one is filling up, before it refuses.
    fn is_shared(self) -> bool {
        matches!(self, Cap::Prefix | Cap::Country | Cap::Global)
    }
}

/// Who a code would go to and who asks for it.
pub(super) struct Request<'a> {
    pub phone: &'a Phone,
    pub account_key: &'a str,
    pub address: Option<ClientKey>,
}

/// Counts one send against every cap, in order; the first cap that is full refuses.
pub(super) async fn spend(
    store: &dyn SessionStore,
    master: &MasterKey,
    settings: &OtpSettings,
    request: &Request<'_>,
    now: i64,
) -> Result<(), OtpRefused> {
    // Phone numbers, accounts and addresses are personal data: counters are named by a keyed
    // hash of them, so the session store never holds them in the clear.
    let hidden = |what: &str, value: &str| {
        b64url(&master.otp_mac(format!("limit\0{what}\0{value}").as_bytes()))
    };
    let phone = hidden("phone", request.phone.e164());
    let prefix = request.phone.prefix();
    let mut caps = vec![(Cap::Account, hidden("account", request.account_key))];
    if let Some(address) = request.address {
        caps.push((Cap::Address, hidden("address", &address.to_string())));
    }
    caps.push((Cap::PhoneQuarterHour, phone.clone()));
    caps.push((Cap::PhoneDay, phone));
    if request.phone.e164().starts_with("+84") {
        caps.push((Cap::Prefix, prefix.clone()));
    } else {
        caps.push((Cap::Country, prefix.clone()));
    }
    caps.push((Cap::Global, "all".into()));

    for (cap, subject) in caps {
        let limit = cap.limit(settings);
        if limit == 0 {
            continue;
        }
        let (index, ends) = cap.window().at(now);
        let key = format!("otp:l:{}:{subject}:{index}", cap.name());
        // A minute past the window's end, so clocks a little apart still share the counter.
        let ttl = Duration::from_secs((ends - now).max(0) as u64 + 60);
        let count = store
            .incr(&key, ttl)
            .await
            .map_err(|e| OtpRefused::Unavailable(e.context("cannot count an SMS limit")))?;
        let retry_after = (ends - now).max(1) as u64;
        if count > u64::from(limit) {
            // One line per cap and window however hard it is hammered: the first refusal.
            if count == u64::from(limit) + 1 {
                let address = match (cap, request.address) {
                    (Cap::Address, Some(address)) => address.to_string(),
                    _ => String::new(),
                };
                tracing::warn!(
                    cap = cap.name(),
                    limit,
                    retry_after,
                    phone = %request.phone.masked(),
                    prefix = %prefix,
                    address = %address,
                    "SMS one-time codes refused: a cap is reached"
                );
            } else {
                tracing::debug!(cap = cap.name(), phone = %request.phone.masked(), "SMS cap still reached");
            }
            return Err(OtpRefused::Limited { retry_after });
        }
        if cap.is_shared() && limit >= 10 && count == u64::from(limit) * 8 / 10 {
            tracing::warn!(
                cap = cap.name(),
                limit,
                count,
                prefix = %prefix,
                "SMS one-time codes: 80% of a cap is spent"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-01-01 00:00 in Vietnam: every window starts here.
    const MIDNIGHT: i64 = 1_767_200_400;

    #[test]
    fn windows_end_where_they_should() {
        assert_eq!(Window::QuarterHour.at(MIDNIGHT + 899).1, MIDNIGHT + 900);
        assert_eq!(Window::Hour.at(MIDNIGHT + 10).1, MIDNIGHT + 3600);
        assert_eq!(Window::Day.at(MIDNIGHT).1, MIDNIGHT + 86_400);
        assert_eq!(Window::Day.at(MIDNIGHT - 1).1, MIDNIGHT);
        assert_ne!(Window::Day.at(MIDNIGHT - 1).0, Window::Day.at(MIDNIGHT).0);
    }
}
