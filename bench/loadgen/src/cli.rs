//! Command-line arguments, their bounds, and the loopback-only rule for every URL the driver fetches.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use url::{Host, Url};

/// The longest measured window a scenario may ask for.
pub const MAX_DURATION_SECS: u64 = 120;
/// Requests are never let run unbounded in parallel.
pub const MAX_CONCURRENCY: usize = 1024;
/// Time before the measured window, so connection set-up and cold caches are not counted.
pub const WARM_UP: Duration = Duration::from_secs(2);

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Measure a running broker over loopback HTTP: client_credentials, refresh-token rotation, and full federated logins"
)]
pub struct Args {
    /// Broker issuer URL; must be on loopback (127.0.0.0/8, localhost or ::1).
    #[arg(long)]
    pub issuer: Url,

    /// Admin bearer token (the bootstrap token or an operator's): creates an operator, whose token
    /// registers the load-test client.
    #[arg(long, env = "BROKER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Use this existing client instead of registering one (needs --client-secret).
    #[arg(long, requires = "client_secret")]
    pub client_id: Option<String>,

    /// Secret of --client-id.
    #[arg(long, env = "LOADGEN_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,

    /// `login_hint` passed through /authorize to the mock VNeID, which then answers at once.
    #[arg(long, default_value = "C01")]
    pub login_hint: String,

    /// Scope requested at /authorize (and registered on the client).
    #[arg(long, default_value = "openid profile")]
    pub scope: String,

    #[arg(long, value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,

    /// Measured seconds per scenario (after a 2 s warm-up), 1..=120.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration: u64,

    /// Operations in flight at once (virtual users), 1..=1024.
    #[arg(long, default_value_t = 32, value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// Stop a scenario after this many operations even if time remains.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_ops: u64,

    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub request_timeout: u64,

    /// Server process whose CPU (utime+stime of all its threads) is charged per operation; repeatable.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,

    /// Also report the CPU of every `postgres` and `redis-server` process as "db cpu ms/op".
    #[arg(long)]
    pub postgres: bool,

    /// Read the one-time codes of the linking scenarios from this broker log (the dev SMS
    /// gateway's line, `BROKER_LOG=warn,broker::otp::dev=info`) instead of fetching `/dev/sms`,
    /// so that rendering that page, which no real login does, is not charged to the login.
    #[arg(long)]
    pub sms_log: Option<std::path::PathBuf>,

    /// mobile-login: devices per citizen, used in turn. 2 (the default): every login evicts the
    /// other device; 1: the same device logs in again and keeps the slot.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub mobile_devices: u8,

    /// mobile-login: logins on one device before the citizen turns to the next. 1 (the
    /// default): every login changes device; 20 with two devices: one login in 20 is on the
    /// other phone (evicts), the 19 others are the slot's holder logging in again.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub logins_per_device: u32,

    /// role-event-latency: approvals per second over all virtual users (each one event, after
    /// its request's own event), paced so that the dispatcher is not saturated.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,

    /// role-events: the subscriber's `id_token_signed_response_alg`, which its Security Event
    /// Tokens are signed with too (RS256, ES256 or EdDSA).
    #[arg(long, default_value = "RS256", value_parser = ["RS256", "ES256", "EdDSA"])]
    pub set_alg: String,

    /// The `id_token_signed_response_alg` of the client the driver registers for its logins
    /// and refreshes (RS256, ES256 or EdDSA).
    #[arg(long, default_value = "RS256", value_parser = ["RS256", "ES256", "EdDSA"])]
    pub id_token_alg: String,

    /// role-event-drain: a shell command run once the events are written, which starts the
    /// instance that delivers them (a broker whose dispatcher is enabled, over the same
    /// database) and prints that process's pid as its first line of output.
    #[arg(long)]
    pub drain_command: Option<String>,

    /// Runs the scenarios this many times in turn (e.g. `linking` with `--duration 3 --rounds
    /// 10`: plain, link-id, new citizen, phone link, plain, ...) and reports each scenario over
    /// all its rounds, plus each round's CPU per operation against the first scenario's of the
    /// same round. Short interleaved slices compare scenarios under the same machine: on a
    /// shared machine whose speed drifts by minutes, separate long runs do not.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,

