//! Broker sessions as recorded in SQL: every login's `sid`, which app started it, on what kind
//! of device, when and from where, and when and why it ended. The session store (Redis) holds
//! the live browser session for speed; this table is the truth that survives losing it: a
//! session ended here is never taken as alive again (`Provider::live_sso`), and it is what the
//! citizen's account page and the support staff list.

use async_trait::async_trait;
use serde::Serialize;

use crate::transaction::Transaction;

/// One session as recorded.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SessionRecord {
    pub sid: String,
    pub account_id: String,
    /// The app whose login started the session.
    pub client_id: String,
    /// `mobile` or `web`.
    pub device_class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The browser's `User-Agent`, cut to 200 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Where from, coarsely: an IPv4 address's /24 or an IPv6 address's /48 (`203.0.113.0/24`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub started_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

#[async_trait]
pub trait SessionRecords: Send + Sync {
    /// Records a session's start. The same person logging in again in the same browser keeps
    /// its `sid`: the record then takes the new login's app, device, browser and time (a live
    /// session stays listed), unless it has ended.
    async fn record_start(&self, session: &SessionRecord) -> anyhow::Result<()>;
    /// Marks the session ended in the caller's transaction; false when it was not live.
    async fn record_end(
        &self,
        tx: &mut Transaction,
        sid: &str,
        reason: &str,
        now: i64,
    ) -> anyhow::Result<bool>;
    async fn session(&self, sid: &str) -> anyhow::Result<Option<SessionRecord>>;
    /// Whether the session has ended (false for a `sid` never recorded: sessions started
    /// before this table existed end through the session store's marker).
    async fn is_ended(&self, sid: &str) -> anyhow::Result<bool>;
    /// The account's sessions that have not ended and started after `since`, newest first.
    async fn open_sessions(
        &self,
        account_id: &str,
        since: i64,
    ) -> anyhow::Result<Vec<SessionRecord>>;
}

/// The browser a login came from, as a session records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct SeenFrom {
    /// `User-Agent`, cut to 200 characters.
    pub user_agent: Option<String>,
    /// [`coarse_address`] of the browser's address.
    pub address: Option<String>,
}

impl SeenFrom {
    pub fn new(user_agent: Option<&str>, ip: Option<std::net::IpAddr>) -> Self {
        Self {
            user_agent: user_agent
                .map(|ua| ua.chars().filter(|c| !c.is_control()).take(200).collect()),
            address: ip.map(coarse_address),
        }
    }
}

/// The coarse "where from" kept with a session: the network, not the address.
pub fn coarse_address(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => coarse_address(std::net::IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_kept_as_its_network_only() {
        assert_eq!(
            coarse_address("203.0.113.77".parse().unwrap()),
            "203.0.113.0/24"
        );
        assert_eq!(
            coarse_address("2001:db8:1234:5678::1".parse().unwrap()),
            "2001:db8:1234::/48"
        );
        assert_eq!(
            coarse_address("::ffff:198.51.100.9".parse().unwrap()),
            "198.51.100.0/24"
        );
    }
}
