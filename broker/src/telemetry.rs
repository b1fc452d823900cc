//! Logging set-up. PII never reaches a log line unmasked: see `accounts::personal_id::mask`.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env("BROKER_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,actix_server=warn"));
    // Colours only on a terminal: a log file or journald gets plain text, which grep and the
    // load driver's reading of the dev SMS gateway's lines can match field by field.
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests start many apps in one process) is harmless: keep the first.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
