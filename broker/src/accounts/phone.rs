//! Phone numbers, normalised to E.164 (`+84905123456`) with the `phonenumber` crate (Google's
//! libphonenumber metadata), so that every spelling people and spreadsheets use compares equal:
//! `0905 123 456`, `0905.123.456`, `+84 905 123 456`, `84905123456`, `0084905123456`,
//! `(+84) 905 123 456`, `905123456` (a spreadsheet dropped the leading 0).
//!
//! Vietnam moved its 11-digit mobile numbers to 10 digits in 2018 (`0168 xxx xxxx` became
//! `038 xxx xxxx`); old records still hold the old form, so the old prefixes are mapped first,
//! from the table below. A phone is contact data: it is never an identity key (numbers are
//! recycled and shared within families).

use std::fmt;

use phonenumber::country::Id;
use phonenumber::{Mode, PhoneNumber, Type};

/// The 11-digit mobile prefixes retired in 2018 and their 10-digit replacements (Ministry of
/// Information and Communications, Circular 22/2014 as amended; the switch ran from 15 September
/// to 15 November 2018).
const PREFIXES_2018: [(&str, &str); 21] = [
    // Viettel
    ("0162", "032"),
    ("0163", "033"),
    ("0164", "034"),
    ("0165", "035"),
    ("0166", "036"),
    ("0167", "037"),
    ("0168", "038"),
    ("0169", "039"),
    // MobiFone
    ("0120", "070"),
    ("0121", "079"),
    ("0122", "077"),
    ("0126", "076"),
    ("0128", "078"),
    // VinaPhone
    ("0123", "083"),
    ("0124", "084"),
    ("0125", "085"),
    ("0127", "081"),
    ("0129", "082"),
    // Vietnamobile
    ("0186", "056"),
    ("0188", "058"),
    // Gmobile
    ("0199", "059"),
];

/// A valid phone number in E.164 form. `Debug` and `Display` show it masked.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    e164: String,
    mobile_vn: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("no phone number")]
    Empty,
    #[error("not a phone number (only digits, spaces, + . - ( ) are allowed)")]
    NotANumber,
    #[error("not a valid phone number")]
    Invalid,
}

/// Normalises a phone number as people write it. Numbers without a country code are Vietnamese.
pub fn normalise(input: &str) -> Result<Phone, PhoneError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(PhoneError::Empty);
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')' | '+'))
    {
        return Err(PhoneError::NotANumber);
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let plus = text.trim_start_matches('(').starts_with('+');
    if plus && text.matches('+').count() > 1 {
        return Err(PhoneError::NotANumber);
    }
    if digits.len() < 8 || digits.len() > 15 {
        return Err(PhoneError::Invalid);
    }
    let national = if let Some(rest) = digits.strip_prefix("0084") {
        rest.to_string()
    } else if plus {
        match digits.strip_prefix("84") {
            Some(rest) => rest.to_string(),
            None => return foreign(&digits),
        }
    } else if digits.starts_with("84") && digits.len() == 11 {
        digits[2..].to_string()
    } else if let Some(rest) = digits.strip_prefix('0') {
        rest.to_string()
    } else if digits.len() == 9 {
        digits
    } else {
        return Err(PhoneError::Invalid);
    };
    let national = migrate_2018(&national);
    if national.len() == 9
        && MOBILE_PREFIXES_MISSING
            .iter()
            .any(|p| national.starts_with(p))
    {
        return Ok(Phone {
            e164: format!("+84{national}"),
            mobile_vn: true,
        });
    }
    let number = phonenumber::parse(Some(Id::VN), format!("0{national}"))
        .map_err(|_| PhoneError::Invalid)?;
    from_parsed(number)
}

/// Current mobile prefixes (without the 0) that the `phonenumber` crate's metadata does not
/// know yet: MobiFone's 089 (found by importing the synthetic legacy data, which uses every
/// real mobile prefix). Numbers of 9 national digits under them are mobiles.
const MOBILE_PREFIXES_MISSING: [&str; 1] = ["89"];

/// `+` and a country code other than Vietnam's.
fn foreign(digits: &str) -> Result<Phone, PhoneError> {
    let number = phonenumber::parse(None, format!("+{digits}")).map_err(|_| PhoneError::Invalid)?;
    from_parsed(number)
}

