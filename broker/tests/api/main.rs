//! End-to-end tests through HTTP. Every scenario runs on both storage pairs: SQLite + in-memory
//! sessions always, PostgreSQL + Redis when BROKER_TEST_DATABASE_URL and BROKER_TEST_REDIS_URL
//! are set (CI sets them, and a missing pair fails there instead of being skipped).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod admin;
mod authorize;
mod backchannel;
mod cli;
mod client_changes;
mod devices;
mod directory;
mod dpop;
mod federation;
mod hardening;
mod hostile;
mod keys;
mod kill_delivery;
mod legacy_import;
mod multi_instance;
mod operators;
mod otp;
mod par;
mod revocation_set;
mod roles;
mod rp;
mod security_events;
mod standardisation;
mod tls;
mod tokens;
mod upstreams;
