//! Secrets: a string that never shows itself in `Debug`, and the rule that reads one given inline
//! or from a file. Its own module so that configuration and the domain types it holds (the
//! upstream profile) both use it without depending on each other.

use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

/// A secret string: redacted in `Debug`, only readable through `expose`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a secret given inline or, preferably, through a file (trailing newline trimmed).
/// An empty secret is an error, never "no secret": an empty admin token must not open the API.
pub fn read_secret(
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> anyhow::Result<Option<Secret>> {
    let secret = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read secret file {}", path.display()))?;
            Some(Secret::new(text.trim_end().to_string()))
        }
        None => inline.clone(),
    };
    if secret
        .as_ref()
        .is_some_and(|s| s.expose().trim().is_empty())
    {
        anyhow::bail!("a configured secret is empty");
    }
    Ok(secret)
}
