//! `broker import org-units FILE` and `broker import staff FILE`: the province's CSV files into
//! the directory. Every row is validated and a bad row is reported with its line and reason (never
//! with the personal data it holds); the good rows load. A re-import of the same file changes
//! nothing; a changed row updates its unit or post. The files are small (a province has
//! hundreds of agencies and tens of thousands of staff), so each import is read whole and
//! written in one transaction: a failure half-way leaves the directory as it was.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::{Category, DirectoryStore, OrgUnit, PostKey, SealedPost, StaffPost, Written};
use crate::accounts::personal_id::{self, IdCheck};
use crate::crypto::MasterKey;

/// The most rows a directory file may have: far above any province's roster.
const MAX_ROWS: usize = 500_000;
const SEAL_PURPOSE: &str = "staff-post";

/// A row that did not load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The line in the file (the header is line 1).
    pub line: u64,
    pub reason: String,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub read: u64,
    pub written: Written,
    pub rejected: Vec<Rejection>,
}

/// Seals roster posts and opens them again.
#[derive(Clone)]
pub struct PostSealer {
    master: MasterKey,
}

impl PostSealer {
    pub fn new(master: MasterKey) -> Self {
        Self { master }
    }

    /// The lookup hash of a personal ID (the same as an account's).
    pub fn lookup(&self, personal_id: &str) -> String {
        self.master.lookup_hash(personal_id)
    }

    pub fn seal(&self, post: &StaffPost) -> anyhow::Result<SealedPost> {
        let json = serde_json::to_vec(post)?;
        Ok(SealedPost {
            personal_id_lookup: self.lookup(&post.personal_id),
            org_code: post.org_code.clone(),
            position: post.position.clone(),
            category: post.category,
            sealed: self.master.seal(SEAL_PURPOSE, &json),
            // A keyed digest (the lookup PRF under a label no ID number can equal): it tells a
            // changed row without revealing the row.
            digest: self.master.lookup_hash(&format!(
                "broker/staff-row-digest/v1\u{1f}{}",
                String::from_utf8_lossy(&json)
            )),
        })
    }

    pub fn open(&self, post: &SealedPost) -> anyhow::Result<StaffPost> {
        Ok(serde_json::from_slice(
            &self.master.open(SEAL_PURPOSE, &post.sealed)?,
        )?)
    }
}

/// Reads a CSV file with the given header into rows of (line, fields by name).
fn read_csv(path: &Path, columns: &[&str]) -> anyhow::Result<Vec<(u64, HashMap<String, String>)>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .context("the file has no header line")?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
        .collect();
    for column in columns {
        if !header.iter().any(|h| h == column) {
            anyhow::bail!(
                "the header lacks the column `{column}` (expected: {})",
                columns.join(",")
            );
        }
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        if rows.len() >= MAX_ROWS {
            anyhow::bail!("more than {MAX_ROWS} rows");
        }
        let line = i as u64 + 2;
        let record = record.with_context(|| format!("line {line}: unreadable CSV"))?;
        let fields = header
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.clone(), v.trim().to_string()))
            .collect();
        rows.push((line, fields));
    }
    Ok(rows)
}

/// A name as stored: tidied as every name is (`names::tidy_name`: NFC, invisible characters
/// dropped, inner spaces collapsed); `None` when empty, too long or with control characters.
fn clean_text(value: &str, max_chars: usize) -> Option<String> {
    let text = crate::accounts::names::tidy_name(value);
    let ok = !text.is_empty()
        && text.chars().count() <= max_chars
        && !text.chars().any(char::is_control);
    ok.then_some(text)
}

/// An agency code: 1–64 printable characters without spaces (opaque: the province issues them).
fn valid_code(code: &str) -> bool {
    (1..=64).contains(&code.len()) && code.chars().all(|c| c.is_ascii_graphic())
}

