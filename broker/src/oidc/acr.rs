//! The broker's `acr` values: one per VNeID assurance level (Decree 69/2024/NĐ-CP), configurable.
//! Level 2 satisfies a level-1 request; level 1 never satisfies a level-2 request.

use crate::accounts::Loa;

#[derive(Clone, Debug)]
pub struct AcrPolicy {
    values: [String; 2],
}

impl AcrPolicy {
    /// The values for level 1 and level 2.
    pub fn new(level1: impl Into<String>, level2: impl Into<String>) -> Self {
        Self {
            values: [level1.into(), level2.into()],
        }
    }

    pub fn value(&self, loa: Loa) -> &str {
        match loa {
            Loa::One => &self.values[0],
            Loa::Two => &self.values[1],
        }
    }

    pub fn level(&self, value: &str) -> Option<Loa> {
        if value == self.values[0] {
            Some(Loa::One)
        } else if value == self.values[1] {
            Some(Loa::Two)
        } else {
            None
        }
    }

    pub fn all(&self) -> &[String] {
        &self.values
    }

    /// The lowest level that satisfies the space-separated `acr_values` (any listed value is
    /// acceptable to the RP). Unknown values are ignored, as OIDC Core §3.1.2.1 allows; `None`
    /// when nothing known was asked for.
    pub fn required_level(&self, acr_values: &str) -> Option<Loa> {
        acr_values.split(' ').filter_map(|v| self.level(v)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_level() {
        let p = AcrPolicy::new("urn:vn:hue:broker:loa:1", "urn:vn:hue:broker:loa:2");
        assert_eq!(p.required_level("urn:vn:hue:broker:loa:2"), Some(Loa::Two));
        assert_eq!(
            p.required_level("urn:vn:hue:broker:loa:2 urn:vn:hue:broker:loa:1"),
            Some(Loa::One)
        );
        assert_eq!(p.required_level("something-else"), None);
        assert_eq!(p.value(Loa::Two), "urn:vn:hue:broker:loa:2");
    }
}
