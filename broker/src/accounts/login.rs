//! Account resolution and standardisation ("chuẩn hoá"), run after the upstream identity is
//! verified and before the broker issues its code. A linked identity is its account (profile
//! refreshed from VNeID, the source of truth). An identity met for the first time, or an account
//! from before standardisation existed, is matched against the legacy records: by ID number
//! first, then, after the citizen proves a phone by OTP, by that phone. Every write commits with
//! its audit entry and its outbox event; every doubt is recorded for support and shown to the
//! citizen as the failure page. The decisions themselves are in `linking.rs`.

use std::sync::Arc;

use super::failures::{Failure, FailureStore, Field, Reason};
use super::legacy::{LegacyRecord, LegacySealer, LegacyStore};
use super::linking::{self, PhoneMatch};
use super::names::{compare_birthdates, names_agree};
use super::personal_id::{self, IdCheck};
use super::phone::Phone;
use super::{
    Account, AccountPolicy, AccountRecord, AccountStore, Created, NewAccount, NewLink,
    UpstreamIdentity,
};
use crate::audit::{AuditEntry, AuditLog};
use crate::crypto::MasterKey;
use crate::events::{types, Event, Outbox};
use crate::transaction::{Transaction, Transactions};

/// A failure the citizen is shown (the record for support is already written).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Notice {
    pub failure_id: String,
    pub reason: Reason,
    pub fields: Vec<Field>,
}

#[derive(Debug)]
pub enum LoginOutcome {
    /// The person is logged in to this account; `notice`, when present, is shown first.
    Authenticated {
        account: Box<Account>,
        created: bool,
        notice: Option<Notice>,
    },
    /// No record matched by ID number: the citizen gives a phone and proves it by OTP
    /// (after the failure page, when `notice` is present). `unlinked`: no account was linked
    /// to the identity (so `complete_with_phone` need not look again).
    NeedsPhone {
        notice: Option<Notice>,
        unlinked: bool,
    },
    /// The upstream's policy allows it no account for this person: none to join
    /// (`link_only`), or the linked account is of another realm (a test gateway's identity
    /// linked to a shared account, or the reverse, after a change of policy).
    Refused,
}

/// What the link of an identity leads to.
enum Linked {
    /// Nothing linked; whether legacy records hold the identity's ID numbers, and whether a
    /// shared account does (`AccountStore::find_for_login`).
    Nobody {
        records_pending: bool,
        shared_holder: bool,
    },
    /// The account, and whether legacy records with the identity's ID numbers are not yet its
    /// own (`AccountStore::find_for_login`).
    Account(Box<AccountRecord>, bool),
    /// An account of another realm than the upstream's: never logged in to.
    OtherRealm,
}

/// A link the client's backend asked for through PAR: its own legacy source and account id.
#[derive(Clone, Debug)]
pub struct AppLink<'a> {
    pub source: &'a str,
    pub legacy_id: &'a str,
}

/// How a record came to be linked, for the audit log and the event.
#[derive(Clone, Copy, Debug)]
pub enum LinkMethod {
    PersonalId,
    Phone,
    App,
    Admin,
}

impl LinkMethod {
    fn as_str(self) -> &'static str {
        match self {
            LinkMethod::PersonalId => "personal_id",
            LinkMethod::Phone => "phone",
            LinkMethod::App => "app",
            LinkMethod::Admin => "admin",
        }
    }
}

/// What an administrator's link or unlink did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminChange {
    Done,
    NoSuchAccount,
    NoSuchRecord,
    /// Linked to another account (link), or not linked to this one (unlink).
    Conflict,
}

/// The stores account resolution writes to; on the database they are all `Db`.
#[derive(Clone)]
pub struct AccountStores {
    pub accounts: Arc<dyn AccountStore>,
    pub legacy: Arc<dyn LegacyStore>,
    pub failures: Arc<dyn FailureStore>,
    pub outbox: Arc<dyn Outbox>,
    pub audit: Arc<dyn AuditLog>,
    pub transactions: Arc<dyn Transactions>,
}

impl AccountStores {
    pub fn of(db: &crate::store::Db) -> Self {
        let db = Arc::new(db.clone());
        Self {
            accounts: db.clone(),
            legacy: db.clone(),
            failures: db.clone(),
            outbox: db.clone(),
            audit: db.clone(),
            transactions: db,
        }
    }
}

#[derive(Clone)]
pub struct AccountResolver {
    stores: AccountStores,
    master: MasterKey,
    sealer: LegacySealer,
}

impl AccountResolver {
    pub fn new(stores: AccountStores, master: MasterKey) -> Self {
        Self {
            stores,
            sealer: LegacySealer::new(master.clone()),
            master,
        }
    }

