//! Pending upstream logins: single use, with a TTL, bound to the browser that started them by
//! a cookie as well as `state` (RFC 6749 §10.12), and carrying the original downstream request.
//!
//! Each pending login has its own binding cookie, named after its `state`, holding a fresh
//! random secret. Two tabs logging in at once each keep their own cookie, and a cookie planted
//! from a sibling subdomain (cookie tossing) cannot fix the binding: the broker never adopts a
//! secret it finds in the browser, it only checks one it set itself.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accounts::UpstreamIdentity;
use crate::crypto::{random_token, sha256_b64url, MasterKey, TOKEN_LEN};
use crate::oidc::authorize::AuthorizeRequest;
use crate::sessions::{SessionStore, Swap};

/// Prefix of the binding cookies' names; the rest of the name comes from the login's `state`.
pub const COOKIE_PREFIX: &str = "broker_login_";

/// The name of the binding cookie of the login with this `state` (before any `__Host-`).
pub fn cookie_name(state: &str) -> String {
    let digest = sha256_b64url(state);
    format!("{COOKIE_PREFIX}{}", &digest[..16])
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    pub request: AuthorizeRequest,
    pub nonce: Option<String>,
    pub pkce_verifier: Option<String>,
    pub created_at: i64,
    /// The broker asked the upstream for a fresh authentication (`prompt=login`), so the time of
    /// the callback may stand for `auth_time` when the upstream does not send one.
    #[serde(default)]
    pub forced_login: bool,
    /// The browser that asked, for the session record.
    #[serde(default)]
    pub seen_from: crate::sessions::records::SeenFrom,
    /// The name of the upstream the login went to: only its callback path may finish it.
    /// `None` for a login stored before upstreams had names (it went to the first).
    #[serde(default)]
    pub upstream: Option<String>,
}

/// An authorization request waiting for the person to choose an upstream on the login page
/// (several are enabled and the RP named none). Like a pending login it is bound to the browser
/// by a cookie; it is not used up by a choice, so that the back button can choose again, and
/// each choice starts a pending login of its own, bound to that upstream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingChoice {
    pub request: AuthorizeRequest,
    pub seen_from: crate::sessions::records::SeenFrom,
    pub created_at: i64,
}

/// Unknown, expired or already used `state`, or a callback from another browser than the one
/// that started the login (the binding is part of the key, so that case changes nothing).
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownLogin;

#[derive(Clone)]
pub struct PendingLogins {
    store: Arc<dyn SessionStore>,
    ttl: Duration,
    master: MasterKey,
}

pub struct Started {
    pub state: String,
    pub browser_secret: String,
    pub nonce: Option<String>,
    pub pkce_verifier: Option<String>,
}

/// A login stopped at a step that needs the person (an interaction): the pending login, the
/// verified upstream identity, when the person authenticated, and where the steps stand. It
/// holds personal data, so it is stored sealed under the master key, and like a pending login
/// it is bound to the browser.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SuspendedLogin {
    pub pending: PendingLogin,
    pub identity: UpstreamIdentity,
    /// The authentication time the flow vouches for (see `login::callback`).
    pub auth_time: Option<i64>,
    pub steps: crate::login::standardise::StepState,
}

/// A suspended login as it was read (its sealed bytes, fresh for every save): a save goes
/// through only over the version it started from, so that a late request (a stale wrong code
/// after the right one) never overwrites a newer step, nor brings back an ended interaction.
pub struct Version(Vec<u8>);

/// A suspended login's next version, sealed, to be written over the version it was read as.
pub struct PreparedSave {
    key: String,
    sealed: Vec<u8>,
    ttl: Duration,
}

impl PreparedSave {
    /// The compare-and-set that writes it, if the login is still as `read`.
    pub fn swap<'a>(&'a self, read: &'a Version) -> Swap<'a> {
        Swap {
            key: &self.key,
            expected: Some(&read.0),
            value: &self.sealed,
            ttl: self.ttl,
        }
    }

    /// The version the login has once the swap is made.
    pub fn into_version(self) -> Version {
        Version(self.sealed)
    }
}

/// What [`PendingLogins::resume_with`] reads besides the login, in the same round trip.
#[derive(Clone, Copy, Debug)]
pub enum AlsoRead<'k> {
    Nothing,
    /// One more key (read, not locked).
    Value(&'k str),
    /// `key` read and `counter` counted, only if the login is there and `key` holds a value
    /// ([`SessionStore::get_guarded_counted`]).
    Counted {
        key: &'k str,
        counter: &'k str,
        ttl: Duration,
    },
}

/// What was read with the login ([`AlsoRead`]).
#[derive(Debug)]
pub enum AlsoReadout {
    Nothing,
    Value(Option<Vec<u8>>),
    Counted(Option<(Vec<u8>, u64)>),
}

