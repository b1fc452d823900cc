//! The devkit's one integration-test binary: the mock VNeID over HTTP, and the demo RP against it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authorize;
mod demo_rp;
mod support;
mod tamper;
mod vneid;