    /// After the upstream login: the account, or the phone step. A standardised account only
    /// gains the records that appeared since (a new import) and the one its app asked for.
    ///
    /// `policy` is the upstream's (`AccountPolicy`): an isolated upstream (a test gateway) only
    /// ever reaches accounts of its own, created at once; a `link_only` one only joins a shared
    /// account; both skip the legacy records.
    #[tracing::instrument(skip_all, fields(upstream_sub = %identity.upstream_sub))]
    pub async fn complete_login(
        &self,
        identity: &UpstreamIdentity,
        policy: AccountPolicy,
        app_link: Option<AppLink<'_>>,
        now: i64,
    ) -> anyhow::Result<LoginOutcome> {
        let realm = policy.realm(&identity.upstream_iss);
        // Whether the legacy records must be read: always, unless the linked account already
        // holds every record with the identity's ID numbers.
        let (existing, records_pending, shared_holder) =
            match self.refreshed(identity, realm, now).await? {
                Linked::Account(record, pending) => (Some(*record), pending, false),
                Linked::Nobody {
                    records_pending,
                    shared_holder,
                } => (None, records_pending, shared_holder),
                Linked::OtherRealm => {
                    tracing::warn!(
                        upstream = %identity.upstream_iss,
                        "the identity is linked to an account of another realm; refused"
                    );
                    return Ok(LoginOutcome::Refused);
                }
            };
        let existing = match (policy, existing) {
            (_, Some(record)) => Some(record),
            (AccountPolicy::Isolated, None) => None,
            (_, None) if shared_holder => self.join_by_personal_id(identity, now).await?,
            (_, None) => None,
        };
        match (policy, existing) {
            (AccountPolicy::LinkAndCreate, None) => {
                let outcome = self
                    .standardise(identity, None, records_pending, app_link, now)
                    .await?;
                // A notice of an account this login created is its own finding (an app's link
                // that did not match, say): it stands.
                let doubted = matches!(
                    outcome,
                    LoginOutcome::Authenticated {
                        created: false,
                        notice: Some(_),
                        ..
                    } | LoginOutcome::NeedsPhone {
                        notice: Some(_),
                        ..
                    }
                );
                if !doubted {
                    return Ok(outcome);
                }
                // Two first logins of one identity at once (a double tap, an app retrying): the
                // other one linked the records this one then found taken. Its account is this
                // person's: log in to it rather than show a failure that is no failure.
                match self
                    .stores
                    .accounts
                    .find_by_link(&identity.upstream_iss, &identity.upstream_sub)
                    .await?
                {
                    Some(record) if record.isolated_to.as_deref() == realm => {
                        Ok(LoginOutcome::Authenticated {
                            account: Box::new(self.open(record)?),
                            created: false,
                            notice: None,
                        })
                    }
                    _ => Ok(outcome),
                }
            }
            (AccountPolicy::LinkAndCreate, existing) => {
                self.standardise(identity, existing, records_pending, app_link, now)
                    .await
            }
            (_, Some(record)) => Ok(LoginOutcome::Authenticated {
                account: Box::new(self.open(record)?),
                created: false,
                notice: None,
            }),
            (AccountPolicy::Isolated, None) => {
                let (record, created) = self.write(identity, None, &[], None, realm, now).await?;
                Ok(LoginOutcome::Authenticated {
                    account: Box::new(self.open(record)?),
                    created,
                    notice: None,
                })
            }
            (AccountPolicy::LinkOnly, None) => Ok(LoginOutcome::Refused),
        }
    }

    /// A shared account's first login through another upstream: the one shared account that
    /// holds this ID number, when its name and date of birth agree as a legacy record's must,
    /// gains the link (with its audit entry). Two accounts with the number, an account that
    /// already has an identity of this upstream, or any disagreement link nothing: the
    /// identity goes on as a new one.
    async fn join_by_personal_id(
        &self,
        identity: &UpstreamIdentity,
        now: i64,
    ) -> anyhow::Result<Option<AccountRecord>> {
        let Some(number) = identity.personal_id.as_deref() else {
            return Ok(None);
        };
        let found = self
            .stores
            .accounts
            .find_shared_by_personal_id(&self.master.lookup_hash(number), 2)
            .await?;
        let found_one = found.len() == 1;
        if found.len() > 1 {
            tracing::warn!(
                personal_id = %personal_id::mask(number),
                "several accounts hold the ID number; no upstream link added"
            );
        }
        let Some(account) = found.into_iter().next().filter(|_| found_one) else {
            return Ok(None);
        };
        // Another identity of the same upstream with this number is someone else's claim to
        // the account (or a new one of the same person): a doubt for the legacy matching and
        // support, never a silent second link.
        if self
            .stores
            .accounts
            .linked_from(&account.id, &identity.upstream_iss)
            .await?
        {
            return Ok(None);
        }
        // Joining a real account needs the date of birth on both sides: an account without
        // one is left to the standardisation steps.
        let agrees = names_agree(&account.full_name, &identity.full_name)
            && compare_birthdates(account.birthdate.as_deref(), identity.birthdate.as_deref())
                .confirmed();
        if !agrees {
            tracing::info!(
                account = %account.id,
                "the account holding the ID number disagrees in name or date of birth; no upstream link added"
            );
            return Ok(None);
        }
        let (iss, sub) = (&identity.upstream_iss, &identity.upstream_sub);
        let mut tx = self.stores.transactions.begin().await?;
        if !self
            .stores
            .accounts
            .add_link(&mut tx, &account.id, iss, sub, now)
            .await?
        {
            // Another login of this identity linked it first: that link stands.
            tx.rollback().await?;
            let linked = self.stores.accounts.find_by_link(iss, sub).await?;
            return Ok(linked.filter(|r| r.isolated_to.is_none()));
        }
        self.stores
            .audit
            .append(
                &mut tx,
                &AuditEntry {
                    at: now,
                    kind: "upstream_linked",
                    account_id: Some(&account.id),
                    client_id: None,
                    actor: None,
                    detail: serde_json::json!({"upstream": iss, "method": "personal_id"}),
                },
            )
            .await?;
        self.stores
            .audit
            .append(&mut tx, &login_entry(now, &account.id, identity, false))
            .await?;
        tx.commit().await?;
        tracing::info!(account = %account.id, upstream = %iss, "upstream identity linked to an existing account");
        Ok(Some(account))
    }

