//! The personal identification number (số định danh cá nhân): 12 digits `PPP G YY RRRRRR`.
//! VNeID is the source of truth, so a number that fails the structure check is kept and
//! flagged, never refused. Masked in every log line.

/// Pre-2025 province codes (63 provinces); numbers already issued keep them.
const PROVINCES: &[u16] = &[
    1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36, 37,
    38, 40, 42, 44, 45, 46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74, 75, 77,
    79, 80, 82, 83, 84, 86, 87, 89, 91, 92, 93, 94, 95, 96,
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdCheck {
    Valid,
    /// Kept, but recorded and flagged for support staff.
    Flagged(&'static str),
}

/// Masks an identifier for logs: `046******123`.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

pub fn is_twelve_digits(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

/// Checks the structure against the birth year (`yyyy` prefix of `birthdate`) and gender.
pub fn check(value: &str, birthdate: Option<&str>, gender: Option<&str>) -> IdCheck {
    if !is_twelve_digits(value) {
        return IdCheck::Flagged("not 12 digits");
    }
    let digit = |i: usize| (value.as_bytes()[i] - b'0') as u16;
    let province = digit(0) * 100 + digit(1) * 10 + digit(2);
    if !PROVINCES.contains(&province) {
        return IdCheck::Flagged("unknown province code");
    }
    let g = digit(3);
    let century = 1900 + (g / 2) * 100;
    let year = century + digit(4) * 10 + digit(5);
    if let Some(birth_year) = birthdate
        .and_then(|d| d.get(..4))
        .and_then(|y| y.parse::<u16>().ok())
    {
        if birth_year != year {
            return IdCheck::Flagged("birth year does not match");
        }
    }
    let female = g % 2 == 1;
    match gender {
        Some("female") if !female => IdCheck::Flagged("gender digit does not match"),
        Some("male") if female => IdCheck::Flagged("gender digit does not match"),
        _ => IdCheck::Valid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask("046085690467"), "046******467");
        assert_eq!(mask("0905"), "****");
    }

    #[test]
    fn structure_check() {
        assert_eq!(
            check("046085690467", Some("1985-03-12"), Some("male")),
            IdCheck::Valid
        );
        assert_eq!(
            check("046085690467", Some("1986-03-12"), None),
            IdCheck::Flagged("birth year does not match")
        );
        assert_eq!(
            check("046085690467", Some("1985-03-12"), Some("female")),
            IdCheck::Flagged("gender digit does not match")
        );
        assert_eq!(
            check("999085690467", None, None),
            IdCheck::Flagged("unknown province code")
        );
        assert_eq!(
            check("04608569046", None, None),
            IdCheck::Flagged("not 12 digits")
        );
        assert_eq!(
            check("046315690467", Some("2015"), Some("female")),
            IdCheck::Valid
        );
    }
}
