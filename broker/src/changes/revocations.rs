//! The revocation set: grants revoked and access tokens denied that can still matter, so that
//! introspection and userinfo decide without a round trip. A grant matters while an access
//! token issued before its revocation may be unexpired (its revocation time plus the
//! access-token lifetime and a margin); a denied token until its own `exp`. Memory is bounded
//! by those live revocations: expired entries are pruned.
//!
//! The set is only ever added to between prunes, and answers `Unknown` while it is not vouched
//! for (its listener is down or has not caught up): the caller then asks SQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// One revocation, as SQL records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoked {
    Grant { id: String, revoked_at: i64 },
    Token { jti_hash: String, expires_at: i64 },
}

impl Revoked {
    /// `g {revoked_at} {grant id}` or `a {expires_at} {jti hash}`.
    pub fn parse(payload: &str) -> Option<Revoked> {
        let mut parts = payload.splitn(3, ' ');
        let kind = parts.next()?;
        let at: i64 = parts.next()?.parse().ok()?;
        let key = parts.next().filter(|k| !k.is_empty())?.to_string();
        match kind {
            "g" => Some(Revoked::Grant {
                id: key,
                revoked_at: at,
            }),
            "a" => Some(Revoked::Token {
                jti_hash: key,
                expires_at: at,
            }),
            _ => None,
        }
    }
}

/// What the set says of an access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Live,
    Revoked,
    /// The set is not vouched for: ask SQL.
    Unknown,
}

#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

struct Inner {
    /// Grant id → revocation time.
    grants: RwLock<HashMap<String, i64>>,
    /// SHA-256 of the `jti` → the token's expiry.
    tokens: RwLock<HashMap<String, i64>>,
    vouched: AtomicBool,
}

impl Revocations {
    pub fn new(vouched: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                grants: RwLock::new(HashMap::new()),
                tokens: RwLock::new(HashMap::new()),
                vouched: AtomicBool::new(vouched),
            }),
        }
    }

    pub fn apply(&self, revoked: Revoked) {
        match revoked {
            Revoked::Grant { id, revoked_at } => {
                if let Ok(mut grants) = self.inner.grants.write() {
                    let at = grants.entry(id).or_insert(revoked_at);
                    *at = (*at).max(revoked_at);
                }
            }
            Revoked::Token {
                jti_hash,
                expires_at,
            } => {
                if let Ok(mut tokens) = self.inner.tokens.write() {
                    tokens.insert(jti_hash, expires_at);
                }
            }
        }
    }

    pub fn apply_all(&self, revoked: impl IntoIterator<Item = Revoked>) {
        for r in revoked {
            self.apply(r);
        }
    }

    /// Whether the token (by its `jti` hash) or its grant is revoked. Revoked wins over
    /// `Unknown`: what the set holds was committed in SQL.
    pub fn standing(&self, jti_hash: &str, grant_id: Option<&str>) -> Standing {
        let denied = self
            .inner
            .tokens
            .read()
            .map(|t| t.contains_key(jti_hash))
            .unwrap_or(false);
        let grant_revoked = grant_id.is_some_and(|g| {
            self.inner
                .grants
                .read()
                .map(|grants| grants.contains_key(g))
                .unwrap_or(false)
        });
        if denied || grant_revoked {
            Standing::Revoked
        } else if self.inner.vouched.load(Ordering::Acquire) {
            Standing::Live
        } else {
            Standing::Unknown
        }
    }

    pub fn set_vouched(&self, vouched: bool) {
        self.inner.vouched.store(vouched, Ordering::Release);
    }

    pub fn vouched(&self) -> bool {
        self.inner.vouched.load(Ordering::Acquire)
    }

    /// Drops denied tokens that have expired and grants revoked before `now - grant_window`.
    pub fn prune(&self, now: i64, grant_window: i64) {
        if let Ok(mut tokens) = self.inner.tokens.write() {
            tokens.retain(|_, exp| *exp > now);
        }
        if let Ok(mut grants) = self.inner.grants.write() {
            grants.retain(|_, at| *at >= now - grant_window);
        }
    }

    /// How many revocations are held (grants, tokens).
    pub fn len(&self) -> (usize, usize) {
        let grants = self.inner.grants.read().map(|g| g.len()).unwrap_or(0);
        let tokens = self.inner.tokens.read().map(|t| t.len()).unwrap_or(0);
        (grants, tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_parse() {
        assert_eq!(
            Revoked::parse("g 1700000000 0190-ab"),
            Some(Revoked::Grant {
                id: "0190-ab".into(),
                revoked_at: 1_700_000_000
            })
        );
        assert_eq!(
            Revoked::parse("a 1700000300 abc_-"),
            Some(Revoked::Token {
                jti_hash: "abc_-".into(),
                expires_at: 1_700_000_300
            })
        );
        for bad in ["", "g", "g x id", "g 1 ", "x 1 id"] {
            assert_eq!(Revoked::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn unvouched_set_answers_unknown_but_never_hides_a_revocation() {
        let set = Revocations::new(false);
        assert_eq!(set.standing("j", Some("g")), Standing::Unknown);
        set.apply(Revoked::Grant {
            id: "g".into(),
            revoked_at: 100,
        });
        assert_eq!(set.standing("j", Some("g")), Standing::Revoked);
        set.set_vouched(true);
        assert_eq!(set.standing("j", Some("other")), Standing::Live);
        assert_eq!(set.standing("j", None), Standing::Live);
    }

    #[test]
    fn prune_keeps_what_can_still_matter() {
        let set = Revocations::new(true);
        set.apply(Revoked::Grant {
            id: "old".into(),
            revoked_at: 100,
        });
        set.apply(Revoked::Grant {
            id: "recent".into(),
            revoked_at: 900,
        });
        set.apply(Revoked::Token {
            jti_hash: "gone".into(),
            expires_at: 1000,
        });
        set.apply(Revoked::Token {
            jti_hash: "live".into(),
            expires_at: 1001,
        });
        set.prune(1000, 600);
        assert_eq!(set.len(), (1, 1));
        assert_eq!(set.standing("live", None), Standing::Revoked);
        assert_eq!(set.standing("x", Some("recent")), Standing::Revoked);
        assert_eq!(set.standing("x", Some("old")), Standing::Live);
    }
}
