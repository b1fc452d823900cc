//! Parsing of `application/x-www-form-urlencoded` input (query strings and form bodies).
//!
//! We parse by hand rather than through serde extractors so that a repeated parameter is an
//! error we report in OAuth terms (RFC 6749 §3.1 and §3.2 forbid repeats) instead of actix's
//! plain-text 400, and so that every field stays optional until the protocol code decides.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
#[error("parameter `{0}` is repeated")]
pub(crate) struct RepeatedParam(pub(crate) String);

#[derive(Debug, Default, Clone)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn parse(input: &[u8]) -> Result<Self, RepeatedParam> {
        let mut map = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(input) {
            let key = key.into_owned();
            if map.contains_key(&key) {
                return Err(RepeatedParam(key));
            }
            map.insert(key, value.into_owned());
        }
        Ok(Self(map))
    }

    /// A parameter's value; an empty value counts as absent (RFC 6749 §3.1).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn owned(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_owned)
    }
}
