//! The decisions of account standardisation, free of storage: given the VNeID identity and the
//! legacy records a lookup found, which records belong to this person, which disagree, and
//! which leave a doubt. `login.rs` runs them and writes what they decide.
//!
//! The rules (docs/standardisation.md):
//! - a record is this person's when its name and date of birth agree with VNeID's
//!   (`names::names_agree`, `names::compare_birthdates`) and its ID number, if it has one, is
//!   VNeID's; a 9-digit CMND needs a confirmed date (both sides have one) as well;
//! - a phone alone never links: a record found through a proven phone must agree like any other,
//!   and a record with another person's ID number is someone else's (a shared phone);
//! - two agreeing records of one source reached through a phone are a doubt: the broker links
//!   neither and sends the case to support.

use super::failures::Field;
use super::legacy::{IdKind, LegacyRecord};
use super::names::{compare_birthdates, names_agree};
use super::UpstreamIdentity;

/// The fields in which a record disagrees with the person's VNeID identity; empty: it is theirs.
pub fn disagreements(record: &LegacyRecord, identity: &UpstreamIdentity) -> Vec<Field> {
    let mut fields = Vec::new();
    if !names_agree(&record.full_name, &identity.full_name) {
        fields.push(Field::FullName);
    }
    let dates = compare_birthdates(record.birthdate.as_deref(), identity.birthdate.as_deref());
    let date_ok = match &record.personal_id {
        Some((IdKind::Cmnd, _)) => dates.confirmed(),
        _ => dates.agrees(),
    };
    if !date_ok {
        fields.push(Field::Birthdate);
    }
    let id_ok = match &record.personal_id {
        None => true,
        Some((IdKind::Cccd, number)) => identity.personal_id.as_deref() == Some(number.as_str()),
        // A CMND is compared with VNeID's SoCMND when VNeID sends one; without it, name and a
        // confirmed birth date carry the match.
        Some((IdKind::Cmnd, number)) => identity
            .legacy_cmnd
            .as_deref()
            .is_none_or(|cmnd| cmnd == number),
    };
    if !id_ok {
        fields.push(Field::PersonalId);
    }
    fields
}

/// The records found through VNeID's ID numbers (SoDinhDanh, SoCMND), sorted.
#[derive(Debug, Default)]
pub struct IdMatch {
    /// Agree in every field: link them all (one person, several apps).
    pub agree: Vec<LegacyRecord>,
    /// Hold this person's number but disagree: the failure page names the fields.
    pub disagree: Vec<(LegacyRecord, Vec<Field>)>,
    /// Hold this person's number and agree, but another account has them already.
    pub taken: Vec<LegacyRecord>,
}

/// Sorts the records found by ID number. A CMND-only record whose number VNeID did not send
/// cannot have been found by it, so every record here holds one of the person's numbers.
pub fn match_by_id(
    found: Vec<LegacyRecord>,
    identity: &UpstreamIdentity,
    account_id: Option<&str>,
) -> IdMatch {
    let mut out = IdMatch::default();
    for record in found {
        if record.account_id.is_some() && record.account_id.as_deref() == account_id {
            continue;
        }
        let fields = disagreements(&record, identity);
        let cmnd = matches!(record.personal_id, Some((IdKind::Cmnd, _)));
        if cmnd && fields.contains(&Field::FullName) && fields.contains(&Field::Birthdate) {
            // Old ID-card numbers were issued per province: another province's holder of the
            // same number, with another name and date, is someone else, not a doubt.
            continue;
        }
        if !fields.is_empty() {
            out.disagree.push((record, fields));
        } else if record.account_id.is_some() {
            out.taken.push(record);
        } else {
            out.agree.push(record);
        }
    }
    out
}

/// What a proven phone leads to.
#[derive(Debug)]
pub enum PhoneMatch {
    /// These records are the person's (at most one per source).
    Link(Vec<LegacyRecord>),
    /// These records are the person's, and these others with the phone half agree (the name but
    /// not the date, or the date but not the name): linked, and the doubt goes to support and
    /// to the failure page, naming the fields of the closest one.
    LinkWithDoubt(Vec<LegacyRecord>, Vec<LegacyRecord>, Vec<Field>),
    /// Several records of one source agree equally: no guess.
    Ambiguous(Vec<LegacyRecord>),
    /// Records with this phone exist, unlinked, without another person's ID number, but none
    /// agrees: the fields the closest one disagrees in.
    Disagree(Vec<LegacyRecord>, Vec<Field>),
    /// Nothing to link: a new citizen.
    Nothing,
}