    async fn standardise(
        &self,
        identity: &UpstreamIdentity,
        existing: Option<AccountRecord>,
        records_pending: bool,
        app_link: Option<AppLink<'_>>,
        now: i64,
    ) -> anyhow::Result<LoginOutcome> {
        if let Some(flag) = existing.as_ref().and_then(|r| r.personal_id_flag.as_ref()) {
            tracing::warn!(flag = %flag, "personal ID failed the structure check; kept and flagged");
        }
        let account_id = existing.as_ref().map(|r| r.id.clone());
        // `records_pending` false: every record with the identity's ID numbers is this
        // account's, and `match_by_id` would skip each one, so none is read.
        let found = if records_pending {
            self.records_by_id(identity).await?
        } else {
            Vec::new()
        };
        let by_id = linking::match_by_id(found, identity, account_id.as_deref());
        let mut links: Vec<(LegacyRecord, LinkMethod)> = by_id
            .agree
            .into_iter()
            .map(|r| (r, LinkMethod::PersonalId))
            .collect();
        let mut notice = None;
        if let Some(app) = app_link {
            match self
                .app_record(&app, identity, account_id.as_deref())
                .await?
            {
                Ok(Some(record)) => {
                    if !links
                        .iter()
                        .any(|(r, _)| r.legacy_id == record.legacy_id && r.source == record.source)
                    {
                        links.push((record, LinkMethod::App));
                    }
                }
                Ok(None) => {}
                Err((fields, compared)) => {
                    notice = Some(
                        self.fail(
                            identity,
                            account_id.as_deref(),
                            Reason::AppLinkRefused,
                            fields,
                            compared,
                            now,
                        )
                        .await?,
                    );
                }
            }
        }
        // What an operator unlinked from this account stays unlinked.
        if let (Some(account), false) = (account_id.as_deref(), links.is_empty()) {
            let blocked = self.stores.failures.blocked_links(account).await?;
            links.retain(|(r, _)| {
                !blocked
                    .iter()
                    .any(|(s, id)| *s == r.source && *id == r.legacy_id)
            });
        }
        let standardised = existing
            .as_ref()
            .is_some_and(|r| r.standardised_at.is_some());
        if !by_id.disagree.is_empty() || !by_id.taken.is_empty() {
            let (reason, fields) = if by_id.disagree.is_empty() {
                (Reason::Ambiguous, Vec::new())
            } else {
                (
                    Reason::IdMismatch,
                    union(by_id.disagree.iter().map(|(_, f)| f)),
                )
            };
            let compared = compared(
                identity,
                by_id
                    .disagree
                    .iter()
                    .map(|(r, f)| (r, f.as_slice()))
                    .chain(by_id.taken.iter().map(|r| (r, &[][..]))),
            );
            // A standardised account is not stopped again for a doubt support already has.
            let known = self
                .stores
                .failures
                .open_failure(&identity.upstream_iss, &identity.upstream_sub, reason)
                .await?
                .is_some();
            if !(standardised && known) {
                let failure = self
                    .fail(
                        identity,
                        account_id.as_deref(),
                        reason,
                        fields,
                        compared,
                        now,
                    )
                    .await?;
                if !standardised {
                    notice = notice.or(Some(failure));
                }
            }
        }
        match existing {
            Some(record) if standardised => {
                if !links.is_empty() {
                    self.write(identity, Some(record.clone()), &links, None, None, now)
                        .await?;
                }
                Ok(LoginOutcome::Authenticated {
                    account: Box::new(self.open(record)?),
                    created: false,
                    notice,
                })
            }
            existing if !links.is_empty() => {
                let (record, created) = self
                    .write(identity, existing, &links, None, None, now)
                    .await?;
                Ok(LoginOutcome::Authenticated {
                    account: Box::new(self.open(record)?),
                    created,
                    notice,
                })
            }
            existing => Ok(LoginOutcome::NeedsPhone {
                notice,
                unlinked: existing.is_none(),
            }),
        }
    }

    /// After the citizen proved `phone` by OTP: link the records behind it that are theirs, or
    /// record the doubt; either way the account exists afterwards, with the proven phone.
    /// `unlinked`: the login found no account linked to the identity when it asked for the
    /// phone, so none is looked for again (a racing login that created one meanwhile is met
    /// when this one's link is refused, and its account is standardised instead).
    #[tracing::instrument(skip_all, fields(upstream_sub = %identity.upstream_sub, phone = %phone))]
    pub async fn complete_with_phone(
        &self,
        identity: &UpstreamIdentity,
        policy: AccountPolicy,
        phone: &Phone,
        unlinked: bool,
        now: i64,
    ) -> anyhow::Result<LoginOutcome> {
        // Only the whole standardisation asks for a phone: the other policies never link a
        // legacy record nor create a shared account.
        if policy != AccountPolicy::LinkAndCreate {
            return Ok(LoginOutcome::Refused);
        }
        let existing = if unlinked {
            None
        } else {
            self.stores
                .accounts
                .find_by_link(&identity.upstream_iss, &identity.upstream_sub)
                .await?
        };
        if existing.as_ref().is_some_and(|r| r.isolated_to.is_some()) {
            return Ok(LoginOutcome::Refused);
        }
        let account_id = existing.as_ref().map(|r| r.id.clone());
        let found = self.open_all(self.stores.legacy.find_by_phone(phone.e164()).await?)?;
        let proven = Some((phone.e164(), now));
        let (links, notice) = match linking::match_by_phone(found, identity) {
            PhoneMatch::Link(records) => (
                records
                    .into_iter()
                    .map(|r| (r, LinkMethod::Phone))
                    .collect(),
                None,
            ),
            PhoneMatch::LinkWithDoubt(records, doubted, fields) => {
                let compared = compared(identity, doubted.iter().map(|r| (r, fields.as_slice())));
                let notice = self
                    .fail(
                        identity,
                        account_id.as_deref(),
                        Reason::PhoneMismatch,
                        fields,
                        compared,
                        now,
                    )
                    .await?;
                let links = records
                    .into_iter()
                    .map(|r| (r, LinkMethod::Phone))
                    .collect();
                (links, Some(notice))
            }
            PhoneMatch::Ambiguous(records) => {
                let compared = compared(identity, records.iter().map(|r| (r, &[][..])));
                let notice = self
                    .fail(
                        identity,
                        account_id.as_deref(),
                        Reason::Ambiguous,
                        Vec::new(),
                        compared,
                        now,
                    )
                    .await?;
                (Vec::new(), Some(notice))
            }
            PhoneMatch::Disagree(records, fields) => {
                let compared = compared(identity, records.iter().map(|r| (r, fields.as_slice())));
                let notice = self
                    .fail(
                        identity,
                        account_id.as_deref(),
                        Reason::PhoneMismatch,
                        fields,
                        compared,
                        now,
                    )
                    .await?;
                (Vec::new(), Some(notice))
            }
            PhoneMatch::Nothing => (Vec::new(), None),
        };
        let (record, created) = self
            .write(identity, existing, &links, proven, None, now)
            .await?;
        Ok(LoginOutcome::Authenticated {
            account: Box::new(self.open(record)?),
            created,
            notice,
        })
    }