    /// Also print one Markdown table row per scenario (for docs/benchmarks.md).
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    ClientCredentials,
    Refresh,
    Login,
    /// First logins of fresh identities whose legacy record holds their ID number: linked, no page.
    LoginLinkId,
    /// First logins of fresh identities without a record: phone page, code page, new account.
    LoginNewCitizen,
    /// First logins of fresh identities whose record has no ID number: its phone proven, linked.
    LoginPhoneLink,
    /// The plain login and the three first-login branches, one after the other (the synthetic
    /// legacy records must be imported first: see bench.sh).
    Linking,
    /// Back-channel logout: from an RP-initiated logout to the logout token at the RP's
    /// endpoint, which the driver serves on loopback (the broker must allow loopback receivers,
    /// as development does). Not part of `all`.
    BackchannelLogout,
    /// Logins of a mobile app with a `device_id`, each citizen's two devices in turn: with the
    /// one-mobile-device rule on, every login evicts the other device (synthetic legacy
    /// records must be imported first: see bench.sh). Not part of `all`.
    MobileLogin,
    /// The one-mobile-device rule's eviction: from device B's token response to the logout
    /// token of device A's session at the driver's endpoint (loopback receivers allowed, the
    /// rule on, synthetic records imported). Not part of `all`.
    DeviceEviction,
    /// Role events (issue 8) pushed as Security Event Tokens to a subscriber the driver serves on
    /// loopback: role-event-rate then role-event-latency (the agency tree must be imported:
    /// see bench.sh). Not part of `all`.
    RoleEvents,
    /// Virtual users request roles and an approver approves them as fast as they can; the
    /// receiver counts the SETs delivered per second.
    RoleEventRate,
    /// At `--rate` approvals per second: from the approve call's response to the `approved`
    /// SET's arrival at the receiver.
    RoleEventLatency,
    /// The dispatcher alone: the events are written as role-event-rate writes them while no
    /// instance delivers (the serving broker's dispatcher disabled); then `--drain-command`
    /// starts a delivering instance and the receiver counts the SETs per second until the
    /// backlog is gone. Not part of `role-events`.
    RoleEventDrain,
    All,
}

impl Scenario {
    /// The concrete scenarios to run, in order.
    pub fn expand(self) -> Vec<Scenario> {
        match self {
            Scenario::All => vec![
                Scenario::ClientCredentials,
                Scenario::Login,
                Scenario::Refresh,
            ],
            Scenario::RoleEvents => vec![Scenario::RoleEventRate, Scenario::RoleEventLatency],
            Scenario::Linking => vec![
                Scenario::Login,
                Scenario::LoginLinkId,
                Scenario::LoginNewCitizen,
                Scenario::LoginPhoneLink,
            ],
            one => vec![one],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::ClientCredentials => "client-credentials",
            Scenario::Refresh => "refresh",
            Scenario::Login => "login",
            Scenario::LoginLinkId => "login-link-id",
            Scenario::LoginNewCitizen => "login-new-citizen",
            Scenario::LoginPhoneLink => "login-phone-link",
            Scenario::Linking => "linking",
            Scenario::BackchannelLogout => "backchannel-logout",
            Scenario::MobileLogin => "mobile-login",
            Scenario::DeviceEviction => "device-eviction",
            Scenario::RoleEvents => "role-events",
            Scenario::RoleEventRate => "role-event-rate",
            Scenario::RoleEventLatency => "role-event-latency",
            Scenario::RoleEventDrain => "role-event-drain",
            Scenario::All => "all",
        }
    }
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if n == 0 || n > MAX_CONCURRENCY {
        return Err(format!("must be between 1 and {MAX_CONCURRENCY}"));
    }
    Ok(n)
}

impl Args {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure_loopback(&self.issuer).context("--issuer")?;
        if self.client_id.is_none() && self.admin_token.is_none() {
            bail!("either --admin-token (or BROKER_ADMIN_TOKEN) or --client-id/--client-secret is needed");
        }
        if self.max_ops == 0 {
            bail!("--max-ops must be at least 1");
        }
        if self.request_timeout == 0 || self.request_timeout > MAX_DURATION_SECS {
            bail!("--request-timeout must be between 1 and {MAX_DURATION_SECS}");
        }
        Ok(())
    }
}

/// This driver only ever talks to servers on this machine; any other host is refused before a request.
pub fn ensure_loopback(url: &Url) -> anyhow::Result<()> {
    if !matches!(url.scheme(), "http" | "https") {
        bail!("{url}: only http and https are supported");
    }
    let ok = match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    if !ok {
        bail!(
            "{url}: refusing a non-loopback host (only 127.0.0.0/8, localhost and ::1 are allowed)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_only() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.3.2.1/x",
            "http://localhost:1",
            "http://[::1]:8080",
        ] {
            assert!(ensure_loopback(&Url::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1",
            "http://192.168.1.1",
            "http://example.com",
            "http://localhost.example.com",
            "http://[::2]",
            "ftp://127.0.0.1",
        ] {
            assert!(ensure_loopback(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_parses() {
        let args = Args::try_parse_from([
            "loadgen",
            "--issuer",
            "http://127.0.0.1:8080",
            "--admin-token",
            "t",
            "--scenario",
            "client-credentials",
            "--server-pid",
            "1",
            "--server-pid",
            "2",
        ])
        .unwrap();
        assert_eq!(args.server_pids, vec![1, 2]);
        assert_eq!(args.concurrency, 32);
        args.validate().unwrap();
        assert!(Args::try_parse_from([
            "loadgen",
            "--issuer",
            "http://127.0.0.1",
            "--duration",
            "121"
        ])
        .is_err());
        assert!(Args::try_parse_from([
            "loadgen",
            "--issuer",
            "http://127.0.0.1",
            "--concurrency",
            "0"
        ])
        .is_err());
    }
}
