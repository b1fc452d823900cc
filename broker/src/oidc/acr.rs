//! The broker's `acr` values: one per VNeID assurance level (Decree 69/2024/NĐ-CP), configurable.
//! Level 2 satisfies a level-1 request; level 1 never satisfies a level-2 request.

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

    pub fn value(&self, loa: u8) -> &str {
        if loa >= 2 {
            &self.values[1]
        } else {
            &self.values[0]
        }
    }

    pub fn level(&self, value: &str) -> Option<u8> {
        self.values
            .iter()
            .position(|v| v == value)
            .map(|i| i as u8 + 1)
    }

    pub fn all(&self) -> &[String] {
        &self.values
    }

    /// The lowest level that satisfies the space-separated `acr_values` (any listed value is
    /// acceptable to the RP). Unknown values are ignored, as OIDC Core §3.1.2.1 allows; `None`
    /// when nothing known was asked for.
    pub fn required_level(&self, acr_values: &str) -> Option<u8> {
        acr_values.split(' ').filter_map(|v| self.level(v)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_level() {
        let p = AcrPolicy::new("urn:vn:hue:broker:loa:1", "urn:vn:hue:broker:loa:2");
        assert_eq!(p.required_level("urn:vn:hue:broker:loa:2"), Some(2));
        assert_eq!(
            p.required_level("urn:vn:hue:broker:loa:2 urn:vn:hue:broker:loa:1"),
            Some(1)
        );
        assert_eq!(p.required_level("something-else"), None);
        assert_eq!(p.value(2), "urn:vn:hue:broker:loa:2");
    }
}
