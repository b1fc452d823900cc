//! SMS one-time codes: a 6-digit code sent to a phone for one challenge (the caller's login
//! interaction), checked at most `max_attempts` times, valid `code_ttl_secs`, single use.
//!
//! Owns the codes, their attempt counters and the caps against abuse, all in the session store
//! so that every instance shares them. Knows nothing of accounts: no answer says whether a phone
//! belongs to anyone. The caller proves the VNeID identity before asking for a code.
//!
//! A code is stored only as an HMAC under the master key's OTP key over the challenge, the
//! phone and the code: a copy of the session store gives nothing to brute-force offline, and a
//! code sent to one phone never verifies another.

mod body;
pub mod dev;
pub mod gateway;
mod limits;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::abuse::ClientKey;
use crate::accounts::phone::Phone;
use crate::crypto::{b64url, b64url_decode, random_bytes, sha256_b64url, MasterKey};
use crate::sessions::{SessionStore, Swap};
use gateway::SmsGateway;
use settings::OtpSettings;

/// How long a challenge's attempt count and dead marker are kept: far longer than any login
/// lasts, so that resending never buys a challenge new guesses.
const CHALLENGE_LIFE: Duration = Duration::from_secs(24 * 3600);

/// A code is on its way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// When the code stops being accepted (Unix seconds).
    pub expires_at: i64,
    /// When another code may be sent for this challenge.
    pub resend_at: i64,
}

/// Why no code was sent. The citizen is told to retry later (after `retry_after` seconds where
/// there is one); operators see each cap in the log.
#[derive(Debug, thiserror::Error)]
pub enum OtpRefused {
    #[error("a code was sent for this challenge moments ago")]
    TooSoon { retry_after: u64 },
    #[error("a cap on SMS one-time codes is reached")]
    Limited { retry_after: u64 },
    #[error("not a mobile number that may receive codes")]
    NotMobile,
    /// The challenge used up its attempts; only a new challenge (a new login) gets a code.
    #[error("the challenge used up its attempts")]
    Exhausted,
    #[error("SMS one-time codes are unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// Why [`Otp::send_with`] sent no code, or what became of it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Refused before anything was written, as [`Otp::send`] refuses.
    #[error(transparent)]
    Refused(#[from] OtpRefused),
    /// The caller's write lost its race: nothing was written and no code went out (a unit of
    /// the caps may have been spent).
    #[error("the caller's write found its key changed")]
    Superseded,
    /// The code and the caller's write were stored, then the gateway failed: the caps and the
    /// cooldown count, and the code stays valid (a provider that timed out may still deliver).
    #[error("the SMS gateway failed")]
    NotDelivered(#[source] anyhow::Error),
}

/// A challenge's record as the caller read it with its own read, in the same round trip
/// ([`Otp::send_with`]).
pub struct Prior(pub Option<Vec<u8>>);

/// A code read and its attempt counted in the caller's own read ([`Otp::verify_counted`]):
/// [`crate::sessions::SessionStore::get_guarded_counted`] over [`Otp::keys`].
pub type Counted = Option<(Vec<u8>, u64)>;

/// What a right code did ([`Otp::verify_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// Used, and the caller's write made with it.
    Used,
    /// Right, but the caller's write found its key changed: nothing was used or written.
    Superseded,
}

/// Why a code was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum OtpFailure {
    #[error("wrong code")]
    Wrong { attempts_left: u32 },
    /// Expired, already used, or never sent for this challenge.
    #[error("no live code for this challenge")]
    Expired,
    #[error("the challenge used up its attempts")]
    Exhausted,
    #[error("SMS one-time codes are unavailable")]
    Unavailable(#[source] anyhow::Error),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Stored {
    Live {
        /// HMAC of challenge, phone and code, base64url.
        mac: String,
        sent_at: i64,
        expires_at: i64,
    },
    /// Verified: kept (with its TTL) so that the cooldown still counts from `sent_at`.
    Used { sent_at: i64 },
    /// The attempts are used up.
    Dead,
}

#[derive(Clone)]
pub struct Otp {
    store: Arc<dyn SessionStore>,
    gateway: Arc<dyn SmsGateway>,
    master: MasterKey,
    settings: Arc<OtpSettings>,
}

impl Otp {
    pub fn new(
        settings: &OtpSettings,
        store: Arc<dyn SessionStore>,
        gateway: Arc<dyn SmsGateway>,
        master: MasterKey,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        Ok(Self {
            store,
            gateway,
            master,
            settings: Arc::new(settings.clone()),
        })
    }

