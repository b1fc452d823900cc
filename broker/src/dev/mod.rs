//! `broker dev`: the embedded default (SQLite file, in-process sessions, file key store) with
//! the mock VNeID and a demo relying party, all on loopback — nothing to install.
//!
//! The servers come from the devkit crate and are built in only with the `dev` cargo feature
//! (on by default, off in the production image); without it both commands say so and fail.

#[cfg(feature = "dev")]
mod servers;

use std::path::PathBuf;

use clap::Args;

#[cfg(feature = "dev")]
pub use servers::{run, run_mock};

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Where everything of this dev instance lives: the SQLite database, the master key and the
    /// encrypted key files (`keys/`), so that two data directories never share a key directory.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    #[arg(long, default_value_t = 8081)]
    pub mock_port: u16,
    #[arg(long, default_value_t = 8082)]
    pub demo_port: u16,
}

#[derive(Args, Debug)]
pub struct MockArgs {
    #[arg(long, default_value_t = 8081)]
    pub port: u16,
    #[arg(long, default_value = "broker")]
    pub client_id: String,
    #[arg(
        long,
        env = "MOCK_VNEID_CLIENT_SECRET",
        required_unless_present = "emit_legacy"
    )]
    pub client_secret: Option<String>,
    #[arg(
        long = "redirect-uri",
        default_value = "http://127.0.0.1:8080/callback/vneid"
    )]
    pub redirect_uris: Vec<String>,
    /// Print the legacy-account CSV that agrees with the synthetic citizens `gen:FROM` up to
    /// `gen:TO` (excluded) and exit, instead of serving: `id:FROM-TO` (records with the ID
    /// number: link at the first login) or `phone:FROM-TO` (no ID number: link by the proven
    /// phone). For benchmarks; import it with `broker import legacy-accounts`.
    #[arg(long, value_name = "KIND:FROM-TO")]
    pub emit_legacy: Option<String>,
    /// Which VNeID integration to play: `a` (the ministry's SSO: discovery, an ID token with
    /// every claim), `b` (the national portal: client_secret_post, acr_values LoA1/LoA2, an ID
    /// token with `sub` and `acr`, the identity from userinfo) or `c` (direct VNeID: the
    /// identity from userinfo only, answers sealed with `--seal-to`). See docs/vneid.md.
    #[arg(long, default_value = "a")]
    pub variant: String,
    /// Variant C: seal the token and userinfo answers (`{"data", "key"}`) to this RSA public
    /// key of the relying party (X.509 SubjectPublicKeyInfo, DER or PEM).
    #[arg(long, value_name = "FILE")]
    pub seal_to: Option<PathBuf>,
    /// The AES mode of the sealed answers: `ecb`, or `cbc` (the IV in the first 16 bytes).
    #[arg(long, default_value = "ecb", value_parser = ["ecb", "cbc"])]
    pub seal_mode: String,
    /// One token call in N hangs for a minute, the others answer at once (0: none): the
    /// benchmark of logins while VNeID sometimes does not answer.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub hang_one_in: u64,
}

/// Whether `broker dev` and `broker mock-vneid` are in this binary; an error naming the
/// command when they are not.
pub fn ensure_built_in(command: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg!(feature = "dev"),
        "`broker {command}` is not built into this binary: it was built without the `dev` \
         feature (as the production image is); use a development build, e.g. \
         `cargo run -p broker -- {command}`"
    );
    Ok(())
}

#[cfg(not(feature = "dev"))]
pub async fn run(_args: DevArgs) -> anyhow::Result<()> {
    ensure_built_in("dev")
}

#[cfg(not(feature = "dev"))]
pub async fn run_mock(_args: MockArgs) -> anyhow::Result<()> {
    ensure_built_in("mock-vneid")
}