fn field<'a>(fields: &'a HashMap<String, String>, name: &str) -> &'a str {
    fields.get(name).map(String::as_str).unwrap_or_default()
}

fn validate_unit(fields: &HashMap<String, String>) -> Result<OrgUnit, String> {
    let code = field(fields, "code");
    if !valid_code(code) {
        return Err("code must be 1 to 64 printable characters without spaces".into());
    }
    let name = clean_text(field(fields, "name"), 300)
        .ok_or("name must be 1 to 300 characters without control characters")?;
    let parent = field(fields, "parent_code");
    let parent_code = match parent {
        "" => None,
        p if valid_code(p) && p != code => Some(p.to_string()),
        _ => return Err("parent_code must be another unit's code".into()),
    };
    let level = match field(fields, "level") {
        "" => None,
        l => Some(
            l.parse::<i64>()
                .ok()
                .filter(|l| (1..=10).contains(l))
                .ok_or("level must be a number from 1 to 10")?,
        ),
    };
    Ok(OrgUnit {
        code: code.to_string(),
        name,
        parent_code,
        level,
    })
}

/// Loads `org-units.csv` (`code,name,parent_code,level`). A unit whose parent is neither in the
/// file nor in the directory, or that sits in a cycle, is refused with its descendants.
pub async fn org_units(
    store: &dyn DirectoryStore,
    path: &Path,
    now: i64,
) -> anyhow::Result<Report> {
    let rows = read_csv(path, &["code", "name", "parent_code"])?;
    let mut report = Report {
        read: rows.len() as u64,
        ..Default::default()
    };
    let mut units: Vec<(u64, OrgUnit)> = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (line, fields) in rows {
        match validate_unit(&fields) {
            Ok(unit) => match seen.get(&unit.code) {
                Some(first) => report.rejected.push(Rejection {
                    line,
                    reason: format!("code {} is on line {first} already", unit.code),
                }),
                None => {
                    seen.insert(unit.code.clone(), line);
                    units.push((line, unit));
                }
            },
            Err(reason) => report.rejected.push(Rejection { line, reason }),
        }
    }
    // The tree: the file's units over the stored ones. Refuse, until nothing changes, every
    // unit whose parent is unknown, and every unit on a cycle.
    let stored: HashMap<String, Option<String>> = store
        .org_units()
        .await?
        .into_iter()
        .map(|u| (u.code, u.parent_code))
        .collect();
    loop {
        let mut parents = stored.clone();
        for (_, u) in &units {
            parents.insert(u.code.clone(), u.parent_code.clone());
        }
        let bad: HashSet<String> = units
            .iter()
            .filter_map(|(_, u)| tree_error(&u.code, &parents).map(|_| u.code.clone()))
            .collect();
        if bad.is_empty() {
            break;
        }
        units.retain(|(line, u)| {
            let keep = !bad.contains(&u.code);
            if !keep {
                let reason = tree_error(&u.code, &parents).unwrap_or("not in the tree");
                report.rejected.push(Rejection {
                    line: *line,
                    reason: format!("{reason} (unit {})", u.code),
                });
            }
            keep
        });
    }
    report.rejected.sort_by_key(|r| r.line);
    let units: Vec<OrgUnit> = units.into_iter().map(|(_, u)| u).collect();
    report.written = store.upsert_org_units(&units, now).await?;
    Ok(report)
}

/// Why `code` cannot hang in the tree: an unknown parent (of it or an ancestor) or a cycle.
fn tree_error(code: &str, parents: &HashMap<String, Option<String>>) -> Option<&'static str> {
    let mut at = code;
    let mut steps = 0;
    loop {
        match parents.get(at) {
            None => return Some("its parent_code is not a known unit"),
            Some(None) => return None,
            Some(Some(parent)) => {
                steps += 1;
                if steps > parents.len() {
                    return Some("its parent_code makes a cycle");
                }
                at = parent;
            }
        }
    }
}

