//! The synthetic test citizens the mock can log in as (data/citizens-vneid.json).

use serde::Deserialize;
use serde_json::{Map, Value};

/// One test citizen: the claims a VNeID (variant A) upstream would send for them, plus the test
/// case they stand for so testers and drivers can pick them by case id.
#[derive(Clone, Debug, Deserialize)]
pub struct Citizen {
    /// Test case id, `C01`..`C12`.
    pub case: String,
    /// What the case exercises in the broker.
    pub summary: String,
    /// What the broker is expected to do with this citizen.
    #[serde(default)]
    pub expected: String,
    /// Legacy account ids this citizen should (or should not) be linked to.
    #[serde(default)]
    pub legacy_ids: Vec<String>,
    /// Phone number to enter when the broker asks for one (cases that go through OTP).
    #[serde(default)]
    pub phone_for_otp: Option<String>,
    /// Exactly the claims VNeID sends: `sub`, `TechID`, `SoDinhDanh`, `HoVaTen`, `acr`, ...
    pub claims: Map<String, Value>,
}

impl Citizen {
    pub fn sub(&self) -> &str {
        self.claim("sub").unwrap_or_default()
    }

    pub fn full_name(&self) -> &str {
        self.claim("HoVaTen").unwrap_or_default()
    }

    /// Assurance level as VNeID sends it: "1" or "2".
    pub fn level(&self) -> &str {
        self.claim("acr").unwrap_or_default()
    }

    fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

#[derive(Deserialize)]
struct CitizenFile {
    citizens: Vec<Citizen>,
}

/// Parses the embedded data set; every citizen must have a `sub`, or the mock could not issue
/// tokens for them.
pub(crate) fn load() -> anyhow::Result<Vec<Citizen>> {
    let file: CitizenFile = serde_json::from_str(include_str!("../../data/citizens-vneid.json"))?;
    if let Some(bad) = file.citizens.iter().find(|c| c.sub().is_empty()) {
        anyhow::bail!("test citizen {} has no `sub` claim", bad.case);
    }
    Ok(file.citizens)
}

/// Finds a citizen by test case id (`C01`, case-insensitive) or by VNeID subject, or makes the
/// synthetic citizen a `gen:<n>` hint names.
pub(crate) fn find(citizens: &[Citizen], hint: &str) -> Option<Citizen> {
    citizens
        .iter()
        .find(|c| c.case.eq_ignore_ascii_case(hint) || c.sub() == hint)
        .cloned()
        .or_else(|| super::synthetic::from_hint(hint))
}