    /// A failure for support, and the notice for the citizen.
    async fn fail(
        &self,
        identity: &UpstreamIdentity,
        account_id: Option<&str>,
        reason: Reason,
        fields: Vec<Field>,
        compared: serde_json::Value,
        now: i64,
    ) -> anyhow::Result<Notice> {
        // The same doubt at the next login is the same case for support, under the same
        // reference the citizen was given: not one more row per login.
        let open = self
            .stores
            .failures
            .open_failure(&identity.upstream_iss, &identity.upstream_sub, reason)
            .await?;
        if let Some(open) = open.filter(|f| f.fields == fields) {
            return Ok(Notice {
                failure_id: open.id,
                reason,
                fields,
            });
        }
        let failure = Failure {
            id: uuid::Uuid::now_v7().to_string(),
            created_at: now,
            upstream_iss: identity.upstream_iss.clone(),
            upstream_sub: identity.upstream_sub.clone(),
            account_id: account_id.map(str::to_string),
            reason: reason.as_str().to_string(),
            fields: fields.clone(),
            compared,
            resolved_at: None,
            resolved_by: None,
            resolution: None,
        };
        self.stores.failures.record_failure(&failure).await?;
        tracing::info!(reason = reason.as_str(), failure = %failure.id, "standardisation failed; recorded for support");
        Ok(Notice {
            failure_id: failure.id,
            reason,
            fields,
        })
    }

    /// Five wrong codes: recorded for support like any other failure.
    pub async fn otp_exhausted(
        &self,
        identity: &UpstreamIdentity,
        phone: &Phone,
        now: i64,
    ) -> anyhow::Result<Notice> {
        let compared = serde_json::json!({"phone": phone.masked()});
        self.fail(
            identity,
            None,
            Reason::OtpExhausted,
            vec![Field::Phone],
            compared,
            now,
        )
        .await
    }

    /// The records holding VNeID's ID numbers (SoDinhDanh and SoCMND).
    async fn records_by_id(
        &self,
        identity: &UpstreamIdentity,
    ) -> anyhow::Result<Vec<LegacyRecord>> {
        let mut found = Vec::new();
        for number in [&identity.personal_id, &identity.legacy_cmnd]
            .into_iter()
            .flatten()
        {
            let sealed = self
                .stores
                .legacy
                .find_by_personal_id_lookup(&self.sealer.lookup(number))
                .await?;
            found.extend(self.open_all(sealed)?);
        }
        Ok(found)
    }

    fn open_all(
        &self,
        sealed: Vec<super::legacy::SealedLegacyRecord>,
    ) -> anyhow::Result<Vec<LegacyRecord>> {
        sealed.into_iter().map(|s| self.sealer.open(s)).collect()
    }

    /// The record the app asked to link: `Ok(Some)` to link, `Ok(None)` when it is this
    /// account's already, `Err` with the fields and what was compared when it is refused.
    async fn app_record(
        &self,
        app: &AppLink<'_>,
        identity: &UpstreamIdentity,
        account_id: Option<&str>,
    ) -> anyhow::Result<Result<Option<LegacyRecord>, (Vec<Field>, serde_json::Value)>> {
        let Some(sealed) = self.stores.legacy.find(app.source, app.legacy_id).await? else {
            let compared = serde_json::json!({"records": [{"source": app.source, "legacy_id": app.legacy_id, "found": false}]});
            return Ok(Err((Vec::new(), compared)));
        };
        let record = self.sealer.open(sealed)?;
        if record.account_id.is_some() && record.account_id.as_deref() == account_id {
            return Ok(Ok(None));
        }
        let fields = linking::disagreements(&record, identity);
        if !fields.is_empty() || record.account_id.is_some() {
            let compared = compared(identity, std::iter::once((&record, fields.as_slice())));
            return Ok(Err((fields, compared)));
        }
        Ok(Ok(Some(record)))
    }

