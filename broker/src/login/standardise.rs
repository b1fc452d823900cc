//! The standardisation steps that need the person: the failure page, the phone number, the
//! one-time code. The login waits between them as a suspended login (sealed, bound to the
//! browser by a cookie, its progress saved after every step), so that a failure half-way
//! (a backend down after the code was verified) is retried from where it stopped.
//!
//! ```text
//! callback ─► account resolution ─┬─ linked / matched by ID ───────────────────────► finish
//!                                 ├─ doubt ─► failure page ─┬─ continue ─► finish (account exists)
//!                                 │                         └─ continue ─► phone
//!                                 └─ nothing by ID ─► phone ─► code ─► phone proven ─► account ─► finish
//! ```

use serde::{Deserialize, Serialize};

use super::{BrowserCookie, FlowError, Interaction, LoginFlow, Next};
use crate::abuse::ClientKey;
use crate::accounts::failures::{Field, Reason};
use crate::accounts::login::{LoginOutcome, Notice};
use crate::accounts::phone::{self, Phone};
use crate::accounts::UpstreamIdentity;
use crate::crypto::{ct_eq, random_token};
use crate::federation::pending::{
    cookie_name, AlsoRead, AlsoReadout, PendingLogin, SuspendedLogin, UnknownLogin, Version,
};
use crate::oidc::error::OAuthError;
use crate::otp::{Otp, OtpFailure, OtpRefused, Prior, SendError, Verified};

/// The longest a login may take from `/authorize` to its last step (a slow SMS, a resend, the
/// failure page read twice): past it the person starts again from the app, so that an old
/// authentication is never turned into a code.
pub const MAX_LOGIN_SECS: i64 = 30 * 60;

/// Where the person stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// The failure page; then the phone step, or the client when the account exists.
    Failed {
        notice: Notice,
        account_id: Option<String>,
    },
    /// Asking for the phone number.
    AskPhone,
    /// A code went to this phone (E.164).
    EnterCode { phone: String, resend_at: i64 },
    /// The phone is proven; what remains is writing the account, retried until it succeeds.
    PhoneProven { phone: String },
    /// Five wrong codes: the failure page, and a new login from the app.
    Exhausted { notice: Notice },
}

/// A short message on the next page, in the person's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    InvalidPhone,
    NotMobile,
    Sent,
    TooSoon { seconds: u64 },
    Limited { seconds: u64 },
    SmsUnavailable,
    WrongCode { attempts_left: u32 },
    CodeExpired,
    Unavailable,
}

/// The suspended login's step state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepState {
    pub stage: Stage,
    /// The forms' CSRF token.
    pub csrf: String,
    /// No account was linked to the identity when the login was suspended
    /// (`LoginOutcome::NeedsPhone`); absent in logins suspended before it existed.
    #[serde(default)]
    pub unlinked: bool,
    #[serde(default)]
    pub message: Option<Message>,
}

impl StepState {
    pub fn new(stage: Stage) -> Self {
        Self {
            stage,
            csrf: random_token(),
            unlinked: false,
            message: None,
        }
    }
}

/// What a page shows.
#[derive(Debug)]
pub enum InteractionStep {
    Phone,
    Code {
        /// Masked.
        phone: String,
        resend_in: i64,
    },
    Failure {
        reason: Reason,
        fields: Vec<Field>,
        /// A continue button (to the phone step or to the client); none after five wrong codes.
        can_continue: bool,
    },
}

/// A page to render for an interaction.
#[derive(Debug)]
pub struct StepView {
    pub interaction_id: String,
    pub csrf: String,
    pub english: bool,
    pub step: InteractionStep,
    pub message: Option<Message>,
    /// The tail of the failure's id, for the citizen to read out to the support desk.
    pub failure_ref: Option<String>,
}

/// What the person sent from a page.
#[derive(Debug)]
pub enum StepInput {
    Phone(String),
    Code(String),
    Resend,
    ChangePhone,
    Continue,
}