    /// The session-store keys of `challenge`'s code and attempt counter, and the counter's
    /// lifetime, for a caller that reads them in a round trip of its own.
    pub fn keys(challenge: &str) -> (String, String, Duration) {
        let keys = Keys::of(challenge);
        (keys.record, keys.attempts, CHALLENGE_LIFE)
    }

    /// How long after a send the next one may go, in seconds.
    pub fn resend_cooldown_secs(&self) -> i64 {
        self.settings.resend_cooldown_secs as i64
    }

    /// Sends a new code for `challenge` to `to`, replacing any earlier one. `account_key` names
    /// the account (or the upstream identity) asking, for its cap: an opaque id, never a
    /// personal ID number. `address` is the browser's, when known.
    ///
    /// The caps are counted before the SMS goes out; a gateway failure keeps the count and the
    /// code (a provider that timed out may still deliver it), so a retry waits for the cooldown.
    pub async fn send(
        &self,
        challenge: &str,
        to: &Phone,
        account_key: &str,
        address: Option<ClientKey>,
        now: i64,
    ) -> Result<Sent, OtpRefused> {
        match self
            .send_with(challenge, to, account_key, address, now, None, None)
            .await
        {
            Ok(sent) => Ok(sent),
            Err(SendError::Refused(refused)) => Err(refused),
            Err(SendError::NotDelivered(e)) => Err(OtpRefused::Unavailable(e)),
            // Only a send with a write of its own can lose that write.
            Err(SendError::Superseded) => Err(OtpRefused::Unavailable(anyhow::anyhow!(
                "a send without a write of its own was superseded"
            ))),
        }
    }

    /// [`Otp::send`], with the challenge's record as the caller already read it (`prior`; read
    /// here when `None`), and `also` (the caller's compare-and-set, say the login moving to its
    /// code page) written in the same atomic step as the code, before the SMS goes out: both are
    /// stored or neither. A gateway failure after that is [`SendError::NotDelivered`].
    #[tracing::instrument(level = "debug", skip_all, fields(to = %to.masked()))]
    #[allow(clippy::too_many_arguments)]
    pub async fn send_with(
        &self,
        challenge: &str,
        to: &Phone,
        account_key: &str,
        address: Option<ClientKey>,
        now: i64,
        prior: Option<Prior>,
        also: Option<Swap<'_>>,
    ) -> Result<Sent, SendError> {
        if !self.may_receive(to) {
            return Err(OtpRefused::NotMobile.into());
        }
        let keys = Keys::of(challenge);
        let previous = match prior {
            Some(Prior(read)) => read,
            None => self
                .store
                .get(&keys.record)
                .await
                .map_err(OtpRefused::Unavailable)?,
        };
        let cooldown = self.settings.resend_cooldown_secs as i64;
        let previous_sent_at = match previous.as_deref().map(serde_json::from_slice) {
            Some(Ok(Stored::Dead)) => return Err(OtpRefused::Exhausted.into()),
            Some(Ok(Stored::Live { sent_at, .. } | Stored::Used { sent_at })) => sent_at,
            Some(Err(e)) => return Err(OtpRefused::Unavailable(e.into()).into()),
            None => 0,
        };
        if previous_sent_at > 0 && now < previous_sent_at + cooldown {
            return Err(OtpRefused::TooSoon {
                retry_after: (previous_sent_at + cooldown - now) as u64,
            }
            .into());
        }
        let request = limits::Request {
            phone: to,
            account_key,
            address,
        };
        limits::spend(&*self.store, &self.master, &self.settings, &request, now).await?;

        let code = new_code();
        let expires_at = now + self.settings.code_ttl_secs as i64;
        let record = serde_json::to_vec(&Stored::Live {
            mac: b64url(&self.master.otp_mac(&mac_input(challenge, to, &code))),
            sent_at: now,
            expires_at,
        })
        .map_err(|e| OtpRefused::Unavailable(e.into()))?;
        // Two sends racing past the check above: only the one that replaces the record it read
        // sends its code (the other may have spent a unit of the caps, never an SMS).
        let claim = Swap {
            key: &keys.record,
            expected: previous.as_deref(),
            value: &record,
            ttl: self.code_ttl(),
        };
        let swaps: &[Swap<'_>] = match &also {
            Some(also) => &[claim, *also],
            None => &[claim],
        };
        let claimed = self
            .store
            .replace_all_if(swaps, &[])
            .await
            .map_err(OtpRefused::Unavailable)?;
        if !claimed {
            // The record changed since it was read (another send), or `also` lost its race.
            let now_stored = self
                .store
                .get(&keys.record)
                .await
                .map_err(OtpRefused::Unavailable)?;
            if also.is_some() && now_stored == previous {
                return Err(SendError::Superseded);
            }
            return Err(OtpRefused::TooSoon {
                retry_after: cooldown as u64,
            }
            .into());
        }
        if let Err(e) = self.gateway.send(to, &self.settings.text(&code)).await {
            let e = anyhow::Error::from(e).context("the SMS gateway failed");
            tracing::warn!(to = %to.masked(), error = format!("{e:#}"), "SMS one-time code not sent");
            return Err(SendError::NotDelivered(e));
        }
        tracing::info!(to = %to.masked(), expires_at, "SMS one-time code sent");
        Ok(Sent {
            expires_at,
            resend_at: now + cooldown,
        })
    }