    /// The account after this login's profile refresh, if the identity is linked. VNeID is the
    /// source of truth, but it rarely changes: only what changed is written, with its event.
    /// An account of another realm than `realm` is neither refreshed nor returned.
    async fn refreshed(
        &self,
        identity: &UpstreamIdentity,
        realm: Option<&str>,
        now: i64,
    ) -> anyhow::Result<Linked> {
        let lookups = [&identity.personal_id, &identity.legacy_cmnd]
            .map(|number| number.as_deref().map(|n| self.sealer.lookup(n)));
        let found = self
            .stores
            .accounts
            .find_for_login(
                &identity.upstream_iss,
                &identity.upstream_sub,
                [lookups[0].as_deref(), lookups[1].as_deref()],
            )
            .await?;
        let records_pending = found.records_pending;
        let Some(old) = found.account else {
            return Ok(Linked::Nobody {
                records_pending,
                shared_holder: found.shared_holder,
            });
        };
        if old.isolated_to.as_deref() != realm {
            return Ok(Linked::OtherRealm);
        }
        let mut record = self.profile_record(old.id.clone(), identity, old.created_at, now);
        record.phone = old.phone.clone();
        record.phone_verified_at = old.phone_verified_at;
        record.standardised_at = old.standardised_at;
        record.isolated_to = old.isolated_to.clone();
        // An upstream that does not send the ID number or the birth date (another provider
        // linked to the same account) never erases what the account holds.
        if record.personal_id_lookup.is_none() {
            record.personal_id_enc = old.personal_id_enc.clone();
            record.personal_id_lookup = old.personal_id_lookup.clone();
            record.personal_id_flag = old.personal_id_flag.clone();
        }
        if record.birthdate.is_none() {
            record.birthdate = old.birthdate.clone();
        }
        let changed = self.changed_fields(&old, &record, identity)?;
        let entry = login_entry(now, &old.id, identity, false);
        if changed.is_empty() {
            self.stores.audit.append_alone(&entry).await?;
            return Ok(Linked::Account(Box::new(old), records_pending));
        }
        let mut tx = self.stores.transactions.begin().await?;
        self.stores
            .accounts
            .refresh_profile(&mut tx, &record)
            .await?;
        self.stores.audit.append(&mut tx, &entry).await?;
        self.event(
            &mut tx,
            &record.id,
            types::ACCOUNT_UPDATED,
            serde_json::json!({"fields": changed}),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Linked::Account(Box::new(record), records_pending))
    }

    /// Creates the account (or marks an existing one standardised), with the proven phone when
    /// there is one, and links the records: one transaction with the audit entries and events.
    /// Linking is idempotent (a record linked meanwhile is skipped), so a retry after a failure
    /// anywhere in between completes the same work.
    async fn write(
        &self,
        identity: &UpstreamIdentity,
        existing: Option<AccountRecord>,
        links: &[(LegacyRecord, LinkMethod)],
        proven_phone: Option<(&str, i64)>,
        realm: Option<&str>,
        now: i64,
    ) -> anyhow::Result<(AccountRecord, bool)> {
        // Without a proven phone, a linked record's phone is kept, unproven, as contact data.
        let phone = proven_phone.map(|(p, _)| p.to_string()).or_else(|| {
            existing
                .as_ref()
                .and_then(|r| r.phone.clone())
                .or_else(|| links.iter().find_map(|(r, _)| r.phone.clone()))
        });
        let verified_at = match proven_phone {
            Some((_, at)) => Some(at),
            None => existing.as_ref().and_then(|r| r.phone_verified_at),
        };
        let Some(mut record) = existing else {
            let mut record =
                self.profile_record(uuid::Uuid::now_v7().to_string(), identity, now, now);
            record.phone = phone;
            record.phone_verified_at = verified_at;
            record.standardised_at = Some(now);
            record.isolated_to = realm.map(str::to_string);
            return self
                .create(identity, record, links, proven_phone, realm, now)
                .await;
        };
        let mut tx = self.stores.transactions.begin().await?;
        self.stores
            .accounts
            .set_standardised(&mut tx, &record.id, phone.as_deref(), verified_at, now)
            .await?;
        self.stores
            .audit
            .append(
                &mut tx,
                &AuditEntry {
                    at: now,
                    kind: "standardised",
                    account_id: Some(&record.id),
                    client_id: None,
                    actor: None,
                    detail: serde_json::json!({"phone_proven": proven_phone.is_some()}),
                },
            )
            .await?;
        if record.phone != phone {
            self.event(
                &mut tx,
                &record.id,
                types::ACCOUNT_UPDATED,
                serde_json::json!({"fields": ["phone"]}),
                now,
            )
            .await?;
        }
        for (legacy, method) in links {
            self.link_in(&mut tx, &record.id, legacy, *method, None, now)
                .await?;
        }
        tx.commit().await?;
        record.phone = phone;
        record.phone_verified_at = verified_at;
        record.standardised_at = Some(now);
        self.stores
            .failures
            .attach_failures(&identity.upstream_iss, &identity.upstream_sub, &record.id)
            .await?;
        Ok((record, false))
    }

    /// A new account, with its link, its legacy records and the identity's earlier failures,
    /// committed at once; a racing login that linked the identity first wins, and this one
    /// standardises that account instead.
    async fn create(
        &self,
        identity: &UpstreamIdentity,
        record: AccountRecord,
        links: &[(LegacyRecord, LinkMethod)],
        proven_phone: Option<(&str, i64)>,
        realm: Option<&str>,
        now: i64,
    ) -> anyhow::Result<(AccountRecord, bool)> {
        let (iss, sub) = (&identity.upstream_iss, &identity.upstream_sub);
        let id = record.id.as_str();
        let details: Vec<serde_json::Value> = links
            .iter()
            .map(|(legacy, method)| link_detail(legacy, *method, None))
            .collect();
        let new = NewAccount {
            record: &record,
            upstream_iss: iss,
            upstream_sub: sub,
            audit: login_entry(now, id, identity, true),
            event: Event {
                subject: id,
                event_type: types::ACCOUNT_CREATED,
                payload: serde_json::json!({"upstream": iss}),
                at: now,
            },
            links: links
                .iter()
                .zip(&details)
                .map(|((legacy, _), detail)| NewLink {
                    source: &legacy.source,
                    legacy_id: &legacy.legacy_id,
                    audit: link_entry(now, id, detail, None),
                    event: Event {
                        subject: id,
                        event_type: types::ACCOUNT_LINKED,
                        payload: detail.clone(),
                        at: now,
                    },
                })
                .collect(),
        };
        let linked = match self.stores.accounts.create_standardised(&new).await? {
            Created::Created { linked } => linked,
            Created::LinkTaken => {
                // Another login of this identity created the account first: standardise theirs.
                let theirs = self
                    .stores
                    .accounts
                    .find_by_link(iss, sub)
                    .await?
                    .ok_or_else(|| {
                        anyhow::anyhow!("link vanished while resolving a concurrent first login")
                    })?;
                return Box::pin(self.write(
                    identity,
                    Some(theirs),
                    links,
                    proven_phone,
                    realm,
                    now,
                ))
                .await;
            }
        };
        tracing::info!(account = %id, personal_id = %identity.personal_id.as_deref().map(personal_id::mask).unwrap_or_default(), "account created");
        for ((legacy, method), done) in links.iter().zip(linked) {
            if done {
                tracing::info!(account = %id, source = %legacy.source, method = method.as_str(), "legacy account linked");
            }
        }
        Ok((record, true))
    }