/// A step request as the flow needs it.
pub struct StepRequest<'r> {
    pub interaction_id: &'r str,
    pub binding_secret: Option<&'r str>,
    pub csrf: Option<&'r str>,
    pub sso_secret: Option<&'r str>,
    pub client: Option<ClientKey>,
}

/// The name of an interaction's binding cookie (before any `__Host-`); it shares the pending
/// logins' prefix, so the cap on a browser's binding cookies counts it too.
pub fn interaction_cookie(interaction_id: &str) -> String {
    cookie_name(&format!("interaction:{interaction_id}"))
}

impl<'a> LoginFlow<'a> {
    /// Suspends the login at its first interaction and answers with its page: the callback's
    /// response is the page (one request fewer than a redirect to it), and a second load of the
    /// callback's address is sent to the interaction (`answering`, [`PendingLogins::answered`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn suspend(
        &self,
        pending: &PendingLogin,
        identity: UpstreamIdentity,
        auth_time: Option<i64>,
        stage: Stage,
        unlinked: bool,
        answering: Option<&str>,
        now: i64,
    ) -> Result<Next, FlowError> {
        let mut steps = StepState::new(stage);
        steps.unlinked = unlinked;
        let login = SuspendedLogin {
            pending: pending.clone(),
            identity,
            auth_time,
            steps,
        };
        let at = self.pending.suspend(&login, answering).await?;
        Ok(Next::Interaction(Interaction {
            binding: Some(BrowserCookie {
                name: interaction_cookie(&at.interaction_id),
                value: at.browser_secret,
                max_age: self.pending.ttl().as_secs() as i64,
            }),
            view: Some(view(&at.interaction_id, &login, now)),
            id: at.interaction_id,
        }))
    }

    /// What the outcome of account resolution means for the browser. `answering`: the
    /// upstream `state` of the callback that resolved it, noted with a suspended login.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn after_resolution(
        &self,
        pending: &PendingLogin,
        identity: UpstreamIdentity,
        auth_time: Option<i64>,
        outcome: LoginOutcome,
        previous_secret: Option<&str>,
        answering: Option<&str>,
        now: i64,
    ) -> Result<Result<Next, OAuthError>, FlowError> {
        match outcome {
            LoginOutcome::Authenticated {
                account,
                notice: None,
                ..
            } => {
                self.start_session(
                    pending,
                    &identity,
                    auth_time,
                    &account,
                    previous_secret,
                    now,
                )
                .await
            }
            LoginOutcome::Authenticated {
                account,
                notice: Some(notice),
                ..
            } => {
                let stage = Stage::Failed {
                    notice,
                    account_id: Some(account.id),
                };
                Ok(Ok(self
                    .suspend(pending, identity, auth_time, stage, false, answering, now)
                    .await?))
            }
            LoginOutcome::Refused => Ok(Err(refused())),
            LoginOutcome::NeedsPhone { notice, unlinked } => {
                let stage = match notice {
                    Some(notice) => Stage::Failed {
                        notice,
                        account_id: None,
                    },
                    None => Stage::AskPhone,
                };
                Ok(Ok(self
                    .suspend(
                        pending, identity, auth_time, stage, unlinked, answering, now,
                    )
                    .await?))
            }
        }
    }

    /// The page of an interaction, or why there is none.
    pub async fn show_step(
        &self,
        interaction_id: &str,
        binding_secret: Option<&str>,
        now: i64,
    ) -> Result<StepView, FlowError> {
        match self
            .resume_live(interaction_id, binding_secret, now)
            .await?
        {
            Ok((login, _)) => Ok(view(interaction_id, &login, now)),
            Err(UnknownLogin) => Err(FlowError::UnknownLogin),
        }
    }

    /// Applies what the person sent. `Ok(Ok(next))`: where the browser goes (the same page
    /// again, with its message, or the client); `Ok(Err(..))`: an answer for the client.
    pub async fn step(
        &self,
        request: StepRequest<'_>,
        input: StepInput,
        now: i64,
    ) -> Result<Next, FlowError> {
        let id = request.interaction_id;
        // The code's state is read with the login, in one round trip: a phone or a resend
        // reads the challenge's record (its cooldown), a code also counts its attempt (only
        // for the browser that holds the login: its key names the binding).
        let (record, attempts, attempts_ttl) = Otp::keys(id);
        let also = match &input {
            StepInput::Phone(_) | StepInput::Resend => AlsoRead::Value(&record),
            StepInput::Code(_) => AlsoRead::Counted {
                key: &record,
                counter: &attempts,
                ttl: attempts_ttl,
            },
            StepInput::ChangePhone | StepInput::Continue => AlsoRead::Nothing,
        };
        let read = self
            .resume_live_with(id, request.binding_secret, also, now)
            .await?;
        let (login, version, readout) = match read {
            Ok(read) => read,
            Err(UnknownLogin) => return Err(FlowError::UnknownLogin),
        };
        let (redirect_uri, state) = (
            login.pending.request.redirect_uri.clone(),
            login.pending.request.state.clone(),
        );
        // An answer for the client (say `login_required`) goes back to it, not to a dead end.
        Ok(
            match self
                .apply(request, login, version, input, readout, now)
                .await?
            {
                Ok(next) => next,
                Err(error) => self.to_client(&redirect_uri, state.as_deref(), Err(error)),
            },
        )
    }

    /// The suspended login, unless it is older than the longest a login may take.
    async fn resume_live(
        &self,
        id: &str,
        binding_secret: Option<&str>,
        now: i64,
    ) -> anyhow::Result<Result<(SuspendedLogin, Version), UnknownLogin>> {
        Ok(self
            .resume_live_with(id, binding_secret, AlsoRead::Nothing, now)
            .await?
            .map(|(login, version, _)| (login, version)))
    }

    /// [`LoginFlow::resume_live`], with what `also` reads in the same round trip.
    async fn resume_live_with(
        &self,
        id: &str,
        binding_secret: Option<&str>,
        also: AlsoRead<'_>,
        now: i64,
    ) -> anyhow::Result<Result<(SuspendedLogin, Version, AlsoReadout), UnknownLogin>> {
        Ok(
            match self.pending.resume_with(id, binding_secret, also).await? {
                Ok((login, ..)) if now - login.pending.created_at > MAX_LOGIN_SECS => {
                    Err(UnknownLogin)
                }
                read => read,
            },
        )
    }

    async fn apply(
        &self,
        request: StepRequest<'_>,
        mut login: SuspendedLogin,
        mut version: Version,
        input: StepInput,
        readout: AlsoReadout,
        now: i64,
    ) -> Result<Result<Next, OAuthError>, FlowError> {
        let id = request.interaction_id;
        let Some(secret) = request.binding_secret else {
            return Err(FlowError::UnknownLogin);
        };
        let csrf_ok = request
            .csrf
            .is_some_and(|c| ct_eq(c.as_bytes(), login.steps.csrf.as_bytes()));
        if !csrf_ok {
            return Err(FlowError::BadRequest(OAuthError::invalid_request(
                "the form is out of date; reload the page",
            )));
        }
        login.steps.message = None;
        let again = Next::Interaction(Interaction {
            id: id.to_string(),
            binding: None,
            view: None,
        });
        let stage = login.steps.stage.clone();
        let before = std::mem::discriminant(&stage);
        let (prior, counted) = match readout {
            AlsoReadout::Value(record) => (Some(Prior(record)), None),
            AlsoReadout::Counted(counted) => (None, Some(counted)),
            AlsoReadout::Nothing => (None, None),
        };
        let to_send = match (&stage, &input) {
            (Stage::AskPhone | Stage::EnterCode { .. }, StepInput::Phone(text)) => {
                match phone::normalise(text) {
                    Ok(phone) => Some(phone),
                    Err(_) => {
                        login.steps.message = Some(Message::InvalidPhone);
                        None
                    }
                }
            }
            (Stage::EnterCode { phone, .. }, StepInput::Resend) => Phone::texted(phone),
            _ => None,
        };
        if let Some(phone) = to_send {
            let at = (id, secret, &version);
            match self
                .send_code(&mut login, at, &phone, request.client, prior, now)
                .await?
            {
                // Saved with the code: the code page, or after a resend the same page again.
                Sending::Saved => {
                    if std::mem::discriminant(&login.steps.stage) == before {
                        return Ok(Ok(again));
                    }
                    return Ok(Ok(Next::Interaction(Interaction {
                        id: id.to_string(),
                        binding: None,
                        view: Some(view(id, &login, now)),
                    })));
                }
                // Another request saved the login meanwhile: its outcome stands.
                Sending::Superseded => return Ok(Ok(again)),
                // The login moved on with the code, then the SMS failed: it goes back, with the
                // message, over the version the code's write made.
                Sending::NotDelivered(saved) => version = saved,
                Sending::Refused => {}
            }
        }
        match (stage, input) {
            (Stage::AskPhone | Stage::EnterCode { .. }, StepInput::Phone(_))
            | (Stage::EnterCode { .. }, StepInput::Resend) => {}
            (Stage::EnterCode { .. }, StepInput::ChangePhone) => {
                login.steps.stage = Stage::AskPhone;
            }
            (Stage::EnterCode { phone, .. }, StepInput::Code(code)) => {
                let Some(proven) = Phone::texted(&phone) else {
                    login.steps.stage = Stage::AskPhone;
                    self.pending.save(id, secret, &login, &version).await?;
                    return Ok(Ok(again));
                };
                // The login moves to PhoneProven in the same atomic step as the code's use,
                // before the account is written: a failure from here on is retried without a
                // new code, and no crash leaves the code used with the login not told.
                let mut proving = login.clone();
                proving.steps.stage = Stage::PhoneProven {
                    phone: proven.e164().to_string(),
                };
                let save = self.pending.prepare_save(id, secret, &proving)?;
                let also = Some(save.swap(&version));
                let verified = match counted {
                    // Read and counted with the login.
                    Some(counted) => {
                        self.otp
                            .verify_counted(id, &proven, code.trim(), now, also, counted)
                            .await
                    }
                    None => {
                        self.otp
                            .verify_with(id, &proven, code.trim(), now, also)
                            .await
                    }
                };
                match verified {
                    // A request that saved meanwhile (a resend) wins, and this one shows where
                    // the login now stands; the code was not used.
                    Ok(Verified::Superseded) => return Ok(Ok(again)),
                    Ok(Verified::Used) => {
                        let version = save.into_version();
                        let login = proving;
                        return self
                            .with_proven_phone(
                                login,
                                (id, secret, &version),
                                &proven,
                                request.sso_secret,
                                now,
                            )
                            .await;
                    }
                    Err(OtpFailure::Wrong { attempts_left }) => {
                        login.steps.message = Some(Message::WrongCode { attempts_left })
                    }
                    Err(OtpFailure::Expired) => login.steps.message = Some(Message::CodeExpired),
                    Err(OtpFailure::Exhausted) => {
                        let notice = self
                            .provider
                            .accounts
                            .otp_exhausted(&login.identity, &proven, now)
                            .await?;
                        login.steps.stage = Stage::Exhausted { notice };
                    }
                    Err(OtpFailure::Unavailable(e)) => return Err(FlowError::Unavailable(e)),
                }
            }
            (Stage::PhoneProven { phone }, _) => {
                let proven = Phone::texted(&phone)
                    .ok_or_else(|| anyhow::anyhow!("a stored proven phone no longer parses"))?;
                return self
                    .with_proven_phone(
                        login,
                        (id, secret, &version),
                        &proven,
                        request.sso_secret,
                        now,
                    )
                    .await;
            }
            (
                Stage::Failed {
                    account_id: Some(account_id),
                    ..
                },
                StepInput::Continue,
            ) => {
                let Some(account) = self.provider.accounts.find(&account_id).await? else {
                    return Err(FlowError::UnknownLogin);
                };
                // Only the request that ends the interaction issues the code: a second tap that
                // arrives meanwhile finds it ended and starts no second session.
                if !self.pending.end_interaction(id, secret).await? {
                    return Err(FlowError::UnknownLogin);
                }
                return self
                    .start_session(
                        &login.pending,
                        &login.identity,
                        login.auth_time,
                        &account,
                        request.sso_secret,
                        now,
                    )
                    .await;
            }
            (
                Stage::Failed {
                    account_id: None, ..
                },
                StepInput::Continue,
            ) => {
                login.steps.stage = Stage::AskPhone;
            }
            // Anything else (a stale form, a double submit) shows the current page again.
            _ => {}
        }
        // Lost to a request that saved or ended the login meanwhile: its outcome stands, and the
        // redirect shows it.
        let saved = self.pending.save(id, secret, &login, &version).await?;
        // A step that moved the login on (the code sent, the phone asked for) answers with its
        // page at once: one request fewer than a redirect. One that stays (a wrong code, a
        // message) redirects, so that reloading the page never sends the guess again.
        if saved.is_some() && std::mem::discriminant(&login.steps.stage) != before {
            return Ok(Ok(Next::Interaction(Interaction {
                id: id.to_string(),
                binding: None,
                view: Some(view(id, &login, now)),
            })));
        }
        Ok(Ok(again))
    }

    /// Sends a code, the login moving to the code page in the same atomic step as the code's
    /// record (one round trip); or leaves a message on `login` saying why not, to be saved.
    async fn send_code(
        &self,
        login: &mut SuspendedLogin,
        (challenge, secret, version): (&str, &str, &Version),
        phone: &Phone,
        client: Option<ClientKey>,
        prior: Option<Prior>,
        now: i64,
    ) -> anyhow::Result<Sending> {
        let account_key = format!(
            "{}|{}",
            login.identity.upstream_iss, login.identity.upstream_sub
        );
        let mut moved = login.clone();
        moved.steps.stage = Stage::EnterCode {
            phone: phone.e164().to_string(),
            resend_at: now + self.otp.resend_cooldown_secs(),
        };
        moved.steps.message = Some(Message::Sent);
        let save = self.pending.prepare_save(challenge, secret, &moved)?;
        let refused = match self
            .otp
            .send_with(
                challenge,
                phone,
                &account_key,
                client,
                now,
                prior,
                Some(save.swap(version)),
            )
            .await
        {
            Ok(_) => {
                *login = moved;
                return Ok(Sending::Saved);
            }
            Err(SendError::Superseded) => return Ok(Sending::Superseded),
            Err(SendError::NotDelivered(e)) => {
                tracing::warn!(error = format!("{e:#}"), "one-time code not sent");
                login.steps.message = Some(Message::SmsUnavailable);
                return Ok(Sending::NotDelivered(save.into_version()));
            }
            Err(SendError::Refused(refused)) => refused,
        };
        match refused {
            OtpRefused::TooSoon { retry_after } => {
                login.steps.message = Some(Message::TooSoon {
                    seconds: retry_after,
                })
            }
            OtpRefused::Limited { retry_after } => {
                login.steps.message = Some(Message::Limited {
                    seconds: retry_after,
                })
            }
            OtpRefused::NotMobile => login.steps.message = Some(Message::NotMobile),
            OtpRefused::Exhausted => {
                let notice = self
                    .provider
                    .accounts
                    .otp_exhausted(&login.identity, phone, now)
                    .await?;
                login.steps.stage = Stage::Exhausted { notice };
            }
            OtpRefused::Unavailable(e) => {
                tracing::warn!(error = format!("{e:#}"), "one-time code not sent");
                login.steps.message = Some(Message::SmsUnavailable);
            }
        }
        Ok(Sending::Refused)
    }

    /// The phone is proven: link or create, then finish (or the failure page first).
    async fn with_proven_phone(
        &self,
        mut login: SuspendedLogin,
        (id, secret, version): (&str, &str, &Version),
        phone: &Phone,
        previous_secret: Option<&str>,
        now: i64,
    ) -> Result<Result<Next, OAuthError>, FlowError> {
        let outcome = self
            .provider
            .accounts
            .complete_with_phone(
                &login.identity,
                self.account_policy(&login.pending),
                phone,
                login.steps.unlinked,
                now,
            )
            .await?;
        match outcome {
            LoginOutcome::Authenticated {
                account,
                notice: Some(notice),
                ..
            } => {
                login.steps.stage = Stage::Failed {
                    notice,
                    account_id: Some(account.id),
                };
                self.pending.save(id, secret, &login, version).await?;
                Ok(Ok(Next::Interaction(Interaction {
                    id: id.to_string(),
                    binding: None,
                    view: None,
                })))
            }
            LoginOutcome::Authenticated { account, .. } => {
                // Only the request that ends the interaction issues the code: a second tap that
                // arrives meanwhile finds it ended and starts no second session.
                if !self.pending.end_interaction(id, secret).await? {
                    return Err(FlowError::UnknownLogin);
                }
                self.start_session(
                    &login.pending,
                    &login.identity,
                    login.auth_time,
                    &account,
                    previous_secret,
                    now,
                )
                .await
            }
            LoginOutcome::Refused => {
                if !self.pending.end_interaction(id, secret).await? {
                    return Err(FlowError::UnknownLogin);
                }
                Ok(Err(refused()))
            }
            LoginOutcome::NeedsPhone { .. } => Err(anyhow::anyhow!(
                "account resolution asked for a phone after one was proven"
            )
            .into()),
        }
    }
}

