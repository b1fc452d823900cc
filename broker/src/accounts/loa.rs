//! VNeID assurance levels (Decree 69/2024/NĐ-CP). Level 2 satisfies a level-1 requirement;
//! level 1 never satisfies a level-2 one. Stored and serialized as the integers 1 and 2, so
//! records in the session store and the `loa` SQL column keep their format.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Loa {
    One,
    Two,
}

impl Loa {
    pub fn as_u8(self) -> u8 {
        match self {
            Loa::One => 1,
            Loa::Two => 2,
        }
    }
}

impl From<Loa> for u8 {
    fn from(loa: Loa) -> u8 {
        loa.as_u8()
    }
}

impl From<Loa> for i64 {
    fn from(loa: Loa) -> i64 {
        i64::from(loa.as_u8())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct UnknownLoa(pub i64);

impl fmt::Display for UnknownLoa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown assurance level {}", self.0)
    }
}

impl std::error::Error for UnknownLoa {}

impl TryFrom<u8> for Loa {
    type Error = UnknownLoa;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Loa::try_from(i64::from(value))
    }
}

impl TryFrom<i64> for Loa {
    type Error = UnknownLoa;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Loa::One),
            2 => Ok(Loa::Two),
            other => Err(UnknownLoa(other)),
        }
    }
}

impl fmt::Display for Loa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u8())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_and_serialized_as_integers() {
        assert!(Loa::Two > Loa::One);
        assert_eq!(serde_json::to_string(&Loa::Two).unwrap(), "2");
        assert_eq!(serde_json::from_str::<Loa>("1").unwrap(), Loa::One);
        assert!(serde_json::from_str::<Loa>("3").is_err());
        assert!(serde_json::from_str::<Loa>("0").is_err());
    }
}
