//! Accounts of people, linked to upstream identities on (issuer, subject) — never on e-mail.
//! VNeID is the source of truth: the profile is refreshed on every login. Personal ID numbers
//! are sealed under the master key at rest and looked up through a keyed hash.
//! `login` runs the post-login steps (account resolution today; legacy linking, phone OTP and
//! consent later) and returns an outcome the HTTP layer maps to a redirect or a page.

pub mod failures;
pub mod import;
pub mod legacy;
pub mod linking;
pub mod loa;
pub mod login;
pub mod names;
pub mod personal_id;
pub mod phone;

pub use loa::Loa;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::AuditEntry;
use crate::events::Event;
use crate::transaction::Transaction;

/// A normalised upstream identity (what any upstream profile becomes, see `federation::claims`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UpstreamIdentity {
    pub upstream_iss: String,
    pub upstream_sub: String,
    pub personal_id: Option<String>,
    /// The old 9-digit ID card number (CMND), when the upstream still sends it.
    pub legacy_cmnd: Option<String>,
    pub full_name: String,
    /// ISO 8601 `yyyy-mm-dd` or `yyyy`.
    pub birthdate: Option<String>,
    pub gender: Option<String>,
    /// VNeID assurance level.
    pub loa: Loa,
    pub account_type: String,
    pub phone: Option<String>,
    /// When the person authenticated at the upstream (its ID token's `auth_time`), if it says.
    pub auth_time: Option<i64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Account {
    pub id: String,
    pub personal_id: Option<String>,
    /// Why the personal ID failed the structure check, if it did.
    pub personal_id_flag: Option<String>,
    pub full_name: String,
    pub birthdate: Option<String>,
    pub gender: Option<String>,
    pub account_type: String,
    pub loa: Loa,
    /// The phone in E.164, and whether the citizen proved it by OTP (a legacy record's phone
    /// is kept unproven).
    pub phone: Option<String>,
    pub phone_verified: bool,
    /// For a client with a `legacy_source`: the ids of that source linked to this person (the
    /// `legacy_accounts` claim); `None` otherwise.
    pub legacy_accounts: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An account as stored: the personal ID sealed, plus its lookup hash.
#[derive(Clone, Debug)]
pub struct AccountRecord {
    pub id: String,
    pub personal_id_enc: Option<String>,
    pub personal_id_lookup: Option<String>,
    pub personal_id_flag: Option<String>,
    pub full_name: String,
    pub birthdate: Option<String>,
    pub gender: Option<String>,
    pub account_type: String,
    pub loa: Loa,
    pub phone: Option<String>,
    pub phone_verified_at: Option<i64>,
    /// When the account went through legacy matching; `None` for accounts from before it, which
    /// are matched on their next login.
    pub standardised_at: Option<i64>,
    /// The issuer of the isolated upstream (a test gateway) this account belongs to; `None` for
    /// the accounts every other upstream shares.
    pub isolated_to: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an upstream's identities may do with accounts (`upstream.accounts`). Whatever the
/// policy, an identity already linked logs in to its account, as long as that account is of
/// the upstream's realm (shared, or this isolated upstream's own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountPolicy {
    /// The whole standardisation: a new identity joins the shared account holding its ID
    /// number, links legacy records, or creates an account after the phone step.
    #[default]
    LinkAndCreate,
    /// Joins an existing shared account (by the ID number, name and date of birth) or is
    /// refused: never creates one, never links legacy records.
    LinkOnly,
    /// A realm of its own (a test gateway): its identities get accounts of their own at once,
    /// never match or reach a shared account or a legacy record, and no other upstream ever
    /// reaches theirs.
    Isolated,
}

impl AccountPolicy {
    /// The realm of the accounts this upstream's identities may log in to.
    pub fn realm<'a>(&self, upstream_iss: &'a str) -> Option<&'a str> {
        (*self == AccountPolicy::Isolated).then_some(upstream_iss)
    }
}