/// Where a suspended login waits: its interaction id (in the page's URL) and the secret of the
/// browser cookie that binds it.
pub struct Suspended {
    pub interaction_id: String,
    pub browser_secret: String,
}

const SEAL_PURPOSE: &str = "suspended-login";

impl PendingLogins {
    pub fn new(store: Arc<dyn SessionStore>, ttl: Duration, master: MasterKey) -> Self {
        Self { store, ttl, master }
    }

    fn interaction_key(interaction_id: &str, browser_secret: &str) -> String {
        format!(
            "interaction:{}:{}",
            sha256_b64url(interaction_id),
            sha256_b64url(browser_secret)
        )
    }

    /// Stores a login stopped at an interaction, for the pending-login lifetime. `answering`:
    /// the upstream `state` whose callback stopped it, noted with it (in the same atomic write)
    /// so that the callback's address, which shows the interaction's first page, still leads
    /// there when the browser loads it again ([`PendingLogins::answered`]).
    pub async fn suspend(
        &self,
        login: &SuspendedLogin,
        answering: Option<&str>,
    ) -> anyhow::Result<Suspended> {
        let suspended = Suspended {
            interaction_id: random_token(),
            browser_secret: random_token(),
        };
        let sealed = self.master.seal(SEAL_PURPOSE, &serde_json::to_vec(login)?);
        let key = Self::interaction_key(&suspended.interaction_id, &suspended.browser_secret);
        let first = |key, value| Swap {
            key,
            expected: None,
            value,
            ttl: self.ttl,
        };
        match answering {
            Some(state) => {
                let answered = Self::answered_key(state);
                let swaps = [
                    first(&key, sealed.as_bytes()),
                    first(&answered, suspended.interaction_id.as_bytes()),
                ];
                // Both keys are new: the interaction's is random, and a `state` is answered once
                // (its pending login was taken by the one callback that got here).
                if !self.store.replace_all_if(&swaps, &[]).await? {
                    anyhow::bail!("a suspended login's keys were taken already");
                }
            }
            None => self.store.put(&key, sealed.as_bytes(), self.ttl).await?,
        }
        Ok(suspended)
    }

    fn answered_key(state: &str) -> String {
        format!("answered:{}", sha256_b64url(state))
    }

    /// The interaction a callback with this `state` stopped at, if it did and the interaction
    /// may still be live: where a second load of the callback's address goes (its page needs the
    /// interaction's own binding cookie, so the address alone opens nothing).
    pub async fn answered(&self, state: &str) -> anyhow::Result<Option<String>> {
        if state.len() != TOKEN_LEN {
            return Ok(None);
        }
        Ok(self
            .store
            .get(&Self::answered_key(state))
            .await?
            .and_then(|id| String::from_utf8(id).ok())
            .filter(|id| id.len() == TOKEN_LEN))
    }

    /// The suspended login, if this browser holds its binding. It stays stored until the login
    /// ends ([`PendingLogins::end_interaction`]): a step that fails half-way (a backend down
    /// after the OTP was verified) is retried from what was saved, nothing is lost.
    pub async fn resume(
        &self,
        interaction_id: &str,
        browser_secret: Option<&str>,
    ) -> anyhow::Result<Result<(SuspendedLogin, Version), UnknownLogin>> {
        Ok(self
            .resume_with(interaction_id, browser_secret, AlsoRead::Nothing)
            .await?
            .map(|(login, version, _)| (login, version)))
    }

    /// [`PendingLogins::resume`], and `also` in the same round trip: a step's own state (the
    /// one-time code of the login's challenge) read, or read and counted, with the login. A
    /// count is made only when this browser's login is there: its key names the binding.
    pub async fn resume_with(
        &self,
        interaction_id: &str,
        browser_secret: Option<&str>,
        also: AlsoRead<'_>,
    ) -> anyhow::Result<Result<(SuspendedLogin, Version, AlsoReadout), UnknownLogin>> {
        let Some(key) = Self::checked_interaction_key(interaction_id, browser_secret) else {
            return Ok(Err(UnknownLogin));
        };
        let (bytes, readout) = match also {
            AlsoRead::Nothing => (self.store.get(&key).await?, AlsoReadout::Nothing),
            AlsoRead::Value(other) => {
                let mut read = self.store.get_many(&[&key, other]).await?.into_iter();
                let login = read.next().flatten();
                (login, AlsoReadout::Value(read.next().flatten()))
            }
            AlsoRead::Counted {
                key: counted,
                counter,
                ttl,
            } => match self
                .store
                .get_guarded_counted(&key, counted, counter, ttl)
                .await?
            {
                Some((login, count)) => (Some(login), AlsoReadout::Counted(count)),
                None => (None, AlsoReadout::Counted(None)),
            },
        };
        let Some(bytes) = bytes else {
            return Ok(Err(UnknownLogin));
        };
        let plain = self
            .master
            .open(SEAL_PURPOSE, std::str::from_utf8(&bytes)?)?;
        Ok(Ok((
            serde_json::from_slice(&plain)?,
            Version(bytes),
            readout,
        )))
    }