/// What became of a send ([`LoginFlow::send_code`]).
enum Sending {
    /// The code is out and the login saved at the code page.
    Saved,
    /// Another request saved the login first: nothing was sent or saved.
    Superseded,
    /// The code and the login were saved, the SMS failed: the login's version after that
    /// write, for the save that takes it back with the message.
    NotDelivered(Version),
    /// Refused before anything was written; the message is on the login, to be saved.
    Refused,
}

/// The page of a suspended login.
fn view(interaction_id: &str, login: &SuspendedLogin, now: i64) -> StepView {
    let masked = |phone: &str| Phone::texted(phone).map(|p| p.masked()).unwrap_or_default();
    let step = match &login.steps.stage {
        Stage::AskPhone => InteractionStep::Phone,
        Stage::EnterCode { phone, resend_at } => InteractionStep::Code {
            phone: masked(phone),
            resend_in: (resend_at - now).max(0),
        },
        Stage::PhoneProven { phone } => InteractionStep::Code {
            phone: masked(phone),
            resend_in: 0,
        },
        Stage::Failed { notice, .. } => InteractionStep::Failure {
            reason: notice.reason,
            fields: notice.fields.clone(),
            can_continue: true,
        },
        Stage::Exhausted { notice } => InteractionStep::Failure {
            reason: notice.reason,
            fields: notice.fields.clone(),
            can_continue: false,
        },
    };
    let failure_ref = match &login.steps.stage {
        Stage::Failed { notice, .. } | Stage::Exhausted { notice } => {
            let id = &notice.failure_id;
            Some(id[id.len().saturating_sub(8)..].to_uppercase())
        }
        _ => None,
    };
    StepView {
        failure_ref,
        interaction_id: interaction_id.to_string(),
        csrf: login.steps.csrf.clone(),
        english: login.pending.request.english(),
        step,
        message: login.steps.message,
    }
}

/// The answer for the client when the upstream's account policy allows no account.
fn refused() -> OAuthError {
    OAuthError::new(
        crate::oidc::error::ErrorCode::AccessDenied,
        "no account may be used through this identity provider for this person",
    )
}
