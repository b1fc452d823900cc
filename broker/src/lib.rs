//! The identity broker: an OpenID Connect provider for the province's apps that logs people in
//! through VNeID. `startup` builds the whole application; everything else is a domain module.

pub mod abuse;
pub mod accounts;
pub mod affinity;
pub mod audit;
pub mod changes;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod dev;
pub mod devices;
pub mod directory;
pub mod dispatch;
pub mod events;
pub mod faults;
pub mod federation;
pub mod http;
pub mod jobs;
pub mod login;
pub mod oidc;
pub mod operators;
pub mod otp;
pub mod roles;
pub mod scope;
pub mod secret;
pub mod session_end;
pub mod sessions;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod transaction;
