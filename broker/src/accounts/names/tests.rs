//! The rules against the hard cases of fixtures/legacy-accounts.csv (the line is given) and
//! against real Vietnamese names, with the pairs that must stay apart.

use super::*;

#[test]
fn tone_mark_variants_of_the_fixture_equal_the_new_style() {
    // Line 707 (VNeID C02 sends the new style), 1197, 1299, and 1562 against its twin on 1090.
    assert!(names_agree(
        "\u{0110}o\u{e0}n Th\u{1ecb} Ng\u{1ecd}c Ho\u{e0}",
        "Đoàn Thị Ngọc Hòa"
    ));
    assert!(names_agree(
        "Phan Th\u{1ecb} Thu\u{fd} Nga",
        "Phan Thị Thúy Nga"
    ));
    assert!(names_agree(
        "Nguy\u{1ec5}n V\u{103}n Thu\u{1ef5}",
        "Nguyễn Văn Thụy"
    ));
    assert!(names_agree(
        "L\u{ea} Th\u{1ecb} Thu Thu\u{1ef7}",
        "L\u{ea} Th\u{1ecb} Thu Th\u{1ee7}y"
    ));
}

#[test]
fn d_variants_of_the_fixture() {
    // Line 1378 writes its Đ as the eth Ð (U+00D0); its twin on line 641 does not.
    assert!(names_agree(
        "\u{d0}\u{1eb7}ng V\u{103}n \u{d0}\u{1ee9}c",
        "\u{110}\u{1eb7}ng V\u{103}n \u{110}\u{1ee9}c"
    ));
    assert!(names_agree("ðặng văn ðức", "Đặng Văn Đức"));
    // Line 833, all upper case; line 1956, all lower case.
    assert!(names_agree(
        "\u{110}\u{1ed6} \u{110}\u{1ee8}C \u{110}\u{1ea0}T",
        "Đỗ Đức Đạt"
    ));
    assert!(names_agree(
        "\u{111}o\u{e0}n minh \u{111}\u{1ee9}c",
        "Đoàn Minh Đức"
    ));
}

#[test]
fn nfd_and_extra_spaces_of_the_fixture() {
    // Line 1758 is stored decomposed; its twin on line 602 is NFC.
    assert!(names_agree(
        "Ho\u{302}\u{300} Thi\u{323} Ngo\u{323}c A\u{301}nh",
        "H\u{1ed3} Th\u{1ecb} Ng\u{1ecd}c \u{c1}nh"
    ));
    // Line 1138: a double space and a trailing space.
    assert!(names_agree(
        "Nguy\u{1ec5}n  H\u{1eef}u Ph\u{1b0}\u{1edb}c ",
        "Nguyễn Hữu Phước"
    ));
    assert!(names_agree(
        "\u{feff} Trần\u{a0}Văn\tVinh\u{200b}",
        "Trần Văn Vinh"
    ));
}

#[test]
fn stroke_d_is_never_plain_d() {
    assert!(!names_agree("Đặng Văn Đức", "Dặng Văn Dức"));
    assert!(!names_agree("Đào Thị Dung", "Dao Thi Dung"));
    assert!(!names_agree("Ðức", "Duc"));
}

#[test]
fn the_tone_itself_still_matters() {
    assert!(!names_agree("Lê Thị Thu Thủy", "Lê Thị Thu Thùy"));
    assert!(!names_agree("Thuỷ", "Thuý"));
    assert!(!names_agree("Hòa", "Hoa"));
    assert!(!names_agree("Lê Văn Hòa", "Lê Văn Hóa"));
    // Other diacritics are letters, not tones: ă, â, ê, ô, ơ, ư stay apart from a, e, o, u.
    assert!(!names_agree("Trần Thị Lan", "Trân Thị Lan"));
    assert!(!names_agree("Nguyễn Văn Tư", "Nguyễn Văn Tu"));
    assert!(!names_agree("Phạm Thị Ơn", "Phạm Thị Ôn"));
}

#[test]
fn real_names_with_old_and_new_tone_placement() {
    let pairs = [
        ("Nguyễn Phước Hoà", "NGUYỄN PHƯỚC HÒA"),
        ("Tôn Nữ Thuỷ Tiên", "Tôn Nữ Thủy Tiên"),
        (
            "Công Tằng Tôn Nữ Thị Thuý Hoè",
            "công tằng tôn nữ thị thúy hòe",
        ),
        ("Tôn Thất Khoá", "Tôn Thất Khóa"),
        ("Huỳnh Thị Xoà", "Huỳnh Thị Xòa"),
        ("Hoàng Thị Loan", "Hoàng  Thị  Loan"),
        ("Phan Thị Thuỵ Khuê", "Phan Thị Thụy Khuê"),
        ("Trương Văn Quý", "Trương Văn Qúy"),
    ];
    for (a, b) in pairs {
        assert!(names_agree(a, b), "{a} / {b}");
    }
}

