//! Accounts of the province's older apps (Hue-S, dvc-hue, hue-eduportal, ...), imported by
//! `broker import legacy-accounts` and linked to a broker account after a VNeID login.
//! A record's personal ID is in clear only in a [`LegacyRecord`], in memory; at rest it is
//! sealed under the master key and found through the same keyed lookup hash as an account's
//! (so VNeID's SoDinhDanh or SoCMND finds it). [`LegacySealer`] turns one into the other.
//! Linking writes `account_id`; importing never does.

use std::fmt;

use async_trait::async_trait;
use aws_lc_rs::hmac;

use super::personal_id::mask;
use crate::crypto::{b64url, MasterKey};
use crate::transaction::Transaction;

/// Which kind of number a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    /// The 12-digit personal ID (số định danh cá nhân, on the CCCD card).
    Cccd,
    /// The old 9-digit ID card number (CMND): it matches only together with name and birthdate.
    Cmnd,
}

impl IdKind {
    /// The kind of a number of digits only, by its length.
    pub fn of(number: &str) -> Option<Self> {
        if !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match number.len() {
            12 => Some(Self::Cccd),
            9 => Some(Self::Cmnd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cccd => "cccd",
            Self::Cmnd => "cmnd",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "cccd" => Some(Self::Cccd),
            "cmnd" => Some(Self::Cmnd),
            _ => None,
        }
    }
}

/// A legacy account with its ID number in clear: in memory only, and masked in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyRecord {
    pub source: String,
    pub legacy_id: String,
    /// As imported: NFC, whitespace collapsed, the spelling otherwise kept (compare names
    /// with `names::names_agree`).
    pub full_name: String,
    /// ISO `yyyy-mm-dd`, or `yyyy` when only the year is known.
    pub birthdate: Option<String>,
    /// E.164 (`+84905123456`).
    pub phone: Option<String>,
    /// Digits only; its kind says whether it is a 12-digit personal ID or a 9-digit CMND.
    pub personal_id: Option<(IdKind, String)>,
    pub email: Option<String>,
    pub account_id: Option<String>,
    pub linked_at: Option<i64>,
    pub imported_at: i64,
    pub updated_at: i64,
}

impl fmt::Debug for LegacyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyRecord")
            .field("source", &self.source)
            .field("legacy_id", &self.legacy_id)
            .field(
                "personal_id",
                &self.personal_id.as_ref().map(|(kind, n)| (kind, mask(n))),
            )
            .field("phone", &self.phone.as_deref().map(mask))
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

/// A legacy account as stored: the ID number sealed, with its lookup hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedLegacyRecord {
    pub source: String,
    pub legacy_id: String,
    pub full_name: String,
    pub birthdate: Option<String>,
    pub phone: Option<String>,
    pub id_kind: Option<IdKind>,
    pub personal_id_enc: Option<String>,
    pub personal_id_lookup: Option<String>,
    pub email: Option<String>,
    /// The keyed digest of the canonical row, by which a re-import knows an unchanged row.
    pub row_digest: String,
    pub account_id: Option<String>,
    pub linked_at: Option<i64>,
    pub imported_at: i64,
    pub updated_at: i64,
}

/// Seals and opens legacy records under the master key.
#[derive(Clone)]
pub struct LegacySealer {
    master: MasterKey,
    digest: hmac::Key,
}

fn purpose(source: &str, legacy_id: &str) -> String {
    format!("legacy-personal-id:{source}:{legacy_id}")
}

impl LegacySealer {
    pub fn new(master: MasterKey) -> Self {
        // The row digest gets its own key, derived from the lookup key under a label no personal
        // ID can equal: a lookup hash is a keyed PRF, so this is a one-step key derivation.
        let digest_key = master.lookup_hash("broker/legacy-row-digest/v1");
        Self {
            digest: hmac::Key::new(hmac::HMAC_SHA256, digest_key.as_bytes()),
            master,
        }
    }

    /// The lookup hash under which a personal ID (12 digits) or a CMND (9 digits) is found.
    pub fn lookup(&self, number: &str) -> String {
        self.master.lookup_hash(number)
    }

    /// The keyed digest of what an import writes: equal digests mean nothing to update.
    pub fn row_digest(&self, r: &LegacyRecord) -> String {
        let mut ctx = hmac::Context::with_key(&self.digest);
        let id = r.personal_id.as_ref().map(|(_, n)| n.as_str());
        for field in [
            Some(r.source.as_str()),
            Some(r.legacy_id.as_str()),
            Some(r.full_name.as_str()),
            r.birthdate.as_deref(),
            r.phone.as_deref(),
            id,
            r.email.as_deref(),
        ] {
            // A length prefix per field: no two different rows give the same byte string.
            match field {
                Some(text) => {
                    ctx.update(&(text.len() as u64).to_be_bytes());
                    ctx.update(text.as_bytes());
                }
                None => ctx.update(&u64::MAX.to_be_bytes()),
            }
        }
        b64url(ctx.sign().as_ref())
    }