/// Sorts the unlinked records holding the proven phone.
pub fn match_by_phone(found: Vec<LegacyRecord>, identity: &UpstreamIdentity) -> PhoneMatch {
    let mut agree: Vec<LegacyRecord> = Vec::new();
    let mut disagree: Vec<(LegacyRecord, Vec<Field>)> = Vec::new();
    for record in found.into_iter().filter(|r| r.account_id.is_none()) {
        let mut fields = disagreements(&record, identity);
        // A phone proves little about a record that has no date to confirm (numbers are
        // recycled, families share them): its birth date must be there and agree.
        if record.birthdate.is_none() && !fields.contains(&Field::Birthdate) {
            fields.push(Field::Birthdate);
        }
        if fields.is_empty() {
            agree.push(record);
        } else if !fields.contains(&Field::PersonalId) {
            // Another person's ID number says the record is someone else's (a parent's phone
            // on a child's record): not a doubt about this person.
            disagree.push((record, fields));
        }
    }
    let mut sources: Vec<&str> = agree.iter().map(|r| r.source.as_str()).collect();
    sources.sort_unstable();
    let distinct = {
        let mut d = sources.clone();
        d.dedup();
        d.len()
    };
    if distinct < sources.len() {
        return PhoneMatch::Ambiguous(agree);
    }
    if !agree.is_empty() {
        // A record that differs in both name and date is someone else's (a parent's on the
        // family phone); one that differs in only one of them may be this person's, mistyped.
        let doubts: Vec<(LegacyRecord, Vec<Field>)> = disagree
            .into_iter()
            .filter(|(_, f)| !(f.contains(&Field::FullName) && f.contains(&Field::Birthdate)))
            .collect();
        let Some(fields) = doubts
            .iter()
            .map(|(_, f)| f)
            .min_by_key(|f| f.len())
            .cloned()
        else {
            return PhoneMatch::Link(agree);
        };
        let doubted = doubts.into_iter().map(|(r, _)| r).collect();
        return PhoneMatch::LinkWithDoubt(agree, doubted, fields);
    }
    match disagree.iter().min_by_key(|(_, fields)| fields.len()) {
        Some((_, fields)) => {
            let fields = fields.clone();
            PhoneMatch::Disagree(disagree.into_iter().map(|(r, _)| r).collect(), fields)
        }
        None => PhoneMatch::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Loa;

    fn identity(name: &str, birthdate: &str, id: Option<&str>) -> UpstreamIdentity {
        UpstreamIdentity {
            upstream_iss: "https://vneid.example".into(),
            upstream_sub: "s".into(),
            personal_id: id.map(str::to_string),
            legacy_cmnd: None,
            full_name: name.into(),
            birthdate: Some(birthdate.into()),
            gender: None,
            loa: Loa::One,
            account_type: "1".into(),
            phone: None,
            auth_time: None,
        }
    }

    fn record(
        source: &str,
        id: &str,
        name: &str,
        birthdate: &str,
        pid: Option<&str>,
    ) -> LegacyRecord {
        LegacyRecord {
            source: source.into(),
            legacy_id: id.into(),
            full_name: name.into(),
            birthdate: Some(birthdate.into()),
            phone: Some("+84905123456".into()),
            personal_id: pid.map(|p| (IdKind::of(p).unwrap(), p.to_string())),
            email: None,
            account_id: None,
            linked_at: None,
            imported_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_record_agrees_on_name_date_and_id() {
        let me = identity("Đoàn Thị Ngọc Hòa", "1990-09-04", Some("046190982699"));
        let theirs = record(
            "hue-s",
            "1",
            "Đoàn Thị Ngọc Hoà",
            "1990-09-04",
            Some("046190982699"),
        );
        assert!(disagreements(&theirs, &me).is_empty());
        let other_date = record(
            "hue-s",
            "1",
            "Đoàn Thị Ngọc Hòa",
            "1979-06-08",
            Some("046190982699"),
        );
        assert_eq!(disagreements(&other_date, &me), vec![Field::Birthdate]);
        let other_id = record(
            "hue-s",
            "1",
            "Đoàn Thị Ngọc Hòa",
            "1990-09-04",
            Some("046190000000"),
        );
        assert_eq!(disagreements(&other_id, &me), vec![Field::PersonalId]);
        let year_only = record("hue-s", "1", "ĐOÀN THỊ NGỌC HÒA", "1990", None);
        assert!(disagreements(&year_only, &me).is_empty());
    }

    #[test]
    fn a_cmnd_matches_only_with_name_and_a_confirmed_date() {
        let mut me = identity("Lê Văn Minh", "1970-01-02", Some("046070000001"));
        me.legacy_cmnd = Some("191234567".into());
        let theirs = record("hue-s", "1", "Lê Văn Minh", "1970-01-02", Some("191234567"));
        assert!(disagreements(&theirs, &me).is_empty());
        let mut undated = theirs.clone();
        undated.birthdate = None;
        assert_eq!(disagreements(&undated, &me), vec![Field::Birthdate]);
        let mut other_name = theirs.clone();
        other_name.full_name = "Lê Văn Mình".into();
        assert_eq!(disagreements(&other_name, &me), vec![Field::FullName]);
        me.legacy_cmnd = Some("191234568".into());
        assert_eq!(disagreements(&theirs, &me), vec![Field::PersonalId]);
    }

    #[test]
    fn a_phone_never_picks_between_two_equal_records_of_one_source() {
        let me = identity("Trần Văn An", "2001-02-03", Some("046201000001"));
        let a = record("hue-s", "1", "Trần Văn An", "2001-02-03", None);
        let b = record("hue-s", "2", "Trần Văn An", "2001-02-03", None);
        assert!(matches!(
            match_by_phone(vec![a.clone(), b], &me),
            PhoneMatch::Ambiguous(_)
        ));
        let c = record("dvc-hue", "3", "Trần Văn An", "2001-02-03", None);
        assert!(matches!(
            match_by_phone(vec![a, c], &me),
            PhoneMatch::Link(r) if r.len() == 2
        ));
    }

    #[test]
    fn a_record_that_half_agrees_is_a_doubt_next_to_the_link() {
        let me = identity("Trần Văn An", "2001-02-03", None);
        let mine = record("hue-s", "1", "Trần Văn An", "2001-02-03", None);
        let mistyped = record("dvc-hue", "2", "Trần Văn An", "2001-03-02", None);
        let parents = record("dvc-hue", "3", "Lê Thị Hoa", "1970-05-05", None);
        match match_by_phone(vec![mine.clone(), mistyped, parents.clone()], &me) {
            PhoneMatch::LinkWithDoubt(linked, doubted, fields) => {
                assert_eq!(linked.len(), 1);
                assert_eq!(linked[0].legacy_id, "1");
                assert_eq!(doubted.len(), 1);
                assert_eq!(doubted[0].legacy_id, "2");
                assert_eq!(fields, vec![Field::Birthdate]);
            }
            other => panic!("{other:?}"),
        }
        // Someone else's record (name and date both differ) is no doubt.
        assert!(matches!(
            match_by_phone(vec![mine, parents], &me),
            PhoneMatch::Link(r) if r.len() == 1
        ));
    }

    #[test]
    fn a_shared_phone_links_only_the_record_that_agrees() {
        let child = identity("Hồ Văn Bình", "2015-05-06", Some("046215000001"));
        let parent = record(
            "dvc-hue",
            "P",
            "Nguyễn Thị Lan",
            "1985-01-01",
            Some("046185000009"),
        );
        let childs = record("hue-eduportal", "C", "Hồ Văn Bình", "2015-05-06", None);
        match match_by_phone(vec![parent.clone(), childs], &child) {
            PhoneMatch::Link(records) => {
                assert_eq!(records.len(), 1);
                assert_eq!(records[0].legacy_id, "C");
            }
            other => panic!("{other:?}"),
        }
        // The parent's record alone: another person's ID, so nothing to link and no doubt.
        assert!(matches!(
            match_by_phone(vec![parent], &child),
            PhoneMatch::Nothing
        ));
        // A record without a birth date is never linked by a phone and a name alone.
        let mut undated = record("hue-s", "U", "Hồ Văn Bình", "2015-05-06", None);
        undated.birthdate = None;
        assert!(matches!(
            match_by_phone(vec![undated], &child),
            PhoneMatch::Disagree(_, fields) if fields == vec![Field::Birthdate]
        ));
        let unknown = record("hue-s", "X", "Hồ Văn Bính", "2015-05-06", None);
        assert!(matches!(
            match_by_phone(vec![unknown], &child),
            PhoneMatch::Disagree(_, fields) if fields == vec![Field::FullName]
        ));
    }

    #[test]
    fn records_found_by_id_are_sorted_into_agree_disagree_and_taken() {
        let me = identity("Phan Văn Tú", "1980-01-01", Some("046080000001"));
        let mine = record(
            "hue-s",
            "1",
            "Phan Văn Tú",
            "1980-01-01",
            Some("046080000001"),
        );
        let typo = record(
            "dvc-hue",
            "2",
            "Phan Văn Tú",
            "1980-01-11",
            Some("046080000001"),
        );
        let mut taken = record(
            "hue-eduportal",
            "3",
            "Phan Văn Tú",
            "1980-01-01",
            Some("046080000001"),
        );
        taken.account_id = Some("someone".into());
        let mut already = mine.clone();
        already.legacy_id = "4".into();
        already.account_id = Some("me".into());
        let out = match_by_id(vec![mine, typo, taken, already], &me, Some("me"));
        assert_eq!(out.agree.len(), 1);
        assert_eq!(out.disagree.len(), 1);
        assert_eq!(out.disagree[0].1, vec![Field::Birthdate]);
        assert_eq!(out.taken.len(), 1);
    }
}