    /// Links one record in the caller's transaction, with its audit entry and event; `false`
    /// when it was linked meanwhile.
    async fn link_in(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        legacy: &LegacyRecord,
        method: LinkMethod,
        operator: Option<&str>,
        now: i64,
    ) -> anyhow::Result<bool> {
        if !self
            .stores
            .legacy
            .link(tx, &legacy.source, &legacy.legacy_id, account_id, now)
            .await?
        {
            return Ok(false);
        }
        let detail = link_detail(legacy, method, operator);
        self.stores
            .audit
            .append(tx, &link_entry(now, account_id, &detail, operator))
            .await?;
        self.event(tx, account_id, types::ACCOUNT_LINKED, detail, now)
            .await?;
        tracing::info!(account = %account_id, source = %legacy.source, method = method.as_str(), "legacy account linked");
        Ok(true)
    }

    async fn event(
        &self,
        tx: &mut Transaction,
        account_id: &str,
        event_type: &'static str,
        payload: serde_json::Value,
        now: i64,
    ) -> anyhow::Result<()> {
        self.stores
            .outbox
            .append(
                tx,
                &Event {
                    subject: account_id,
                    event_type,
                    payload,
                    at: now,
                },
            )
            .await?;
        Ok(())
    }

    /// An administrator links a record to an account (support resolving a failure).
    pub async fn admin_link(
        &self,
        account_id: &str,
        source: &str,
        legacy_id: &str,
        operator: &str,
        now: i64,
    ) -> anyhow::Result<AdminChange> {
        if self.stores.accounts.find(account_id).await?.is_none() {
            return Ok(AdminChange::NoSuchAccount);
        }
        let Some(sealed) = self.stores.legacy.find(source, legacy_id).await? else {
            return Ok(AdminChange::NoSuchRecord);
        };
        let record = self.sealer.open(sealed)?;
        if record.account_id.as_deref() == Some(account_id) {
            return Ok(AdminChange::Done);
        }
        let mut tx = self.stores.transactions.begin().await?;
        self.stores
            .failures
            .unblock_link(&mut tx, source, legacy_id, account_id)
            .await?;
        if !self
            .link_in(
                &mut tx,
                account_id,
                &record,
                LinkMethod::Admin,
                Some(operator),
                now,
            )
            .await?
        {
            tx.rollback().await?;
            return Ok(AdminChange::Conflict);
        }
        tx.commit().await?;
        Ok(AdminChange::Done)
    }

    /// An administrator unlinks a record from an account.
    pub async fn admin_unlink(
        &self,
        account_id: &str,
        source: &str,
        legacy_id: &str,
        operator: &str,
        now: i64,
    ) -> anyhow::Result<AdminChange> {
        let Some(sealed) = self.stores.legacy.find(source, legacy_id).await? else {
            return Ok(AdminChange::NoSuchRecord);
        };
        if sealed.account_id.as_deref() != Some(account_id) {
            return Ok(AdminChange::Conflict);
        }
        let mut tx = self.stores.transactions.begin().await?;
        if self
            .stores
            .legacy
            .unlink(&mut tx, source, legacy_id, now)
            .await?
            .as_deref()
            != Some(account_id)
        {
            tx.rollback().await?;
            return Ok(AdminChange::Conflict);
        }
        self.stores
            .failures
            .block_link(&mut tx, source, legacy_id, account_id, now)
            .await?;
        let detail =
            serde_json::json!({"source": source, "legacy_id": legacy_id, "operator": operator});
        self.stores
            .audit
            .append(
                &mut tx,
                &AuditEntry {
                    at: now,
                    kind: "legacy_unlinked",
                    account_id: Some(account_id),
                    client_id: None,
                    actor: Some(operator),
                    detail: detail.clone(),
                },
            )
            .await?;
        self.event(&mut tx, account_id, types::ACCOUNT_UNLINKED, detail, now)
            .await?;
        tx.commit().await?;
        Ok(AdminChange::Done)
    }

    /// The legacy records linked to an account.
    pub async fn linked_records(&self, account_id: &str) -> anyhow::Result<Vec<LegacyRecord>> {
        self.open_all(self.stores.legacy.linked_to(account_id).await?)
    }

    /// The ids of one source's records linked to an account (the `legacy_accounts` claim).
    /// (source, legacy id) of every legacy record linked to the account.
    pub async fn legacy_links(&self, account_id: &str) -> anyhow::Result<Vec<(String, String)>> {
        Ok(self
            .stores
            .legacy
            .linked_to(account_id)
            .await?
            .into_iter()
            .map(|r| (r.source, r.legacy_id))
            .collect())
    }