    pub fn seal(&self, r: &LegacyRecord) -> SealedLegacyRecord {
        let (id_kind, personal_id_enc, personal_id_lookup) = match &r.personal_id {
            Some((kind, number)) => (
                Some(*kind),
                Some(
                    self.master
                        .seal(&purpose(&r.source, &r.legacy_id), number.as_bytes()),
                ),
                Some(self.lookup(number)),
            ),
            None => (None, None, None),
        };
        SealedLegacyRecord {
            source: r.source.clone(),
            legacy_id: r.legacy_id.clone(),
            full_name: r.full_name.clone(),
            birthdate: r.birthdate.clone(),
            phone: r.phone.clone(),
            id_kind,
            personal_id_enc,
            personal_id_lookup,
            email: r.email.clone(),
            row_digest: self.row_digest(r),
            account_id: r.account_id.clone(),
            linked_at: r.linked_at,
            imported_at: r.imported_at,
            updated_at: r.updated_at,
        }
    }

    /// Decrypts the ID number. Fails on a wrong master key, a tampered value, or a value moved
    /// to another record (the purpose names the record).
    pub fn open(&self, s: SealedLegacyRecord) -> anyhow::Result<LegacyRecord> {
        let personal_id = match (s.id_kind, &s.personal_id_enc) {
            (Some(kind), Some(sealed)) => {
                let plain = self
                    .master
                    .open(&purpose(&s.source, &s.legacy_id), sealed)?;
                Some((kind, String::from_utf8(plain)?))
            }
            (None, None) => None,
            _ => anyhow::bail!("legacy record with an ID kind but no ID, or the other way round"),
        };
        Ok(LegacyRecord {
            source: s.source,
            legacy_id: s.legacy_id,
            full_name: s.full_name,
            birthdate: s.birthdate,
            phone: s.phone,
            personal_id,
            email: s.email,
            account_id: s.account_id,
            linked_at: s.linked_at,
            imported_at: s.imported_at,
            updated_at: s.updated_at,
        })
    }
}

/// What one batch of an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

#[async_trait]
pub trait LegacyStore: Send + Sync {
    async fn find(
        &self,
        source: &str,
        legacy_id: &str,
    ) -> anyhow::Result<Option<SealedLegacyRecord>>;
    /// Every record holding the number whose lookup hash this is (`LegacySealer::lookup`).
    async fn find_by_personal_id_lookup(
        &self,
        lookup: &str,
    ) -> anyhow::Result<Vec<SealedLegacyRecord>>;
    /// Every record with this phone (E.164): a phone is contact data, several people share one.
    async fn find_by_phone(&self, e164: &str) -> anyhow::Result<Vec<SealedLegacyRecord>>;
    async fn linked_to(&self, account_id: &str) -> anyhow::Result<Vec<SealedLegacyRecord>>;
    /// Links the record to the account in the caller's transaction, only if it is not linked
    /// yet: `false` when it is already linked (to anyone) or does not exist.
    async fn link(
        &self,
        tx: &mut Transaction,
        source: &str,
        legacy_id: &str,
        account_id: &str,
        now: i64,
    ) -> anyhow::Result<bool>;
    /// Unlinks the record in the caller's transaction; the account it was linked to, or `None`
    /// when it was not linked.
    async fn unlink(
        &self,
        tx: &mut Transaction,
        source: &str,
        legacy_id: &str,
        now: i64,
    ) -> anyhow::Result<Option<String>>;
    /// Inserts the new records and updates those whose digest changed; never touches
    /// `account_id`, `linked_at` or `imported_at` of a record already there. The keys of one
    /// batch are distinct.
    async fn import_batch(&self, batch: &[SealedLegacyRecord]) -> anyhow::Result<BatchOutcome>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn sealer() -> LegacySealer {
        let master = MasterKey::from_secret(&Secret::new(MasterKey::generate_encoded()))
            .expect("master key");
        LegacySealer::new(master)
    }

    fn record() -> LegacyRecord {
        LegacyRecord {
            source: "hue-s".into(),
            legacy_id: "HS1004105".into(),
            full_name: "Đoàn Thị Ngọc Hoà".into(),
            birthdate: Some("1990-09-04".into()),
            phone: Some("+84905123456".into()),
            personal_id: Some((IdKind::Cccd, "046190982699".into())),
            email: None,
            account_id: None,
            linked_at: None,
            imported_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn seals_and_opens() {
        let sealer = sealer();
        let sealed = sealer.seal(&record());
        assert!(!format!("{sealed:?}").contains("046190982699"));
        assert_eq!(
            sealed.personal_id_lookup,
            Some(sealer.lookup("046190982699"))
        );
        assert_eq!(sealer.open(sealed.clone()).expect("open"), record());
        let mut moved = sealed;
        moved.legacy_id = "HS1".into();
        assert!(sealer.open(moved).is_err(), "the purpose binds the record");
        assert!(!format!("{:?}", record()).contains("046190982699"));
    }

    #[test]
    fn the_digest_follows_the_content() {
        let sealer = sealer();
        let a = sealer.row_digest(&record());
        assert_eq!(a, sealer.row_digest(&record()));
        let mut changed = record();
        changed.email = Some(String::new());
        assert_ne!(a, sealer.row_digest(&changed), "empty is not absent");
        let mut linked = record();
        linked.account_id = Some("acc".into());
        assert_eq!(a, sealer.row_digest(&linked), "linking is not content");
        assert_ne!(a, self::sealer().row_digest(&record()), "keyed");
    }

    #[test]
    fn id_kinds() {
        assert_eq!(IdKind::of("046190982699"), Some(IdKind::Cccd));
        assert_eq!(IdKind::of("191234567"), Some(IdKind::Cmnd));
        assert_eq!(IdKind::of("04619098269"), None);
        assert_eq!(IdKind::of("0461909826O9"), None);
    }
}
