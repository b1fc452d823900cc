//! Synthetic citizens made on demand from a number: `login_hint=gen:<n>` logs in a person nobody
//! has seen before, so a benchmark can give every login a fresh VNeID identity. Everything is
//! derived from `n`, so the legacy records a benchmark imports (`legacy_csv`) agree with the
//! claims the mock later sends.

use std::fmt::Write as _;
use std::ops::Range;

use serde_json::{json, Map, Value};

use super::citizens::Citizen;

/// The `login_hint` prefix that asks for a synthetic citizen.
pub const HINT_PREFIX: &str = "gen:";

/// Legacy source of the records `legacy_csv` writes.
pub const LEGACY_SOURCE: &str = "bench";

/// The numbers of distinct identities (ID numbers and phones are unique below it).
pub const MAX_N: u64 = 1_000_000;

const FAMILY: &[&str] = &[
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Huỳnh",
    "Phan",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Hồ",
    "Ngô",
    "Dương",
    "Lý",
    "Tôn Nữ",
];
const MIDDLE: &[&str] = &[
    "Văn", "Thị", "Hữu", "Đức", "Minh", "Ngọc", "Quang", "Thanh", "Xuân", "Thuỳ",
];
const GIVEN: &[&str] = &[
    "An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Hoà", "Khánh", "Linh", "Lộc", "Mai", "Nam",
    "Phúc", "Quyên", "Sơn", "Thủy", "Trâm", "Tuấn", "Uyên", "Việt", "Xuân", "Yến", "Đạt",
];

/// Which kind of legacy record `legacy_csv` writes for each number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyKind {
    /// ID number, name and birth date agree with VNeID's: links at the first login, no page.
    Id,
    /// No ID number; the phone `phone(n)`, name and birth date: links once that phone is proven.
    Phone,
}

/// The citizen a `gen:<n>` hint names, or `None` when the hint is not of that form.
pub fn from_hint(hint: &str) -> Option<Citizen> {
    let n = hint.strip_prefix(HINT_PREFIX)?.parse::<u64>().ok()?;
    (n < MAX_N).then(|| citizen(n))
}

