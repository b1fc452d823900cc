//! One row of a legacy export, validated into a `LegacyRecord` or refused with a reason that
//! names the field and never shows an ID number in clear.

use crate::accounts::legacy::{IdKind, LegacyRecord};
use crate::accounts::names::{tidy_name, Birthdate};
use crate::accounts::personal_id::mask;
use crate::accounts::phone;

/// The columns of an export, in this order (CSV header, JSON keys).
pub const COLUMNS: [&str; 7] = [
    "source",
    "legacy_id",
    "full_name",
    "birthdate",
    "phone",
    "personal_id",
    "email",
];

/// Birth dates before this year are typing errors, not people.
const FIRST_YEAR: i32 = 1900;

/// Why a row was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("{found} fields instead of 7")]
    FieldCount { found: usize },
    #[error("fields: {0}")]
    Fields(String),
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("{0}: empty")]
    Empty(&'static str),
    #[error("{0}: {1}")]
    Invalid(&'static str, &'static str),
    #[error("birthdate: not a date (yyyy-mm-dd or yyyy)")]
    NotADate,
    #[error("birthdate: in the future")]
    FutureDate,
    #[error("birthdate: before {FIRST_YEAR}")]
    AncientDate,
    #[error("phone: {0}")]
    Phone(String),
    #[error("personal_id: {reason} ({masked})")]
    PersonalId { reason: String, masked: String },
    #[error("legacy_id: duplicate of line {0}")]
    Duplicate(u64),
}

/// The seven fields as read, an empty field as `None`.
pub type Fields = [Option<String>; 7];

/// Validates and tidies a row. `today` is the province's date (UTC+7), `now` the import time.
pub fn validate(fields: Fields, today: time::Date, now: i64) -> Result<LegacyRecord, RowError> {
    let [source, legacy_id, full_name, birthdate, phone, personal_id, email] = fields;
    let source = key_field("source", source)?;
    let legacy_id = key_field("legacy_id", legacy_id)?;
    let full_name = tidy_name(full_name.as_deref().unwrap_or_default());
    if full_name.is_empty() {
        return Err(RowError::Empty("full_name"));
    }
    if full_name.chars().count() > 200 {
        return Err(RowError::Invalid("full_name", "longer than 200 characters"));
    }
    let birthdate = match trimmed(birthdate) {
        None => None,
        Some(text) => {
            let date = Birthdate::parse(&text).ok_or(RowError::NotADate)?;
            if date.is_after(today) {
                return Err(RowError::FutureDate);
            }
            if date.year() < FIRST_YEAR {
                return Err(RowError::AncientDate);
            }
            Some(text)
        }
    };
    let phone = match trimmed(phone) {
        None => None,
        Some(text) => Some(
            phone::normalise(&text)
                .map_err(|e| RowError::Phone(e.to_string()))?
                .e164()
                .to_string(),
        ),
    };
    let personal_id = trimmed(personal_id).map(id_number).transpose()?;
    let email = trimmed(email)
        .map(|e| {
            let ok = e.len() <= 254
                && e.split_once('@')
                    .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
                && !e.chars().any(|c| c.is_whitespace() || c.is_control());
            if ok {
                Ok(e)
            } else {
                Err(RowError::Invalid("email", "not an e-mail address"))
            }
        })
        .transpose()?;
    Ok(LegacyRecord {
        source,
        legacy_id,
        full_name,
        birthdate,
        phone,
        personal_id,
        email,
        account_id: None,
        linked_at: None,
        imported_at: now,
        updated_at: now,
    })
}

fn trimmed(field: Option<String>) -> Option<String> {
    field
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
}

fn key_field(name: &'static str, field: Option<String>) -> Result<String, RowError> {
    let value = trimmed(field).ok_or(RowError::Empty(name))?;
    if value.len() > 128 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RowError::Invalid(
            name,
            "spaces or more than 128 characters",
        ));
    }
    Ok(value)
}

fn id_number(text: String) -> Result<(IdKind, String), RowError> {
    if let Some(kind) = IdKind::of(&text) {
        return Ok((kind, text));
    }
    let reason = if !text.chars().all(|c| c.is_ascii_digit()) {
        "not digits only".to_string()
    } else {
        format!(
            "{} digits, expected 12 (or 9 for a CMND)",
            text.chars().count()
        )
    };
    Err(RowError::PersonalId {
        reason,
        masked: mask(&text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: time::Date = time::macros::date!(2025 - 06 - 01);

    fn row(fields: [&str; 7]) -> Fields {
        fields.map(|f| (!f.is_empty()).then(|| f.to_string()))
    }

    fn clean() -> [&'static str; 7] {
        [
            "hue-s",
            "HS1004105",
            "Đoàn Thị Ngọc Hòa",
            "1990-09-04",
            "0905 123 456",
            "046190982699",
            "hoa@example.com",
        ]
    }

    #[test]
    fn a_clean_row_is_tidied() {
        let mut fields = clean();
        fields[2] = " Ho\u{302}\u{300}  Thi\u{323} ";
        let r = validate(row(fields), TODAY, 7).expect("valid");
        assert_eq!(r.full_name, "Hồ Thị");
        assert_eq!(r.phone.as_deref(), Some("+84905123456"));
        assert_eq!(r.personal_id, Some((IdKind::Cccd, "046190982699".into())));
        assert_eq!((r.imported_at, r.updated_at), (7, 7));
    }

    #[test]
    fn optional_fields_may_be_empty() {
        let r = validate(
            row([
                "dvc-hue",
                "DVC-1",
                "Lê Xuân Phong",
                "1944",
                "",
                "191234567",
                "",
            ]),
            TODAY,
            0,
        )
        .expect("valid");
        assert_eq!(r.birthdate.as_deref(), Some("1944"));
        assert_eq!(r.personal_id, Some((IdKind::Cmnd, "191234567".into())));
        assert_eq!((r.phone, r.email), (None, None));
    }

    #[test]
    fn each_defect_is_named() {
        let cases: [(usize, &str, &str); 12] = [
            (0, "", "source: empty"),
            (1, " ", "legacy_id: empty"),
            (2, "   ", "full_name: empty"),
            (3, "1990-02-30", "birthdate: not a date"),
            (3, "1985-13-01", "birthdate: not a date"),
            (3, "không rõ", "birthdate: not a date"),
            (3, "2025-06-02", "birthdate: in the future"),
            (3, "1890", "birthdate: before 1900"),
            (
                5,
                "04619098269",
                "personal_id: 11 digits, expected 12 (or 9 for a CMND) (046*****269)",
            ),
            (5, "0461909826990", "personal_id: 13 digits"),
            (
                5,
                "0461909826O9",
                "personal_id: not digits only (046******6O9)",
            ),
            (6, "hoa at example", "email: not an e-mail address"),
        ];
        for (field, value, reason) in cases {
            let mut fields = clean();
            fields[field] = value;
            let error = validate(row(fields), TODAY, 0)
                .expect_err(value)
                .to_string();
            assert!(error.starts_with(reason), "{value}: {error}");
            assert!(!error.contains("046190982699"));
        }
    }

    #[test]
    fn phones_that_are_no_phones() {
        for bad in ["090512", "09O5123456", "không có"] {
            let mut fields = clean();
            fields[4] = bad;
            let error = validate(row(fields), TODAY, 0).expect_err(bad).to_string();
            assert!(error.starts_with("phone: "), "{bad}: {error}");
        }
    }
}
