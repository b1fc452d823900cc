//! Dev-only servers that surround the broker in development and tests: a mock of the national
//! VNeID upstream ([`mock_vneid`]) and a tiny relying party that logs in through the broker
//! ([`demo_rp`]). Nothing here is meant for production: keys live in memory, state is lost on
//! restart and the mock signs whatever citizen a tester picks.

pub mod demo_rp;
pub mod mock_vneid;

mod params;
mod util;

/// Installs aws-lc-rs as the process-wide rustls crypto provider.
///
/// reqwest is built with `rustls-tls-webpki-roots-no-provider` (to keep `ring` out of the build)
/// and panics when a client is built without a provider installed, even for plain-http use.
/// Calling this more than once, or after someone else installed a provider, is harmless.
pub fn install_rustls_provider() {
    // An Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