fn from_parsed(number: PhoneNumber) -> Result<Phone, PhoneError> {
    // Valid means of a known type: what `PhoneNumber::is_valid` checks, by the same metadata
    // lookup; asked once here rather than twice (each is a run of the type patterns).
    let kind = number.number_type(&phonenumber::metadata::DATABASE);
    if kind == Type::Unknown {
        return Err(PhoneError::Invalid);
    }
    let mobile_vn = number.code().value() == 84 && kind == Type::Mobile;
    Ok(Phone {
        e164: number.format().mode(Mode::E164).to_string(),
        mobile_vn,
    })
}

/// A national number (without its leading 0) in the pre-2018 11-digit form, moved to its
/// 10-digit replacement; any other number unchanged.
fn migrate_2018(national: &str) -> String {
    if national.len() == 10 && national.starts_with('1') {
        let old = format!("0{}", &national[..3]);
        if let Some((_, new)) = PREFIXES_2018.iter().find(|(o, _)| *o == old) {
            return format!("{}{}", &new[1..], &national[3..]);
        }
    }
    national.to_string()
}

impl Phone {
    /// A number the broker normalised and texted a code to, as a login's step state keeps it
    /// (E.164): taken back without parsing it again with the full metadata (a step page is
    /// served on every login's phone branch). Only mobiles receive codes, so a `+84` number here
    /// is a Vietnamese mobile. `None` for anything that is not `+` and 8 to 15 digits.
    pub fn texted(e164: &str) -> Option<Phone> {
        let digits = e164.strip_prefix('+')?;
        (digits.len() >= 8 && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Phone {
                e164: e164.to_string(),
                mobile_vn: digits.starts_with("84"),
            })
    }

    /// `+84905123456`.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// A Vietnamese mobile number (the only kind the broker texts unless configured otherwise).
    pub fn is_vietnamese_mobile(&self) -> bool {
        self.mobile_vn
    }

    fn vietnamese_national(&self) -> Option<&str> {
        self.e164.strip_prefix("+84")
    }

    /// As Vietnamese write it (`0905123456`); a foreign number stays in E.164.
    pub fn national(&self) -> String {
        match self.vietnamese_national() {
            Some(n) => format!("0{n}"),
            None => self.e164.clone(),
        }
    }

    /// The carrier prefix (`090`), or for a foreign number its country code (`+1`, up to
    /// three digits): what per-prefix caps against SMS pumping count by.
    pub fn prefix(&self) -> String {
        match self.vietnamese_national() {
            Some(n) => format!("0{}", &n[..2.min(n.len())]),
            None => match phonenumber::parse(None, &self.e164) {
                Ok(number) => format!("+{}", number.code().value()),
                Err(_) => self.e164.chars().take(4).collect(),
            },
        }
    }