#[test]
fn different_people_stay_different() {
    let pairs = [
        ("Nguyễn Phước Bảo", "Nguyễn Phúc Bảo"),
        ("Tôn Nữ Minh Châu", "Tôn Thất Minh Châu"),
        ("Công Tằng Tôn Nữ Hà", "Tôn Nữ Hà"),
        ("Trần Thị Hoài Châu", "Trần Thị Châu"),
        ("Võ Hữu Tài", "Vũ Hữu Tài"),
        ("Lê Văn An", "Lê An Văn"),
        ("Hồ Văn Nam", "Hồ Văn Năm"),
    ];
    for (a, b) in pairs {
        assert!(!names_agree(a, b), "{a} / {b}");
    }
}

#[test]
fn the_key_is_the_same_for_every_spelling() {
    assert_eq!(name_key("Thuỷ"), name_key("Thủy"));
    assert_eq!(name_key("  Thu\u{1ef7}  "), "thuy3");
    assert_eq!(name_key("Hoà"), "hoa2");
    assert_eq!(name_key("Đức"), "đưc1");
    assert_eq!(name_key(""), "");
}

#[test]
fn parses_iso_dates_and_years() {
    assert!(matches!(
        Birthdate::parse("1990-09-04"),
        Some(Birthdate::Full(_))
    ));
    assert_eq!(Birthdate::parse("1948"), Some(Birthdate::Year(1948)));
    assert_eq!(Birthdate::parse("2024-02-29").map(|d| d.year()), Some(2024));
    // The fixture's malformed dates: 30 February, month 13, not ISO, text.
    for bad in [
        "1990-02-30",
        "1985-13-01",
        "04/09/1990",
        "1990-9-4",
        "không rõ",
        "19900904",
        "",
        "199O",
    ] {
        assert_eq!(Birthdate::parse(bad), None, "{bad}");
    }
    let today = time::macros::date!(2025 - 06 - 01);
    assert!(Birthdate::parse("2025-06-02").is_some_and(|d| d.is_after(today)));
    assert!(Birthdate::parse("2026").is_some_and(|d| d.is_after(today)));
    assert!(!Birthdate::parse("2025").is_some_and(|d| d.is_after(today)));
}

#[test]
fn a_year_only_date_matches_its_year() {
    // Lines 394, 495, 1167, 1241 and 1608 keep only the year.
    for (legacy, vneid) in [
        ("1948", "1948-03-02"),
        ("1944", "1944-12-31"),
        ("1939", "1939-01-01"),
        ("1961", "1961-07-15"),
        ("1952", "1952"),
    ] {
        assert_eq!(
            compare_birthdates(Some(legacy), Some(vneid)),
            BirthdateComparison::SameYear
        );
        assert!(birthdates_agree(Some(legacy), Some(vneid)));
    }
    assert!(!birthdates_agree(Some("1948"), Some("1949-03-02")));
    assert!(birthdates_agree(Some("1990-09-04"), Some("1990")));
}

#[test]
fn full_dates_must_be_equal() {
    assert_eq!(
        compare_birthdates(Some("1990-09-04"), Some("1990-09-04")),
        BirthdateComparison::Same
    );
    // VNeID C03: the legacy record says 1979-06-08, VNeID 1979-08-06.
    assert_eq!(
        compare_birthdates(Some("1979-06-08"), Some("1979-08-06")),
        BirthdateComparison::Differ
    );
    assert!(!birthdates_agree(Some("not a date"), Some("1979-08-06")));
    assert!(!birthdates_agree(Some("1979-08-06"), Some("06/08/1979")));
}

#[test]
fn what_a_missing_date_means() {
    // Nothing to compare on the legacy side: it contradicts nothing, but confirms nothing.
    let missing = compare_birthdates(None, Some("1990-09-04"));
    assert_eq!(missing, BirthdateComparison::LegacyMissing);
    assert!(missing.agrees() && !missing.confirmed());
    assert!(birthdates_agree(None, None));
    // A legacy date the upstream cannot confirm does not agree.
    let unconfirmed = compare_birthdates(Some("1990-09-04"), None);
    assert_eq!(unconfirmed, BirthdateComparison::UpstreamMissing);
    assert!(!unconfirmed.agrees() && !unconfirmed.confirmed());
    assert!(compare_birthdates(Some("1990"), Some("1990-01-02")).confirmed());
}
