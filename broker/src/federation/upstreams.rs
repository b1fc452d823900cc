//! The configured upstreams, as a list: `[upstream]` (named `vneid` unless it says otherwise)
//! first, then each `[upstreams.NAME]` table. Each upstream is built on its own — its HTTP
//! client, circuit breaker, metadata and JWKS cache — so that one hanging gateway never slows
//! logins through another. An upstream is chosen by name: the login page's buttons, an RP's
//! `idp_hint`, the callback path `/callback/{name}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::profile::UpstreamProfile;
use super::upstream::Upstream;
use crate::accounts::AccountPolicy;

/// The longest upstream name: it appears in paths, `idp_hint` and the SSO session.
const MAX_NAME: usize = 32;

/// The enabled profiles in the login page's order, each under its name. Refused: a name that
/// is empty, too long or not made of ASCII letters, digits, `-` and `_`; two upstreams whose
/// names differ only in case, or that share an issuer (the issuer is half of the link key, so
/// two upstreams with one issuer would reach each other's accounts); no enabled upstream.
pub fn profiles(
    first: &UpstreamProfile,
    more: &BTreeMap<String, UpstreamProfile>,
) -> anyhow::Result<Vec<UpstreamProfile>> {
    let named = more.iter().map(|(name, profile)| UpstreamProfile {
        name: name.clone(),
        ..profile.clone()
    });
    let all: Vec<UpstreamProfile> = std::iter::once(first.clone())
        .chain(named)
        .filter(|p| p.enabled)
        .collect();
    anyhow::ensure!(
        !all.is_empty(),
        "no enabled upstream: configure [upstream] or at least one [upstreams.NAME]"
    );
    for (i, profile) in all.iter().enumerate() {
        let name = &profile.name;
        anyhow::ensure!(
            valid_name(name),
            "upstream name {name:?}: 1 to {MAX_NAME} ASCII letters, digits, - and _"
        );
        for earlier in &all[..i] {
            anyhow::ensure!(
                !earlier.name.eq_ignore_ascii_case(name),
                "two upstreams are named {name:?}"
            );
            anyhow::ensure!(
                issuer(earlier) != issuer(profile),
                "upstreams {:?} and {name:?} have the same issuer: the issuer is half of the \
                 link key, so each upstream needs its own",
                earlier.name
            );
        }
    }
    Ok(all)
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn issuer(profile: &UpstreamProfile) -> &str {
    profile.issuer.as_str().trim_end_matches('/')
}

/// The built upstreams, in the login page's order.
pub struct Upstreams {
    list: Vec<Arc<Upstream>>,
    first: Arc<Upstream>,
}

impl Upstreams {
    pub fn build(profiles: Vec<UpstreamProfile>, broker_issuer: &str) -> anyhow::Result<Self> {
        let list = profiles
            .into_iter()
            .map(|p| {
                let name = p.name.clone();
                Upstream::new(p, broker_issuer)
                    .map(Arc::new)
                    .map_err(|e| e.context(format!("upstream {name:?}")))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let first = list
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no enabled upstream"))?;
        Ok(Self { list, first })
    }

    /// The upstream named `name` (exactly as configured).
    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.list.iter().find(|u| u.profile.name == name)
    }

    /// The first upstream: the one a pending login from before several upstreams existed went
    /// to.
    pub fn first(&self) -> &Arc<Upstream> {
        &self.first
    }

    /// Exactly one upstream: it needs no choice.
    pub fn only(&self) -> Option<&Arc<Upstream>> {
        match self.list.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.list.iter()
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|u| u.profile.name.clone()).collect()
    }

    /// The account policy of the upstream named `name`; an upstream no longer configured may
    /// do nothing with accounts.
    pub fn account_policy(&self, name: &str) -> Option<AccountPolicy> {
        self.get(name).map(|u| u.profile.accounts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(issuer: &str) -> UpstreamProfile {
        UpstreamProfile {
            issuer: issuer.parse().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn the_list_is_checked() {
        let first = UpstreamProfile::default();
        let more = |pairs: &[(&str, &str)]| -> BTreeMap<String, UpstreamProfile> {
            pairs
                .iter()
                .map(|(n, i)| (n.to_string(), named(i)))
                .collect()
        };
        let list = profiles(&first, &more(&[("test", "https://test.example")])).unwrap();
        let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["vneid", "test"], "[upstream] first, then by name");
        assert!(profiles(&first, &more(&[("VNeID", "https://other.example")])).is_err());
        assert!(profiles(&first, &more(&[("t", "http://127.0.0.1:8081/")])).is_err());
        assert!(profiles(&first, &more(&[("a/b", "https://x.example")])).is_err());
        assert!(profiles(&first, &more(&[("", "https://x.example")])).is_err());
        let off = UpstreamProfile {
            enabled: false,
            ..Default::default()
        };
        assert!(profiles(&off, &BTreeMap::new()).is_err(), "none enabled");
        let only = profiles(&off, &more(&[("test", "https://test.example")])).unwrap();
        assert_eq!(only.len(), 1);
    }

    fn load(toml: &str) -> anyhow::Result<Vec<String>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, format!("environment = \"development\"\n{toml}"))?;
        let settings = crate::config::Settings::load(Some(&path))?;
        Ok(settings
            .upstream_profiles()?
            .into_iter()
            .map(|p| p.name)
            .collect())
    }

    #[test]
    fn the_configuration_reads_the_list() {
        // Today's single table: one upstream, `vneid`.
        assert_eq!(load("[upstream]\nclient_id = \"b\"").unwrap(), ["vneid"]);
        // With `[upstream]`, the tables are added after it.
        let both = "[upstream]\nissuer = \"https://vneid.example\"\n\
                    [upstreams.test]\nissuer = \"https://test.example\"\naccounts = \"isolated\"";
        assert_eq!(load(both).unwrap(), ["vneid", "test"]);
        // Without it, the tables are the whole list.
        let only = "[upstreams.prod]\nissuer = \"https://prod.example\"\n\
                    [upstreams.test]\nissuer = \"https://test.example\"";
        assert_eq!(load(only).unwrap(), ["prod", "test"]);
        // The key is the name; an unknown key or policy is refused.
        assert!(
            load("[upstreams.test]\nname = \"other\"\nissuer = \"https://t.example\"").is_err()
        );
        assert!(load("[upstreams.test]\nissuer = \"https://t.example\"\ncolour = 1").is_err());
        assert!(
            load("[upstreams.test]\nissuer = \"https://t.example\"\naccounts = \"all\"").is_err()
        );
        assert!(load("[upstreams.\"a.b\"]\nissuer = \"https://t.example\"").is_err());
    }
}