    /// Checks `code` for `challenge` and `to`. Every guess, right or wrong, counts one attempt
    /// before it is compared, so parallel guesses cannot exceed the attempts; the right code
    /// consumes the challenge.
    pub async fn verify(
        &self,
        challenge: &str,
        to: &Phone,
        code: &str,
        now: i64,
    ) -> Result<(), OtpFailure> {
        match self.verify_with(challenge, to, code, now, None).await? {
            Verified::Used => Ok(()),
            // Only a verify with a write of its own can lose that write.
            Verified::Superseded => Err(OtpFailure::Expired),
        }
    }

    /// [`Otp::verify`], and when the code is right, `also` (the caller's compare-and-set, say
    /// the login it proves moving on) in the same atomic step as the code's use: both happen or
    /// neither. `Superseded`: the code was right but `also`'s key had changed meanwhile, so
    /// nothing was used.
    pub async fn verify_with(
        &self,
        challenge: &str,
        to: &Phone,
        code: &str,
        now: i64,
        also: Option<Swap<'_>>,
    ) -> Result<Verified, OtpFailure> {
        let keys = Keys::of(challenge);
        // The attempt is counted in the read that fetches the code.
        let counted = self
            .store
            .get_counted(&keys.record, &keys.attempts, CHALLENGE_LIFE)
            .await
            .map_err(OtpFailure::Unavailable)?;
        self.verify_counted(challenge, to, code, now, also, counted)
            .await
    }