    pub async fn legacy_ids(&self, account_id: &str, source: &str) -> anyhow::Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .stores
            .legacy
            .linked_to(account_id)
            .await?
            .into_iter()
            .filter(|r| r.source == source)
            .map(|r| r.legacy_id)
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// A new phone proven by OTP on the account page.
    pub async fn change_phone(
        &self,
        account_id: &str,
        phone: &Phone,
        now: i64,
    ) -> anyhow::Result<()> {
        let mut tx = self.stores.transactions.begin().await?;
        self.stores
            .accounts
            .set_phone(&mut tx, account_id, phone.e164(), now)
            .await?;
        self.stores
            .audit
            .append(
                &mut tx,
                &AuditEntry {
                    at: now,
                    kind: "phone_changed",
                    account_id: Some(account_id),
                    client_id: None,
                    actor: None,
                    detail: serde_json::json!({}),
                },
            )
            .await?;
        self.event(
            &mut tx,
            account_id,
            types::ACCOUNT_UPDATED,
            serde_json::json!({"fields": ["phone"]}),
            now,
        )
        .await?;
        tx.commit().await
    }

    /// Support closes a failure; the audit log names the operator.
    pub async fn resolve_failure(
        &self,
        id: &str,
        operator: &str,
        resolution: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let failure = self.stores.failures.failure(id).await?;
        if !self
            .stores
            .failures
            .resolve_failure(id, operator, resolution, now)
            .await?
        {
            return Ok(false);
        }
        self.stores
            .audit
            .append_alone(&AuditEntry {
                at: now,
                kind: "standardisation_failure_resolved",
                account_id: failure.as_ref().and_then(|f| f.account_id.as_deref()),
                client_id: None,
                actor: Some(operator),
                detail: serde_json::json!({"failure": id}),
            })
            .await?;
        Ok(true)
    }

    pub fn failures(&self) -> &Arc<dyn FailureStore> {
        &self.stores.failures
    }

    pub fn outbox(&self) -> &Arc<dyn Outbox> {
        &self.stores.outbox
    }

    fn profile_record(
        &self,
        id: String,
        identity: &UpstreamIdentity,
        created_at: i64,
        now: i64,
    ) -> AccountRecord {
        let pid = identity.personal_id.as_deref();
        let flag = pid.and_then(|p| {
            match personal_id::check(p, identity.birthdate.as_deref(), identity.gender.as_deref()) {
                IdCheck::Valid => None,
                IdCheck::Flagged(why) => Some(why.to_string()),
            }
        });
        AccountRecord {
            personal_id_enc: pid.map(|p| self.master.seal(&seal_purpose(&id), p.as_bytes())),
            personal_id_lookup: pid.map(|p| self.master.lookup_hash(p)),
            id,
            personal_id_flag: flag,
            full_name: identity.full_name.clone(),
            birthdate: identity.birthdate.clone(),
            gender: identity.gender.clone(),
            account_type: identity.account_type.clone(),
            loa: identity.loa,
            phone: None,
            phone_verified_at: None,
            standardised_at: None,
            isolated_to: None,
            created_at,
            updated_at: now,
        }
    }

    /// The profile fields this login changes.
    fn changed_fields(
        &self,
        old: &AccountRecord,
        new: &AccountRecord,
        identity: &UpstreamIdentity,
    ) -> anyhow::Result<Vec<&'static str>> {
        let old_pid = match &old.personal_id_enc {
            Some(sealed) => Some(String::from_utf8(
                self.master.open(&seal_purpose(&old.id), sealed)?,
            )?),
            None => None,
        };
        let mut changed = Vec::new();
        // No ID number from the upstream keeps the account's (see `refreshed`).
        let pid_changed = identity.personal_id.is_some() && old_pid != identity.personal_id;
        if pid_changed || old.personal_id_flag != new.personal_id_flag {
            changed.push("personal_id");
        }
        if old.full_name != new.full_name {
            changed.push("name");
        }
        if old.birthdate != new.birthdate {
            changed.push("birthdate");
        }
        if old.gender != new.gender {
            changed.push("gender");
        }
        if old.account_type != new.account_type {
            changed.push("account_type");
        }
        if old.loa != new.loa {
            changed.push("loa");
        }
        Ok(changed)
    }

    /// Decrypts a stored record.
    pub fn open(&self, record: AccountRecord) -> anyhow::Result<Account> {
        let personal_id = match &record.personal_id_enc {
            Some(sealed) => Some(String::from_utf8(
                self.master.open(&seal_purpose(&record.id), sealed)?,
            )?),
            None => None,
        };
        Ok(Account {
            id: record.id,
            personal_id,
            personal_id_flag: record.personal_id_flag,
            full_name: record.full_name,
            birthdate: record.birthdate,
            gender: record.gender,
            account_type: record.account_type,
            loa: record.loa,
            phone_verified: record.phone.is_some() && record.phone_verified_at.is_some(),
            phone: record.phone,
            legacy_accounts: None,
            created_at: record.created_at,
            updated_at: record.updated_at,
        })
    }

    /// The account as a client sees it: with `legacy_accounts` when the client has a source.
    pub async fn find_for(
        &self,
        id: &str,
        legacy_source: Option<&str>,
    ) -> anyhow::Result<Option<Account>> {
        let Some(mut account) = self.find(id).await? else {
            return Ok(None);
        };
        if let Some(source) = legacy_source {
            account.legacy_accounts = Some(self.legacy_ids(id, source).await?);
        }
        Ok(Some(account))
    }

    pub async fn find(&self, id: &str) -> anyhow::Result<Option<Account>> {
        match self.stores.accounts.find(id).await? {
            Some(record) => Ok(Some(self.open(record)?)),
            None => Ok(None),
        }
    }
}

/// The union of fields, in a stable order.
fn union<'a>(lists: impl Iterator<Item = &'a Vec<Field>>) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for f in lists.flatten() {
        if !out.contains(f) {
            out.push(*f);
        }
    }
    out
}

