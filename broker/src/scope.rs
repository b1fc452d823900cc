//! A scope set (RFC 6749 §3.3), parsed once from its space-separated form. Order is kept as
//! given, empty parts are dropped, and it is written back joined with single spaces: that is
//! the form stored in SQL, in the session store and in the access token's `scope` claim.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Splits on spaces; empty parts (leading, trailing or doubled spaces) are dropped.
    pub fn parse(s: &str) -> Self {
        Self(
            s.split(' ')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every scope in this set is also in `other`.
    pub fn is_within(&self, other: &Scope) -> bool {
        self.iter().all(|s| other.contains(s))
    }

    /// The space-separated form.
    pub fn as_string(&self) -> String {
        self.0.join(" ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

impl From<&str> for Scope {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

impl<'a> FromIterator<&'a str> for Scope {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

/// Serialized as the space-separated string.
impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(Self::parse(&s))
    }
}

/// For records that store the scope as a list of strings (the pending authorization request):
/// `#[serde(with = "crate::scope::as_list")]`.
pub mod as_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Scope;

    pub fn serialize<S: Serializer>(scope: &Scope, serializer: S) -> Result<S::Ok, S::Error> {
        scope.0.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Scope, D::Error> {
        let list = Vec::<String>::deserialize(deserializer)?;
        Ok(list.iter().map(String::as_str).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_once_and_joined_with_single_spaces() {
        let s = Scope::parse(" openid  profile ");
        assert!(s.contains("openid") && s.contains("profile") && !s.contains(""));
        assert_eq!(s.to_string(), "openid profile");
        assert_eq!(s.as_string(), "openid profile");
        assert_eq!(s.iter().collect::<Vec<_>>(), ["openid", "profile"]);
        assert!(Scope::parse("").is_empty());
        assert!(Scope::parse("profile").is_within(&s));
        assert!(!Scope::parse("profile email").is_within(&s));
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""openid profile""#);
        assert_eq!(
            serde_json::from_str::<Scope>(r#""openid  profile""#).unwrap(),
            s
        );
    }
}