/// Synthetic citizen number `n` (`n < MAX_N`), as VNeID would send them (level 1 account).
pub fn citizen(n: u64) -> Citizen {
    let claims = json!({
        "sub": uuid_of(0x5e4e_0001, n),
        "TechID": uuid_of(0x7ec4_0001, n),
        "SoDinhDanh": personal_id(n),
        "HoVaTen": full_name(n),
        "NgayThangNamSinh": birthdate(n).replace('-', ""),
        "LoaiTaiKhoan": "1",
        "acr": "1",
    });
    let claims: Map<String, Value> = match claims {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Citizen {
        case: format!("{HINT_PREFIX}{n}"),
        summary: "synthetic citizen for benchmarks".into(),
        expected: String::new(),
        legacy_ids: Vec::new(),
        phone_for_otp: Some(phone(n)),
        claims,
    }
}

/// A version-4-shaped UUID whose last 48 bits are `n`.
fn uuid_of(prefix: u32, n: u64) -> String {
    format!("{prefix:08x}-0000-4000-8000-{n:012x}")
}

/// Full name: family, middle and given names picked by `n` (Vietnamese diacritics included).
pub fn full_name(n: u64) -> String {
    let pick = |list: &[&'static str], k: u64| list[(k % list.len() as u64) as usize];
    format!(
        "{} {} {}",
        pick(FAMILY, n),
        pick(MIDDLE, n / 7),
        pick(GIVEN, n / 3)
    )
}

/// Birth date `yyyy-mm-dd` between 1950 and 2005 (days 1..=28, so every month has them).
pub fn birthdate(n: u64) -> String {
    let year = 1950 + n % 56;
    let month = 1 + (n / 56) % 12;
    let day = 1 + (n / 672) % 28;
    format!("{year}-{month:02}-{day:02}")
}

/// The province code of every synthetic citizen's số định danh: Quảng Bình, Huế's northern
/// neighbour. Not a code of `fixtures/legacy-accounts.csv` (Huế's 046 and its other
/// neighbours'), which the benchmark imports too: a synthetic number equal to one of its records'
/// would send that citizen to the failure page (the record's name and birth date disagree).
pub const PROVINCE: &str = "044";

/// A structurally valid 12-digit số định danh: the province code `PROVINCE`, the century digit
/// of the birth year (a man's: 0 for the 1900s, 2 for the 2000s), the year's last two digits,
/// and `n` as the six-digit serial.
pub fn personal_id(n: u64) -> String {
    let year = 1950 + n % 56;
    let century = if year >= 2000 { 2 } else { 0 };
    format!("{PROVINCE}{century}{:02}{:06}", year % 100, n % MAX_N)
}

/// A Viettel mobile number of `n`'s own, as a citizen types it (`097…`). The broker masks a
/// number to its first four and last three digits (`0975***499`), and the load driver finds a
/// login's code in the SMS log by that mask, so the visible digits are `n`'s last four and the
/// hidden ones the rest: any 10,000 consecutive citizens have masks of their own.
pub fn phone(n: u64) -> String {
    format!(
        "097{}{:03}{:03}",
        (n / 1000) % 10,
        (n / 10_000) % 1000,
        n % 1000
    )
}

/// The legacy-account CSV (header included) with one record per number in `range`.
pub fn legacy_csv(kind: LegacyKind, range: Range<u64>) -> String {
    let mut out = String::from("source,legacy_id,full_name,birthdate,phone,personal_id,email\n");
    for n in range {
        let (phone, id) = match kind {
            LegacyKind::Id => (String::new(), personal_id(n)),
            LegacyKind::Phone => (phone(n), String::new()),
        };
        let _ = writeln!(
            out,
            "{LEGACY_SOURCE},G{n},{},{},{phone},{id},",
            full_name(n),
            birthdate(n)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_names_a_deterministic_citizen() {
        let a = from_hint("gen:42").expect("a synthetic citizen");
        let b = from_hint("gen:42").expect("a synthetic citizen");
        assert_eq!(a.claims, b.claims);
        assert_eq!(a.sub(), "5e4e0001-0000-4000-8000-00000000002a");
        assert_eq!(a.level(), "1");
        assert_ne!(a.sub(), citizen(43).sub());
        assert!(from_hint("C01").is_none());
        assert!(from_hint("gen:x").is_none());
        assert!(from_hint(&format!("gen:{MAX_N}")).is_none());
    }

    #[test]
    fn personal_ids_are_structurally_valid_and_distinct() {
        for n in [0, 1, 49, 50, 55, 999_999] {
            let id = personal_id(n);
            assert_eq!(id.len(), 12, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
            assert!(id.starts_with(PROVINCE));
            // Century digit and year agree with the birth date.
            let year: u64 = birthdate(n)[..4].parse().expect("a year");
            let century = if year >= 2000 { b'2' } else { b'0' };
            assert_eq!(id.as_bytes()[3], century, "{id} for {year}");
            assert_eq!(id[4..6], format!("{:02}", year % 100));
        }
        assert_ne!(personal_id(1), personal_id(57));
    }

    #[test]
    fn each_citizens_phone_is_their_own_and_so_is_its_mask() {
        // As the broker masks a national number in its log: first four, last three digits.
        let mask = |p: &str| format!("{}***{}", &p[..4], &p[7..]);
        assert_eq!(phone(415_499), "0975041499");
        let phones: Vec<String> = (0..600_000).map(phone).collect();
        let unique: std::collections::HashSet<&String> = phones.iter().collect();
        assert_eq!(unique.len(), phones.len());
        for window in phones.windows(10_000).step_by(2_500) {
            let masks: std::collections::HashSet<String> = window.iter().map(|p| mask(p)).collect();
            assert_eq!(masks.len(), window.len());
        }
    }

    #[test]
    fn no_record_of_the_legacy_fixture_has_a_synthetic_number() {
        let fixture = include_str!("../../../fixtures/legacy-accounts.csv");
        let ids: Vec<&str> = fixture
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').nth(5))
            .collect();
        assert!(ids.len() > 1_000, "the fixture's ID column");
        assert!(ids.iter().all(|id| !id.starts_with(PROVINCE)));
    }

    #[test]
    fn claims_agree_with_the_legacy_rows() {
        let c = citizen(7);
        let csv = legacy_csv(LegacyKind::Id, 7..8);
        let row = csv.lines().nth(1).expect("one row");
        let birth = c.claims["NgayThangNamSinh"].as_str().expect("a date");
        let id = c.claims["SoDinhDanh"].as_str().expect("an id");
        assert_eq!(
            row,
            format!(
                "bench,G7,{},{}-{}-{},,{id},",
                c.full_name(),
                &birth[..4],
                &birth[4..6],
                &birth[6..]
            )
        );
        let by_phone = legacy_csv(LegacyKind::Phone, 7..9);
        assert_eq!(by_phone.lines().count(), 3);
        assert!(by_phone.contains(&format!(",{},,", phone(7))));
    }
}