    /// Saves a step's progress under the same interaction, if nothing else saved or ended it
    /// since `read`. The new version, or `None` when another request got there first.
    pub async fn save(
        &self,
        interaction_id: &str,
        browser_secret: &str,
        login: &SuspendedLogin,
        read: &Version,
    ) -> anyhow::Result<Option<Version>> {
        let save = self.prepare_save(interaction_id, browser_secret, login)?;
        let saved = self.store.replace_all_if(&[save.swap(read)], &[]).await?;
        Ok(saved.then(|| save.into_version()))
    }

    /// A save for another component's atomic step to make (the one-time code's use,
    /// [`crate::otp::Otp::verify_with`]): the same compare-and-set as [`PendingLogins::save`].
    pub fn prepare_save(
        &self,
        interaction_id: &str,
        browser_secret: &str,
        login: &SuspendedLogin,
    ) -> anyhow::Result<PreparedSave> {
        Ok(PreparedSave {
            key: Self::interaction_key(interaction_id, browser_secret),
            sealed: self
                .master
                .seal(SEAL_PURPOSE, &serde_json::to_vec(login)?)
                .into_bytes(),
            ttl: self.ttl,
        })
    }

    /// The login is over (its code issued): the interaction cannot be used again.
    pub async fn end_interaction(
        &self,
        interaction_id: &str,
        browser_secret: &str,
    ) -> anyhow::Result<bool> {
        Ok(self
            .store
            .take(&Self::interaction_key(interaction_id, browser_secret))
            .await?
            .is_some())
    }