    /// For logs and pages: the prefix and the last three digits (`0905***456`).
    pub fn masked(&self) -> String {
        let shown = self.national();
        let keep_start = shown.len().min(4);
        let keep_end = shown.len().saturating_sub(keep_start).min(3);
        format!(
            "{}{}{}",
            &shown[..keep_start],
            "*".repeat(shown.len() - keep_start - keep_end),
            &shown[shown.len() - keep_end..]
        )
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

impl fmt::Display for Phone {
    /// Masked: a `Phone` in a log line never shows the whole number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e164(input: &str) -> String {
        normalise(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .e164()
            .to_string()
    }

    #[test]
    fn a_texted_number_reads_back_as_it_was_normalised() {
        for input in ["0905123456", "0389123456", "0891234567", "+33612345678"] {
            let phone = normalise(input).unwrap();
            let back = Phone::texted(phone.e164()).unwrap();
            assert_eq!(back.e164(), phone.e164(), "{input}");
            assert_eq!(
                back.is_vietnamese_mobile(),
                phone.is_vietnamese_mobile(),
                "{input}"
            );
            assert_eq!(back.masked(), phone.masked(), "{input}");
        }
        for junk in [
            "",
            "+",
            "0905123456",
            "+84 905",
            "+8490512345x",
            "+1234567",
            "+1234567890123456",
        ] {
            assert!(Phone::texted(junk).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn every_spelling_in_the_legacy_data_normalises_to_one_number() {
        for spelling in [
            "0905123456",
            "0905 123 456",
            "0905.123.456",
            "0905-123-456",
            "+84905123456",
            "84 905 123 456",
            "+84 905 123 456",
            "905123456",
            "0084905123456",
            "(+84) 905 123 456",
            " 0905123456 ",
        ] {
            assert_eq!(e164(spelling), "+84905123456", "{spelling}");
        }
    }

    #[test]
    fn mobifone_089_is_a_mobile_although_the_metadata_lacks_it() {
        let phone = normalise("0893 823 138").unwrap();
        assert_eq!(phone.e164(), "+84893823138");
        assert!(phone.is_vietnamese_mobile());
        assert_eq!(e164("+84 895 123 456"), "+84895123456");
        assert_eq!(normalise("089382313"), Err(PhoneError::Invalid));
    }

    #[test]
    fn pre_2018_eleven_digit_numbers_move_to_their_new_prefix() {
        assert_eq!(e164("0168 014 0082"), "+84380140082");
        assert_eq!(e164("01680140082"), "+84380140082");
        assert_eq!(e164("+84 168 014 0082"), "+84380140082");
        assert_eq!(e164("0121 234 5678"), "+84792345678");
        assert_eq!(e164("0199 234 5678"), "+84592345678");
        // Every old prefix maps to a current mobile prefix.
        for (old, new) in PREFIXES_2018 {
            let phone = normalise(&format!("{old}2345678")).unwrap();
            assert_eq!(phone.national(), format!("{new}2345678"));
            assert!(phone.is_vietnamese_mobile(), "{old} -> {new}");
        }
    }

    #[test]
    fn malformed_numbers_are_refused() {
        assert_eq!(normalise(""), Err(PhoneError::Empty));
        assert_eq!(normalise("  "), Err(PhoneError::Empty));
        assert_eq!(normalise("09O5123456"), Err(PhoneError::NotANumber));
        assert_eq!(normalise("không có"), Err(PhoneError::NotANumber));
        assert_eq!(normalise("+84+905123456"), Err(PhoneError::NotANumber));
        assert_eq!(normalise("090512"), Err(PhoneError::Invalid));
        assert_eq!(normalise("0905123456789012"), Err(PhoneError::Invalid));
        assert_eq!(normalise("0005123456"), Err(PhoneError::Invalid));
    }

    #[test]
    fn landlines_and_foreign_numbers_are_valid_but_not_vietnamese_mobiles() {
        let landline = normalise("0234 3822 222").unwrap(); // Huế, area code 234
        assert_eq!(landline.e164(), "+842343822222");
        assert!(!landline.is_vietnamese_mobile());
        let foreign = normalise("+1 650 253 0000").unwrap();
        assert_eq!(foreign.e164(), "+16502530000");
        assert!(!foreign.is_vietnamese_mobile());
        assert_eq!(foreign.prefix(), "+1");
        assert_eq!(foreign.national(), "+16502530000");
        let mobile = normalise("0819282851").unwrap();
        assert!(mobile.is_vietnamese_mobile());
        assert_eq!(mobile.prefix(), "081");
    }

    #[test]
    fn validity_is_what_the_crate_calls_valid() {
        // `from_parsed` asks the number's type once instead of `is_valid` and then the type:
        // the same answer for every kind of number, valid or not, at home and abroad.
        let mut inputs: Vec<String> = [
            "+16502530000",
            "+442079460000",
            "+33612345678",
            "+8613800138000",
            "+61412345678",
            "+12025550100",
            "+999123456789",
            "+8499999999",
            "+84123",
            "+4412",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for prefix in 10..100 {
            for tail in ["1234567", "12345678", "123456"] {
                inputs.push(format!("0{prefix}{tail}"));
            }
        }
        let (mut valid, mut invalid) = (0, 0);
        for input in &inputs {
            let region = (!input.starts_with('+')).then_some(Id::VN);
            let Ok(number) = phonenumber::parse(region, input) else {
                continue;
            };
            let crate_says = number.is_valid();
            assert_eq!(from_parsed(number).is_ok(), crate_says, "{input}");
            if crate_says {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        assert!(
            valid > 50 && invalid > 50,
            "both kinds were tried: {valid} / {invalid}"
        );
    }

    #[test]
    fn a_phone_in_a_log_line_is_masked() {
        let phone = normalise("0905123456").unwrap();
        assert_eq!(phone.masked(), "0905***456");
        assert_eq!(phone.to_string(), "0905***456");
        assert!(!format!("{phone}").contains("123"));
        assert!(!format!("{phone:?}").contains("123"));
    }
}