    /// [`Otp::verify_with`], the code read and its attempt counted by the caller (`counted`,
    /// read with [`Otp::keys`] in the caller's own round trip).
    #[tracing::instrument(level = "debug", skip_all, fields(to = %to.masked()))]
    pub async fn verify_counted(
        &self,
        challenge: &str,
        to: &Phone,
        code: &str,
        now: i64,
        also: Option<Swap<'_>>,
        counted: Counted,
    ) -> Result<Verified, OtpFailure> {
        let keys = Keys::of(challenge);
        let Some((read, attempt)) = counted else {
            return Err(OtpFailure::Expired);
        };
        let (mac, sent_at, expires_at) =
            match serde_json::from_slice(&read).map_err(|e| OtpFailure::Unavailable(e.into()))? {
                Stored::Used { .. } => return Err(OtpFailure::Expired),
                Stored::Dead => return Err(OtpFailure::Exhausted),
                Stored::Live { expires_at, .. } if now >= expires_at => {
                    return Err(OtpFailure::Expired)
                }
                Stored::Live {
                    mac,
                    sent_at,
                    expires_at,
                } => (b64url_decode(&mac).unwrap_or_default(), sent_at, expires_at),
            };
        let max = u64::from(self.settings.max_attempts);
        if attempt > max {
            self.kill(&keys, to).await?;
            return Err(OtpFailure::Exhausted);
        }
        // A malformed code is compared all the same (against a value no code has), so that
        // every guess takes the same path.
        let candidate = well_formed(code);
        let typed = candidate.as_deref().unwrap_or("------");
        let matches = self
            .master
            .otp_mac_matches(&mac_input(challenge, to, typed), &mac);
        if !(matches && candidate.is_some()) {
            let attempts_left = (max - attempt) as u32;
            if attempts_left == 0 {
                self.kill(&keys, to).await?;
                return Err(OtpFailure::Exhausted);
            }
            return Err(OtpFailure::Wrong { attempts_left });
        }
        // Single use: of two right guesses racing, one replaces the live record it read, and
        // its attempt counter goes with it. The record stays until the code's own end, so that
        // the cooldown still counts from the send.
        let used = serde_json::to_vec(&Stored::Used { sent_at })
            .map_err(|e| OtpFailure::Unavailable(e.into()))?;
        let left = Duration::from_secs((expires_at - now).max(1) as u64);
        let mark_used = Swap {
            key: &keys.record,
            expected: Some(&read),
            value: &used,
            ttl: left,
        };
        let swaps: &[Swap<'_>] = match &also {
            Some(also) => &[mark_used, *also],
            None => &[mark_used],
        };
        let consumed = self
            .store
            .replace_all_if(swaps, &[&keys.attempts])
            .await
            .map_err(OtpFailure::Unavailable)?;
        if !consumed {
            // Another request used the code, or killed the challenge, since the read; or the
            // code is as it was and `also` lost its race.
            let now_stored = self
                .store
                .get(&keys.record)
                .await
                .map_err(OtpFailure::Unavailable)?;
            if also.is_some() && now_stored.as_deref() == Some(&read[..]) {
                return Ok(Verified::Superseded);
            }
            return match now_stored.as_deref().map(serde_json::from_slice) {
                Some(Ok(Stored::Dead)) => Err(OtpFailure::Exhausted),
                _ => Err(OtpFailure::Expired),
            };
        }
        tracing::info!(to = %to.masked(), "SMS one-time code verified");
        Ok(Verified::Used)
    }

    /// Vietnamese mobile numbers always; other countries' numbers when allowed; Vietnamese
    /// landlines never (they receive no SMS).
    fn may_receive(&self, to: &Phone) -> bool {
        to.is_vietnamese_mobile()
            || (self.settings.allow_foreign_numbers && !to.e164().starts_with("+84"))
    }

    fn code_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.code_ttl_secs)
    }

    async fn kill(&self, keys: &Keys, to: &Phone) -> Result<(), OtpFailure> {
        tracing::info!(to = %to.masked(), "SMS one-time code: attempts used up");
        self.save(&keys.record, &Stored::Dead, CHALLENGE_LIFE)
            .await
            .map_err(OtpFailure::Unavailable)
    }

    async fn save(&self, key: &str, value: &Stored, ttl: Duration) -> anyhow::Result<()> {
        self.store.put(key, &serde_json::to_vec(value)?, ttl).await
    }
}

/// The session-store keys of one challenge, named by a hash of its id.
struct Keys {
    record: String,
    attempts: String,
}

impl Keys {
    fn of(challenge: &str) -> Self {
        let id = sha256_b64url(challenge);
        Self {
            record: format!("otp:c:{id}"),
            attempts: format!("otp:a:{id}"),
        }
    }
}

/// What the MAC covers, each part length-prefixed so that no two inputs read alike.
fn mac_input(challenge: &str, to: &Phone, code: &str) -> Vec<u8> {
    let mut input = b"broker/otp/code\0".to_vec();
    for part in [challenge, to.e164(), code] {
        input.extend_from_slice(&(part.len() as u32).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    input
}

/// A typed code as six ASCII digits, tolerating the spaces and dashes people type.
fn well_formed(code: &str) -> Option<String> {
    let code: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// Six digits, uniform: 32-bit draws above the largest multiple of 10^6 are drawn again.
fn new_code() -> String {
    code_from(|| u32::from_be_bytes(random_bytes::<4>()))
}

fn code_from(mut draw: impl FnMut() -> u32) -> String {
    const SPACE: u64 = 1_000_000;
    // 4,294,000,000: below it every code has exactly 4,294 draws.
    const ZONE: u64 = (1 << 32) / SPACE * SPACE;
    loop {
        let x = u64::from(draw());
        if x < ZONE {
            return format!("{:06}", x % SPACE);
        }
    }
}

#[cfg(test)]
mod tests;
