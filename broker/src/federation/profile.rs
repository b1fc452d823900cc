//! An upstream profile: everything that varies between VNeID variants (docs/vneid.md) and any
//! other standard OpenID provider, as configuration.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use crate::accounts::{AccountPolicy, Loa};
use crate::secret::Secret;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum DateFormat {
    /// `yyyyMMdd`, as VNeID's `NgayThangNamSinh`.
    #[serde(rename = "yyyyMMdd")]
    Compact,
    /// ISO 8601 `yyyy-mm-dd` or `yyyy` (OIDC `birthdate`).
    #[serde(rename = "iso")]
    Iso,
}

/// Claim names to look for, in order; the first present wins.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub subject: Vec<String>,
    pub personal_id: Vec<String>,
    pub legacy_cmnd: Vec<String>,
    pub full_name: Vec<String>,
    pub birthdate: Vec<String>,
    pub gender: Vec<String>,
    pub phone: Vec<String>,
    pub account_type: Vec<String>,
    pub assurance: Vec<String>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: names(&["sub"]),
            personal_id: names(&["SoDinhDanh", "citizenPid", "citizenId", "identityCardId"]),
            legacy_cmnd: names(&["SoCMND"]),
            full_name: names(&["HoVaTen", "fullName", "name"]),
            birthdate: names(&["NgayThangNamSinh", "birthDate", "birthdate"]),
            gender: names(&["GioiTinh", "gender"]),
            phone: names(&["SoDienThoai", "phone_number", "phone"]),
            account_type: names(&["LoaiTaiKhoan", "accountType"]),
            assurance: names(&["acr", "IAL", "loAs", "accountLevel"]),
        }
    }
}

/// The upstream's `acr_values` for each VNeID level. With only `level1` set, a login that needs
/// no particular level asks for level 1 too (the national portal always sends `LoA1`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AcrValues {
    pub level1: Option<String>,
    pub level2: Option<String>,
}

impl AcrValues {
    /// What to send for a login that requires `required` (none: level 1).
    pub fn for_level(&self, required: Option<Loa>) -> Option<&str> {
        match required.unwrap_or(Loa::One) {
            Loa::One => self.level1.as_deref(),
            Loa::Two => self.level2.as_deref(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamProfile {
    /// Short name used in the callback path `/callback/{name}` and in `idp_hint`. In an
    /// `[upstreams.NAME]` table the name is the table's key.
    pub name: String,
    pub display_name: String,
    /// Offered on the login page and to `idp_hint`; a disabled upstream is not built at all.
    pub enabled: bool,
    /// What its identities may do with accounts: `link_and_create`, `link_only` or
    /// `isolated` (a test gateway: accounts of its own, never a real one).
    pub accounts: AccountPolicy,
    pub issuer: Url,
    /// Read endpoints from `{issuer}/.well-known/openid-configuration`.
    pub discovery: bool,
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    pub auth_method: UpstreamAuthMethod,
    pub scopes: Vec<String>,
    pub use_nonce: bool,
    pub use_pkce: bool,
    pub use_id_token: bool,
    /// Also read the upstream's userinfo with the access token of the exchange: its claims
    /// complete the ID token's (variant B), or are the identity when `use_id_token` is off.
    pub use_userinfo: bool,
    /// `acr_values` sent to the upstream for the level the RP requires (variant B: `LoA1`,
    /// `LoA2`); nothing is sent for a level without a value.
    pub acr_values: AcrValues,
    /// Variant C: token and userinfo answers may come as `{"data", "key"}` envelopes, opened
    /// with this RSA key (`federation::envelope`).
    pub encryption: Option<super::envelope::EncryptionSettings>,
    /// Forward the RP's `login_hint` to the upstream.
    pub forward_login_hint: bool,
    /// The upstream returns `auth_time` when asked with `max_age`. When false, an RP's
    /// `max_age` is honoured by asking the upstream for a fresh login (`prompt=login`).
    pub sends_auth_time: bool,
    pub claims: ClaimNames,
    pub birthdate_format: DateFormat,
    /// Upstream assurance values → VNeID level (written 1 or 2; anything else is refused
    /// when the configuration is read).
    pub assurance_levels: HashMap<String, Loa>,
    /// Upstream `LoaiTaiKhoan` values that mean an individual citizen (who has a 12-digit ID).
    pub citizen_account_types: Vec<String>,
    /// Seconds of clock skew tolerated on upstream tokens.
    pub clock_skew_secs: u64,
    /// How long the upstream's discovery document and JWKS are trusted before they are fetched
    /// again (an unknown `kid` refetches the JWKS at once anyway).
    pub metadata_max_age_secs: u64,
    /// The whole of one upstream call (connect, send, answer), seconds.
    pub timeout_secs: u64,
    /// Calls in a row without an answer that open the circuit breaker (0: never).
    pub breaker_failures: u32,
    /// How long an open breaker answers logins with the outage page before it lets one
    /// probe through, seconds.
    pub breaker_open_secs: u64,
}

impl Default for UpstreamProfile {
    // The literal URL is valid; `expect` cannot fire.
    #[allow(clippy::expect_used)]
    fn default() -> Self {
        let assurance_levels = [
            ("1", Loa::One),
            ("2", Loa::Two),
            ("LoA1", Loa::One),
            ("LoA2", Loa::Two),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            name: "vneid".into(),
            display_name: "VNeID".into(),
            enabled: true,
            accounts: AccountPolicy::LinkAndCreate,
            issuer: Url::parse("http://127.0.0.1:8081").expect("static URL"),
            discovery: true,
            authorization_endpoint: None,
            token_endpoint: None,
            userinfo_endpoint: None,
            jwks_uri: None,
            client_id: "broker".into(),
            client_secret: None,
            client_secret_file: None,
            auth_method: UpstreamAuthMethod::ClientSecretBasic,
            scopes: vec!["openid".into()],
            use_nonce: true,
            use_pkce: true,
            use_id_token: true,
            use_userinfo: false,
            acr_values: AcrValues::default(),
            encryption: None,
            forward_login_hint: true,
            sends_auth_time: true,
            claims: ClaimNames::default(),
            birthdate_format: DateFormat::Compact,
            assurance_levels,
            citizen_account_types: vec!["1".into()],
            clock_skew_secs: 60,
            metadata_max_age_secs: 3600,
            timeout_secs: 10,
            breaker_failures: 5,
            breaker_open_secs: 30,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use figment::providers::{Format, Toml};
    use figment::Figment;

    use crate::accounts::Loa;

    fn levels(toml: &str) -> Option<HashMap<String, Loa>> {
        Figment::new().merge(Toml::string(toml)).extract().ok()
    }

    #[test]
    fn assurance_levels_are_read_as_levels() {
        let read = levels("IAL2 = 2\nIAL1 = 1").unwrap();
        assert_eq!(read.get("IAL2"), Some(&Loa::Two));
        assert_eq!(read.get("IAL1"), Some(&Loa::One));
        assert!(levels("IAL3 = 3").is_none());
        assert!(levels("IAL0 = 0").is_none());
    }
}