    fn checked_interaction_key(
        interaction_id: &str,
        browser_secret: Option<&str>,
    ) -> Option<String> {
        let browser_secret = browser_secret.filter(|s| s.len() == TOKEN_LEN)?;
        (interaction_id.len() == TOKEN_LEN)
            .then(|| Self::interaction_key(interaction_id, browser_secret))
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn choice_key(choice_id: &str, browser_secret: &str) -> String {
        format!(
            "choice:{}:{}",
            sha256_b64url(choice_id),
            sha256_b64url(browser_secret)
        )
    }

    /// Stores a request that waits for the choice of an upstream; returns its id and the
    /// binding cookie's secret.
    pub async fn offer_choice(&self, choice: &PendingChoice) -> anyhow::Result<Suspended> {
        let offered = Suspended {
            interaction_id: random_token(),
            browser_secret: random_token(),
        };
        self.store
            .put(
                &Self::choice_key(&offered.interaction_id, &offered.browser_secret),
                &serde_json::to_vec(choice)?,
                self.ttl,
            )
            .await?;
        Ok(offered)
    }

    /// The request waiting for a choice, if this browser holds its binding.
    pub async fn choice(
        &self,
        choice_id: &str,
        browser_secret: Option<&str>,
    ) -> anyhow::Result<Result<PendingChoice, UnknownLogin>> {
        let Some(browser_secret) = browser_secret.filter(|s| s.len() == TOKEN_LEN) else {
            return Ok(Err(UnknownLogin));
        };
        if choice_id.len() != TOKEN_LEN {
            return Ok(Err(UnknownLogin));
        }
        match self
            .store
            .get(&Self::choice_key(choice_id, browser_secret))
            .await?
        {
            Some(bytes) => Ok(Ok(serde_json::from_slice(&bytes)?)),
            None => Ok(Err(UnknownLogin)),
        }
    }

    fn key(state: &str, browser_secret: &str) -> String {
        format!(
            "pending:{}:{}",
            sha256_b64url(state),
            sha256_b64url(browser_secret)
        )
    }

    /// Stores a pending login to `upstream` with a fresh state and binding secret (and a nonce
    /// and PKCE verifier where its profile uses them).
    pub async fn start(
        &self,
        upstream: &super::profile::UpstreamProfile,
        request: AuthorizeRequest,
        forced_login: bool,
        seen_from: crate::sessions::records::SeenFrom,
        now: i64,
    ) -> anyhow::Result<Started> {
        let started = Started {
            state: random_token(),
            nonce: upstream.use_nonce.then(random_token),
            pkce_verifier: upstream.use_pkce.then(random_token),
            browser_secret: random_token(),
        };
        let pending = PendingLogin {
            request,
            nonce: started.nonce.clone(),
            pkce_verifier: started.pkce_verifier.clone(),
            created_at: now,
            forced_login,
            seen_from,
            upstream: Some(upstream.name.clone()),
        };
        self.store
            .put(
                &Self::key(&started.state, &started.browser_secret),
                &serde_json::to_vec(&pending)?,
                self.ttl,
            )
            .await?;
        Ok(started)
    }

    /// Consumes the pending login for `state` if this browser started it, in one atomic step. A
    /// callback from another browser looks for another key and leaves the login in place.
    pub async fn finish(
        &self,
        state: &str,
        browser_secret: Option<&str>,
    ) -> anyhow::Result<Result<PendingLogin, UnknownLogin>> {
        let Some(browser_secret) = browser_secret.filter(|s| s.len() == TOKEN_LEN) else {
            return Ok(Err(UnknownLogin));
        };
        if state.len() != TOKEN_LEN {
            return Ok(Err(UnknownLogin));
        }
        match self.store.take(&Self::key(state, browser_secret)).await? {
            Some(bytes) => Ok(Ok(serde_json::from_slice(&bytes)?)),
            None => Ok(Err(UnknownLogin)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::memory::MemoryStore;

    fn identity() -> UpstreamIdentity {
        serde_json::from_value(serde_json::json!({
            "upstream_iss": "https://vneid.example", "upstream_sub": "s-1",
            "personal_id": "046085690467", "legacy_cmnd": null, "full_name": "Võ Hữu Tài",
            "birthdate": null, "gender": null, "loa": 2, "account_type": "1", "phone": null,
            "auth_time": 1_700_000_000
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_suspended_login_resumes_in_its_own_browser_saves_only_over_what_it_read_and_is_sealed(
    ) {
        let store = Arc::new(MemoryStore::new());
        let master =
            MasterKey::from_secret(&crate::secret::Secret::new(MasterKey::generate_encoded()))
                .unwrap();
        let logins = PendingLogins::new(store.clone(), Duration::from_secs(600), master);
        let request: AuthorizeRequest = serde_json::from_value(serde_json::json!({
            "client_id": "c", "redirect_uri": "https://app.example/cb", "scope": ["openid"],
            "state": null, "nonce": null, "code_challenge": null, "prompt_login": false,
            "prompt_none": false, "max_age": null, "required_loa": null, "login_hint": null,
            "ui_locales": null, "resource": null
        }))
        .unwrap();
        let login = SuspendedLogin {
            pending: PendingLogin {
                request,
                nonce: None,
                pkce_verifier: None,
                created_at: 1,
                forced_login: false,
                seen_from: Default::default(),
                upstream: Some("vneid".into()),
            },
            identity: identity(),
            auth_time: Some(1),
            steps: crate::login::standardise::StepState::new(
                crate::login::standardise::Stage::AskPhone,
            ),
        };
        let at = logins.suspend(&login, None).await.unwrap();
        let key = PendingLogins::interaction_key(&at.interaction_id, &at.browser_secret);
        let stored = store.get(&key).await.unwrap().unwrap();
        assert!(
            !String::from_utf8_lossy(&stored).contains("046085690467"),
            "the personal ID number is not stored in the clear"
        );
        let other = random_token();
        assert!(logins
            .resume(&at.interaction_id, Some(&other))
            .await
            .unwrap()
            .is_err());
        let (back, read) = logins
            .resume(&at.interaction_id, Some(&at.browser_secret))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.identity, login.identity);
        assert_eq!(back.steps.csrf, login.steps.csrf);

        // Two requests read the same version: the first save wins, the late one changes nothing.
        let (id, secret) = (&at.interaction_id, &at.browser_secret);
        let mut proven = back.clone();
        proven.steps.stage = crate::login::standardise::Stage::PhoneProven {
            phone: "+84905123456".into(),
        };
        let newer = logins.save(id, secret, &proven, &read).await.unwrap();
        let newer = newer.expect("the first save over the version read goes through");
        let mut stale = back.clone();
        stale.steps.message = Some(crate::login::standardise::Message::CodeExpired);
        assert!(logins
            .save(id, secret, &stale, &read)
            .await
            .unwrap()
            .is_none());
        let (now_stored, _) = logins.resume(id, Some(secret)).await.unwrap().unwrap();
        assert!(matches!(
            now_stored.steps.stage,
            crate::login::standardise::Stage::PhoneProven { .. }
        ));

        assert!(logins.end_interaction(id, secret).await.unwrap());
        assert!(logins.resume(id, Some(secret)).await.unwrap().is_err());
        // A save that started before the end never brings the interaction back.
        assert!(logins
            .save(id, secret, &proven, &newer)
            .await
            .unwrap()
            .is_none());
        assert!(logins.resume(id, Some(secret)).await.unwrap().is_err());
    }
}