/// What support staff see of a comparison: record references and which fields disagreed, the
/// VNeID ID number masked, never a name or a date.
fn compared<'a>(
    identity: &UpstreamIdentity,
    records: impl Iterator<Item = (&'a LegacyRecord, &'a [Field])>,
) -> serde_json::Value {
    let records: Vec<serde_json::Value> = records
        .map(|(r, fields)| {
            serde_json::json!({
                "source": r.source, "legacy_id": r.legacy_id, "disagree": fields,
                "linked_elsewhere": r.account_id.is_some(),
            })
        })
        .collect();
    serde_json::json!({
        "vneid": {
            "personal_id": identity.personal_id.as_deref().map(personal_id::mask),
            "has_birthdate": identity.birthdate.is_some(),
        },
        "records": records,
    })
}

fn login_entry<'a>(
    now: i64,
    account_id: &'a str,
    identity: &UpstreamIdentity,
    created: bool,
) -> AuditEntry<'a> {
    AuditEntry {
        at: now,
        kind: "login",
        account_id: Some(account_id),
        client_id: None,
        actor: None,
        detail: serde_json::json!({"upstream": identity.upstream_iss, "loa": identity.loa, "created": created}),
    }
}

/// What a legacy link's audit entry and `account:linked` event say.
fn link_detail(
    legacy: &LegacyRecord,
    method: LinkMethod,
    operator: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "source": legacy.source, "legacy_id": legacy.legacy_id, "method": method.as_str(),
        "operator": operator,
    })
}

fn link_entry<'a>(
    now: i64,
    account_id: &'a str,
    detail: &serde_json::Value,
    operator: Option<&'a str>,
) -> AuditEntry<'a> {
    AuditEntry {
        at: now,
        kind: "legacy_linked",
        account_id: Some(account_id),
        client_id: None,
        actor: operator,
        detail: detail.clone(),
    }
}

fn seal_purpose(account_id: &str) -> String {
    format!("personal-id:{account_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Loa;
    use crate::secret::Secret;
    use crate::store::Db;
    use crate::transaction::Transaction;

    /// An audit log that always fails: what it should have recorded must not exist either.
    struct BrokenAudit;

    #[async_trait::async_trait]
    impl AuditLog for BrokenAudit {
        async fn append(&self, _: &mut Transaction, _: &AuditEntry<'_>) -> anyhow::Result<()> {
            anyhow::bail!("audit log unavailable")
        }
        async fn append_alone(&self, _: &AuditEntry<'_>) -> anyhow::Result<()> {
            anyhow::bail!("audit log unavailable")
        }
    }

    fn identity() -> UpstreamIdentity {
        UpstreamIdentity {
            upstream_iss: "https://vneid.example".into(),
            upstream_sub: "sub-1".into(),
            personal_id: Some("046085690467".into()),
            legacy_cmnd: None,
            full_name: "Võ Hữu Tài".into(),
            birthdate: Some("1985-03-12".into()),
            gender: None,
            loa: Loa::One,
            account_type: "1".into(),
            phone: None,
            auth_time: None,
        }
    }

    #[tokio::test]
    async fn account_link_and_audit_entry_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let db = Arc::new(Db::connect(&url, 2).await.unwrap());
        let master = MasterKey::from_secret(&Secret::new(MasterKey::generate_encoded())).unwrap();
        let stores = |audit: Arc<dyn AuditLog>| AccountStores {
            accounts: db.clone(),
            legacy: db.clone(),
            failures: db.clone(),
            outbox: db.clone(),
            audit,
            transactions: db.clone(),
        };
        let broken = AccountResolver::new(stores(Arc::new(BrokenAudit)), master.clone());
        let mut identity = identity();
        let phone = crate::accounts::phone::normalise("0905123456").unwrap();
        assert!(matches!(
            broken
                .complete_login(&identity, AccountPolicy::LinkAndCreate, None, 1_000)
                .await
                .unwrap(),
            LoginOutcome::NeedsPhone { notice: None, .. }
        ));
        // A new account's writes are the account store's own (one statement on PostgreSQL,
        // one transaction here): the audit table gone fails them all.
        let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
        sqlx::query(&rename("audit_log", "audit_away"))
            .execute(&db.pool())
            .await
            .unwrap();
        assert!(broken
            .complete_with_phone(
                &identity,
                AccountPolicy::LinkAndCreate,
                &phone,
                false,
                1_000
            )
            .await
            .is_err());
        sqlx::query(&rename("audit_away", "audit_log"))
            .execute(&db.pool())
            .await
            .unwrap();
        assert!(
            db.find_by_link(&identity.upstream_iss, &identity.upstream_sub)
                .await
                .unwrap()
                .is_none(),
            "no account without its audit entry"
        );

        let working = AccountResolver::new(stores(db.clone()), master);
        let LoginOutcome::Authenticated {
            account, created, ..
        } = working
            .complete_with_phone(
                &identity,
                AccountPolicy::LinkAndCreate,
                &phone,
                false,
                1_000,
            )
            .await
            .unwrap()
        else {
            panic!("a proven phone creates the account")
        };
        assert!(created && account.phone_verified);
        assert_eq!(
            working.outbox().of_subject(&account.id).await.unwrap()[0].event_type,
            crate::events::types::ACCOUNT_CREATED,
            "the account's event commits with it"
        );
        identity.full_name = "Võ Hữu Tài Em".into();
        assert!(broken
            .complete_login(&identity, AccountPolicy::LinkAndCreate, None, 2_000)
            .await
            .is_err());
        let stored = db
            .find_by_link(&identity.upstream_iss, &identity.upstream_sub)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (stored.full_name.as_str(), stored.updated_at),
            ("Võ Hữu Tài", 1_000),
            "no profile change without its audit entry"
        );
    }
}