/// What a login's link lookup finds ([`AccountStore::find_for_login`]).
#[derive(Debug)]
pub struct LoginLookup {
    /// The linked account.
    pub account: Option<AccountRecord>,
    /// Whether a legacy record holding one of the ID numbers is not the linked account's (any
    /// such record, when nothing is linked): only then are the records read, so a returning
    /// citizen's login and a new citizen's skip that read.
    pub records_pending: bool,
    /// Nothing linked: whether a shared (not isolated) account holds the 12-digit number, the
    /// only case in which another upstream's identity may join an account.
    pub shared_holder: bool,
}

/// A new account as [`AccountStore::create_standardised`] writes it.
pub struct NewAccount<'a> {
    pub record: &'a AccountRecord,
    pub upstream_iss: &'a str,
    pub upstream_sub: &'a str,
    /// The login's audit entry and the `account:created` event.
    pub audit: AuditEntry<'a>,
    pub event: Event<'a>,
    /// Legacy records to link, each with its audit entry and `account:linked` event, written
    /// only when the record is still unlinked.
    pub links: Vec<NewLink<'a>>,
}

/// One legacy record linked to a new account.
pub struct NewLink<'a> {
    pub source: &'a str,
    pub legacy_id: &'a str,
    pub audit: AuditEntry<'a>,
    pub event: Event<'a>,
}

/// What [`AccountStore::create_standardised`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// Written; for each of `links` in order, whether it was linked (`false`: another account
    /// took it meanwhile).
    Created {
        linked: Vec<bool>,
    },
    LinkTaken,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn find(&self, id: &str) -> anyhow::Result<Option<AccountRecord>>;
    async fn find_by_link(
        &self,
        upstream_iss: &str,
        upstream_sub: &str,
    ) -> anyhow::Result<Option<AccountRecord>>;
    /// `find_by_link`, with what a login needs to know next in the same round trip
    /// ([`LoginLookup`]). `lookups` are the lookup hashes of the identity's ID numbers (the
    /// 12-digit number first, then a 9-digit CMND).
    async fn find_for_login(
        &self,
        upstream_iss: &str,
        upstream_sub: &str,
        lookups: [Option<&str>; 2],
    ) -> anyhow::Result<LoginLookup>;
    /// Shared (not isolated) accounts holding the ID number with this lookup hash; at most
    /// `limit`.
    async fn find_shared_by_personal_id(
        &self,
        lookup: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<AccountRecord>>;
    /// Whether an identity of the upstream `upstream_iss` is linked to the account.
    async fn linked_from(&self, account_id: &str, upstream_iss: &str) -> anyhow::Result<bool>;
    /// Links one more upstream identity to an existing account that holds no identity of that
    /// upstream yet, in the caller's transaction. `false` when the identity was linked
    /// meanwhile (to whichever account) or the account got an identity of that upstream.
    async fn add_link(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        upstream_iss: &str,
        upstream_sub: &str,
        now: i64,
    ) -> anyhow::Result<bool>;
    /// A new account with its link, audit entry, event and legacy links, and the identity's
    /// earlier failures attached to it, all committed together (one statement on PostgreSQL).
    /// [`Created::LinkTaken`] when another login linked this identity first (two first logins
    /// racing): nothing is written, and the caller uses the account that link names.
    async fn create_standardised(&self, new: &NewAccount<'_>) -> anyhow::Result<Created>;
    /// Replaces the profile with what the upstream sent, in the caller's transaction (logins
    /// themselves are in the audit log).
    async fn refresh_profile(
        &self,
        tx: &mut Transaction,
        record: &AccountRecord,
    ) -> anyhow::Result<()>;
    /// Marks the account standardised, with the phone it ends up with (`verified_at` when the
    /// citizen proved it), in the caller's transaction.
    async fn set_standardised(
        &self,
        tx: &mut Transaction,
        id: &str,
        phone: Option<&str>,
        verified_at: Option<i64>,
        now: i64,
    ) -> anyhow::Result<()>;
    /// A new phone proven by OTP (the account page).
    async fn set_phone(
        &self,
        tx: &mut Transaction,
        id: &str,
        phone: &str,
        now: i64,
    ) -> anyhow::Result<()>;
}