fn validate_post(
    fields: &HashMap<String, String>,
    units: &HashSet<String>,
    today: time::Date,
) -> Result<StaffPost, String> {
    let personal_id = field(fields, "personal_id");
    let birthdate = field(fields, "birthdate");
    let date = time::Date::parse(
        birthdate,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| "birthdate must be a date yyyy-mm-dd".to_string())?;
    if date > today {
        return Err("birthdate is in the future".into());
    }
    let gender = match field(fields, "gender") {
        g @ ("male" | "female") => g,
        _ => return Err("gender must be male or female".into()),
    };
    match personal_id::check(personal_id, Some(birthdate), Some(gender)) {
        IdCheck::Valid => {}
        // The reason names the rule, never the number.
        IdCheck::Flagged(why) => return Err(format!("personal_id is not valid: {why}")),
    }
    let full_name = clean_text(field(fields, "full_name"), 200)
        .ok_or("full_name must be 1 to 200 characters without control characters")?;
    let category = Category::parse(field(fields, "category"))
        .ok_or("category must be can_bo, cong_chuc, vien_chuc or nguoi_lao_dong")?;
    let org_code = field(fields, "org_code");
    if !units.contains(org_code) {
        return Err("org_code is not a unit of the directory (import org-units first)".into());
    }
    let position = clean_text(field(fields, "position"), 200)
        .ok_or("position must be 1 to 200 characters without control characters")?;
    Ok(StaffPost {
        personal_id: personal_id.to_string(),
        full_name,
        birthdate: birthdate.to_string(),
        gender: gender.to_string(),
        category,
        org_code: org_code.to_string(),
        position,
    })
}

/// Loads `staff.csv` (`personal_id,full_name,birthdate,gender,category,org_code,position`).
/// One person may hold several posts; the same person, unit and position twice is refused.
/// With `prune`, the posts of earlier imports absent from this file are removed (the file is the
/// whole roster); without it they stay.
pub async fn staff(
    store: &dyn DirectoryStore,
    sealer: &PostSealer,
    path: &Path,
    prune: bool,
    now: i64,
) -> anyhow::Result<Report> {
    let rows = read_csv(
        path,
        &[
            "personal_id",
            "full_name",
            "birthdate",
            "gender",
            "category",
            "org_code",
            "position",
        ],
    )?;
    let today = time::OffsetDateTime::from_unix_timestamp(now)
        .context("the clock is out of range")?
        .to_offset(time::macros::offset!(+7))
        .date();
    let units: HashSet<String> = store
        .org_units()
        .await?
        .into_iter()
        .map(|u| u.code)
        .collect();
    let stored = store.post_digests().await?;
    let mut report = Report {
        read: rows.len() as u64,
        ..Default::default()
    };
    let mut seen: HashMap<PostKey, u64> = HashMap::new();
    let mut write = Vec::new();
    for (line, fields) in rows {
        let post = match validate_post(&fields, &units, today) {
            Ok(post) => sealer.seal(&post)?,
            Err(reason) => {
                report.rejected.push(Rejection { line, reason });
                continue;
            }
        };
        if let Some(first) = seen.get(&post.key()) {
            report.rejected.push(Rejection {
                line,
                reason: format!("the same person, unit and position are on line {first} already"),
            });
            continue;
        }
        seen.insert(post.key(), line);
        match stored.get(&post.key()) {
            Some(digest) if *digest == post.digest => report.written.unchanged += 1,
            Some(_) => {
                report.written.updated += 1;
                write.push(post);
            }
            None => {
                report.written.inserted += 1;
                write.push(post);
            }
        }
    }
    let remove: Vec<PostKey> = if prune {
        stored
            .into_keys()
            .filter(|key| !seen.contains_key(key))
            .collect()
    } else {
        Vec::new()
    };
    report.written.removed = remove.len() as u64;
    store.write_posts(&write, &remove, now).await?;
    Ok(report)
}
