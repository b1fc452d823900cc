//! Upstream identity providers. An upstream is a configured profile (`profile`), not code:
//! endpoints, credentials, which of nonce/PKCE/ID token it supports, and the claim names it
//! speaks. `upstream` talks to it with the `openidconnect` crate, `pending` remembers logins in
//! flight, `claims` turns what it says into an `UpstreamIdentity`; `upstreams` holds the
//! configured list, each upstream with its own client, breaker and caches.

pub mod breaker;
pub mod claims;
pub mod envelope;
pub mod jwk;
pub mod pending;
pub mod profile;
pub mod upstream;
pub mod upstreams;
