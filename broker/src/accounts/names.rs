//! When two spellings of a name, or two dates of birth, are the same person's: the rules the
//! linking flow applies between a legacy record and what VNeID sends (docs/standardisation.md,
//! "Name and date rules").
//!
//! Names compare through [`name_key`], never through the text itself:
//! - Unicode NFC, so a decomposed (NFD) name equals its composed form;
//! - the look-alike eth `Ð`/`ð` (U+00D0/U+00F0), which keyboards and old fonts produce, is `Đ`/`đ`
//!   (U+0110/U+0111). `Đ` stays a letter of its own: it never equals `D`;
//! - case is folded and whitespace collapsed;
//! - the placement of the tone mark inside a syllable does not matter (old style `Hoà, Thuỷ`,
//!   new style `Hòa, Thủy`), but the tone itself does (`Thủy` is not `Thùy`). Each syllable is
//!   keyed as its letters with every other diacritic kept (circumflex, breve, horn) plus its tone
//!   as a suffix.
//!
//! Dates compare through [`compare_birthdates`]: ISO `yyyy-mm-dd`, or `yyyy` when only the year
//! is known (OpenID Connect allows it, and old apps often kept only the year); a year-only date
//! agrees with any date of that year.

use unicode_normalization::UnicodeNormalization;

/// The five Vietnamese tone marks as combining characters (NFD), with the suffix that stands
/// for each in a key: sắc, huyền, hỏi, ngã, nặng (the level tone, ngang, has no mark).
const TONES: [(char, char); 5] = [
    ('\u{0301}', '1'),
    ('\u{0300}', '2'),
    ('\u{0309}', '3'),
    ('\u{0303}', '4'),
    ('\u{0323}', '5'),
];

/// Characters that spreadsheets and copy-paste leave in names and that show as nothing.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
        || (c.is_control() && !c.is_whitespace())
}

/// A name as it is stored: NFC, invisible and control characters dropped, whitespace collapsed;
/// the spelling (tone placement, case, even an eth) is kept as typed.
pub fn tidy_name(name: &str) -> String {
    let nfc: String = name.nfc().filter(|c| !is_invisible(*c)).collect();
    nfc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The comparison key of a name: equal keys mean the same name under the rules above. Opaque
/// (tones become suffix digits): compare it, never show it.
pub fn name_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    let text: String = name
        .nfd()
        .filter(|c| !is_invisible(*c))
        .map(|c| match c {
            '\u{00D0}' | '\u{00F0}' => '\u{0111}',
            other => other,
        })
        .flat_map(char::to_lowercase)
        .collect();
    for syllable in text.split_whitespace() {
        if !key.is_empty() {
            key.push(' ');
        }
        let mut tones = String::new();
        let letters: String = syllable
            .chars()
            .filter(|c| match TONES.iter().find(|(mark, _)| mark == c) {
                Some((_, suffix)) => {
                    tones.push(*suffix);
                    false
                }
                None => true,
            })
            .collect();
        key.extend(letters.nfc());
        key.push_str(&tones);
    }
    key
}

/// Whether two names are the same name under the rules above.
pub fn names_agree(a: &str, b: &str) -> bool {
    name_key(a) == name_key(b)
}

/// A date of birth: a full calendar date, or only the year.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Birthdate {
    Full(time::Date),
    Year(i32),
}

impl Birthdate {
    /// Parses ISO `yyyy-mm-dd` (a real calendar date) or `yyyy`. Anything else, including
    /// `30 February`, month 13 or `dd/mm/yyyy`, is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
        let number = |range: std::ops::Range<usize>| text[range].parse::<u16>().ok();
        match b.len() {
            4 if digits(0..4) => number(0..4).map(|y| Self::Year(i32::from(y))),
            10 if digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10) => {
                let month = time::Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
                let day = u8::try_from(number(8..10)?).ok()?;
                time::Date::from_calendar_date(i32::from(number(0..4)?), month, day)
                    .ok()
                    .map(Self::Full)
            }
            _ => None,
        }
    }

    pub fn year(&self) -> i32 {
        match self {
            Self::Full(date) => date.year(),
            Self::Year(year) => *year,
        }
    }

    /// Later than `today` (a year-only date: a later year).
    pub fn is_after(&self, today: time::Date) -> bool {
        match self {
            Self::Full(date) => *date > today,
            Self::Year(year) => *year > today.year(),
        }
    }
}

/// How a legacy record's date of birth compares with the upstream's (VNeID's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BirthdateComparison {
    /// Both full dates and equal.
    Same,
    /// One side knows only the year, and the years are equal.
    SameYear,
    /// The legacy record has no date: nothing to compare, nothing contradicts.
    LegacyMissing,
    /// The upstream sent no date while the legacy record has one: it cannot be confirmed.
    UpstreamMissing,
    /// Different dates or years, or a date that cannot be read.
    Differ,
}

impl BirthdateComparison {
    /// Agreement in the sense, "date of birth (where present) agree": equal dates, equal
    /// years where one side knows only the year, or no legacy date at all. A legacy date that the
    /// upstream cannot confirm does not agree. Where the date must be positively confirmed (a
    /// 9-digit CMND match), ask [`BirthdateComparison::confirmed`] instead.
    pub fn agrees(self) -> bool {
        matches!(self, Self::Same | Self::SameYear | Self::LegacyMissing)
    }

    /// Both sides have a date and they agree.
    pub fn confirmed(self) -> bool {
        matches!(self, Self::Same | Self::SameYear)
    }
}

/// Compares a legacy record's date of birth with the upstream's, both ISO (`yyyy-mm-dd` or
/// `yyyy`). An unreadable date on either side never agrees.
pub fn compare_birthdates(legacy: Option<&str>, upstream: Option<&str>) -> BirthdateComparison {
    match (legacy, upstream) {
        (None, _) => BirthdateComparison::LegacyMissing,
        (Some(_), None) => BirthdateComparison::UpstreamMissing,
        (Some(legacy), Some(upstream)) => {
            match (Birthdate::parse(legacy), Birthdate::parse(upstream)) {
                (Some(Birthdate::Full(a)), Some(Birthdate::Full(b))) if a == b => {
                    BirthdateComparison::Same
                }
                (Some(a @ Birthdate::Year(_)), Some(b))
                | (Some(a), Some(b @ Birthdate::Year(_)))
                    if a.year() == b.year() =>
                {
                    BirthdateComparison::SameYear
                }
                _ => BirthdateComparison::Differ,
            }
        }
    }
}

/// `compare_birthdates(legacy, upstream).agrees()`: see [`BirthdateComparison::agrees`] for
/// what a missing date means.
pub fn birthdates_agree(legacy: Option<&str>, upstream: Option<&str>) -> bool {
    compare_birthdates(legacy, upstream).agrees()
}

#[cfg(test)]
mod tests;
