//! Normalisation of upstream claims into an `UpstreamIdentity`, by the profile's claim names.
//! Names are NFC-normalised with whitespace collapsed; dates become ISO 8601.

use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use super::profile::{DateFormat, UpstreamProfile};
use crate::accounts::{Loa, UpstreamIdentity};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimsError {
    #[error("the upstream sent no {0}")]
    Missing(&'static str),
    #[error("the upstream sent an unreadable {0}")]
    Malformed(&'static str),
}

fn first<'a>(claims: &'a Map<String, Value>, names: &[String]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| claims.get(n).filter(|v| !v.is_null()))
}

/// Strings and numbers both arrive (e.g. `LoaiTaiKhoan` as "1" or 1).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => items.first().and_then(text),
        _ => None,
    }
}

pub fn normalise_name(name: &str) -> String {
    let nfc: String = name.nfc().filter(|c| !c.is_control()).collect();
    nfc.replace('\u{00D0}', "\u{0110}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_date(raw: &str, format: DateFormat) -> Option<String> {
    let digits_only = raw.bytes().all(|b| b.is_ascii_digit());
    let iso = match format {
        DateFormat::Compact if raw.len() == 8 && digits_only => {
            format!("{}-{}-{}", &raw[..4], &raw[4..6], &raw[6..])
        }
        DateFormat::Compact if raw.len() == 4 && digits_only => raw.to_string(),
        DateFormat::Compact => return None,
        DateFormat::Iso => raw.to_string(),
    };
    if iso.len() == 4 && iso.bytes().all(|b| b.is_ascii_digit()) {
        return Some(iso);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(&iso, &fmt).ok().map(|_| iso)
}

pub fn normalise(
    issuer: &str,
    claims: &Map<String, Value>,
    profile: &UpstreamProfile,
) -> Result<UpstreamIdentity, ClaimsError> {
    let names = &profile.claims;
    let sub = first(claims, &names.subject)
        .and_then(text)
        .ok_or(ClaimsError::Missing("subject"))?;
    if sub.len() > 255 || sub.chars().any(char::is_control) {
        return Err(ClaimsError::Malformed("subject"));
    }
    let full_name = first(claims, &names.full_name)
        .and_then(text)
        .map(|n| normalise_name(&n))
        .ok_or(ClaimsError::Missing("name"))?;
    let birthdate = match first(claims, &names.birthdate).and_then(text) {
        Some(raw) => Some(
            parse_date(&raw, profile.birthdate_format)
                .ok_or(ClaimsError::Malformed("birthdate"))?,
        ),
        None => None,
    };
    let bounded = |value: Option<String>, what: &'static str, max: usize| match value {
        Some(v) if v.len() > max || v.chars().any(char::is_control) => {
            Err(ClaimsError::Malformed(what))
        }
        other => Ok(other),
    };
    if full_name.chars().count() > 200 {
        return Err(ClaimsError::Malformed("name"));
    }
    let account_type = bounded(
        first(claims, &names.account_type).and_then(text),
        "account type",
        32,
    )?
    .unwrap_or_else(|| "1".into());
    let personal_id = bounded(
        first(claims, &names.personal_id).and_then(text),
        "personal ID",
        32,
    )?;
    // A citizen account carries a 12-digit number; foreigners and organisations do not and
    // are never asked for one. A malformed number is kept and flagged downstream, not refused.
    let loa = first(claims, &names.assurance)
        .and_then(text)
        .and_then(|v| profile.assurance_levels.get(&v).copied())
        .unwrap_or(Loa::One);
    let gender = first(claims, &names.gender)
        .and_then(text)
        .map(|g| match g.as_str() {
            "1" | "male" | "Nam" | "nam" => "male".to_string(),
            "2" | "female" | "Nữ" | "nữ" => "female".to_string(),
            _ => "other".to_string(),
        });
    Ok(UpstreamIdentity {
        upstream_iss: issuer.to_string(),
        upstream_sub: sub,
        personal_id,
        legacy_cmnd: bounded(
            first(claims, &names.legacy_cmnd).and_then(text),
            "CMND number",
            32,
        )?,
        full_name,
        birthdate,
        gender,
        loa,
        account_type,
        phone: bounded(first(claims, &names.phone).and_then(text), "phone", 32)?,
        auth_time: claims.get("auth_time").and_then(Value::as_i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn vneid_claims_are_normalised() {
        let p = UpstreamProfile::default();
        let c = claims(
            json!({"sub": "u1", "SoDinhDanh": "046085690467", "HoVaTen": "Võ  Hữu Tài ", "NgayThangNamSinh": "19850312", "LoaiTaiKhoan": 1, "acr": "2"}),
        );
        let id = normalise("https://vneid", &c, &p).unwrap();
        assert_eq!(id.full_name, "Võ Hữu Tài");
        assert_eq!(id.birthdate.as_deref(), Some("1985-03-12"));
        assert_eq!(id.loa, Loa::Two);
        assert_eq!(id.account_type, "1");
        assert_eq!(id.personal_id.as_deref(), Some("046085690467"));
    }

    #[test]
    fn foreigner_without_id_and_bad_dates() {
        let p = UpstreamProfile::default();
        let c = claims(
            json!({"sub": "u9", "HoVaTen": "John Smith", "NgayThangNamSinh": "19900101", "LoaiTaiKhoan": "2", "acr": "1"}),
        );
        let id = normalise("i", &c, &p).unwrap();
        assert_eq!(id.personal_id, None);
        assert_eq!(id.loa, Loa::One);
        let bad = claims(json!({"sub": "u9", "HoVaTen": "A", "NgayThangNamSinh": "19901301"}));
        assert_eq!(
            normalise("i", &bad, &p),
            Err(ClaimsError::Malformed("birthdate"))
        );
        let nameless = claims(json!({"sub": "u9"}));
        assert_eq!(
            normalise("i", &nameless, &p),
            Err(ClaimsError::Missing("name"))
        );
    }

    #[test]
    fn hostile_values_are_refused() {
        let p = UpstreamProfile::default();
        let nul = claims(json!({"sub": "u", "HoVaTen": "A", "SoDinhDanh": "046\u{0}85690467"}));
        assert_eq!(
            normalise("i", &nul, &p),
            Err(ClaimsError::Malformed("personal ID"))
        );
        let long = claims(json!({"sub": "u", "HoVaTen": "A", "LoaiTaiKhoan": "x".repeat(100)}));
        assert_eq!(
            normalise("i", &long, &p),
            Err(ClaimsError::Malformed("account type"))
        );
        let name = claims(json!({"sub": "u", "HoVaTen": "A".repeat(300)}));
        assert_eq!(
            normalise("i", &name, &p),
            Err(ClaimsError::Malformed("name"))
        );
    }

    #[test]
    fn eth_becomes_d_with_stroke_and_nfd_becomes_nfc() {
        assert_eq!(normalise_name("\u{00D0}oàn"), "\u{0110}oàn");
        assert_eq!(normalise_name("Hoa\u{0300}"), "Hoà");
    }
}
