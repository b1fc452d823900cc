//! Request parameters of `/authorize`, `/end_session` and the back-channel endpoints, collected
//! once: a repeated parameter is refused (RFC 6749 §3.1, §3.2), values have length limits, and
//! an empty value counts as absent.

use std::collections::HashMap;

use super::error::OAuthError;

const MAX_PARAM_LEN: usize = 2048;
/// Parameters that are stored with every pending login get a tighter limit, so that
/// unauthenticated requests cannot make the session store hold much per request.
const SHORT_PARAMS: &[&str] = &[
    "state",
    "nonce",
    "login_hint",
    "ui_locales",
    "acr_values",
    "prompt",
    "max_age",
    "scope",
];
const MAX_SHORT_PARAM_LEN: usize = 512;

/// Parameters as collected by [`Params::collect`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Collects parameters, refusing repeated ones and oversized values; empty ones are dropped.
    pub fn collect(pairs: Vec<(String, String)>) -> Result<Self, OAuthError> {
        let mut map = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            let limit = if SHORT_PARAMS.contains(&k.as_str()) {
                MAX_SHORT_PARAM_LEN
            } else {
                MAX_PARAM_LEN
            };
            if v.len() > limit || k.len() > 64 {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} is too long",
                    truncate(&k)
                )));
            }
            if v.is_empty() {
                continue; // OAuth treats empty parameters as omitted.
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} is repeated",
                    truncate(&k)
                )));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Removes a parameter (client credentials, once they are read into `Presented`).
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn repeated_refused_empty_absent_long_refused() {
        let p = Params::collect(pairs(&[("a", "1"), ("b", "")])).unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert!(Params::collect(pairs(&[("a", "1"), ("a", "2")])).is_err());
        assert!(Params::collect(pairs(&[("state", &"x".repeat(513))])).is_err());
        assert!(Params::collect(pairs(&[("code", &"x".repeat(513))])).is_ok());
    }
}
