//! Why one operation did not count as a success, classified so that errors can be tallied by kind.

use std::fmt;

/// A failed operation. `Display` gives the tally key (step and status or kind); `detail` keeps a sample of
/// what the server said so the first occurrence of each kind can be shown.
#[derive(Debug)]
pub struct Failure {
    pub step: String,
    pub kind: FailureKind,
    pub detail: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The server answered with a status the step does not accept.
    Status(u16),
    Timeout,
    Connect,
    /// Any other transport error (reset, protocol error, body read failure).
    Transport,
    /// A status the step accepts, but a body or header without what it must carry.
    BadResponse(&'static str),
}

/// The longest server text kept as a sample per error kind.
const DETAIL_MAX: usize = 300;

impl Failure {
    pub fn status(step: impl Into<String>, status: u16, body: &str) -> Self {
        Self::new(step, FailureKind::Status(status), body)
    }

    pub fn bad(step: impl Into<String>, what: &'static str, detail: &str) -> Self {
        Self::new(step, FailureKind::BadResponse(what), detail)
    }

    pub fn transport(step: impl Into<String>, err: &reqwest::Error) -> Self {
        let kind = if err.is_timeout() {
            FailureKind::Timeout
        } else if err.is_connect() {
            FailureKind::Connect
        } else {
            FailureKind::Transport
        };
        Self::new(step, kind, &error_chain(err))
    }

    fn new(step: impl Into<String>, kind: FailureKind, detail: &str) -> Self {
        let mut detail: String = detail.chars().take(DETAIL_MAX).collect();
        detail.retain(|c| c != '\n' && c != '\r');
        Self {
            step: step.into(),
            kind,
            detail,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FailureKind::Status(s) => write!(f, "{}: HTTP {s}", self.step),
            FailureKind::Timeout => write!(f, "{}: timeout", self.step),
            FailureKind::Connect => write!(f, "{}: connect error", self.step),
            FailureKind::Transport => write!(f, "{}: transport error", self.step),
            FailureKind::BadResponse(what) => write!(f, "{}: {what}", self.step),
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_step_and_kind() {
        assert_eq!(
            Failure::status("token", 400, "{}").to_string(),
            "token: HTTP 400"
        );
        let f = Failure::bad("token", "no id_token", &"x\n".repeat(400));
        assert_eq!(f.to_string(), "token: no id_token");
        assert_eq!(f.detail.len(), DETAIL_MAX / 2);
    }
}
