//! Claim sets of the tokens the broker issues.

use serde::{Deserialize, Serialize};

use crate::scope::Scope;

/// RFC 9068 access token claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Scope::is_empty")]
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The grant this token belongs to: revoking the grant revokes the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// The client's own legacy account ids of this person (clients with a `legacy_source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_accounts: Option<Vec<String>>,
    /// RFC 9449 §6.1: the token is bound to the DPoP key with this thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The approved roles relevant to the client (scope `roles`, `crate::roles::claims`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<crate::roles::claims::RoleClaim>>,
}

/// The confirmation claim of a sender-constrained token (RFC 7800 §3.1, RFC 9449 §6.1).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    pub jkt: String,
}

impl AccessClaims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.contains(scope)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, value: &str) -> bool {
        match self {
            Audience::One(a) => a == value,
            Audience::Many(list) => list.iter().any(|a| a == value),
        }
    }
}

/// OpenID Connect ID token claims (Core §2) plus the profile claims released by scope.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub acr: String,
    pub amr: Vec<String>,
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(flatten)]
    pub profile: serde_json::Map<String, serde_json::Value>,
}
