//! `broker import ...`: the terminal side of the imports (progress bar, report, exit status).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::accounts::import::{Format, Importer, Observer, Rejection, Summary};
use crate::accounts::legacy::LegacySealer;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::startup::{connect_db, master_key};

/// The exit status of an import that refused some rows and loaded the others (1 is an import
/// that failed as a whole, 2 a wrong command line).
pub const ROWS_REJECTED: u8 = 3;

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Load the accounts of an older app (Hue-S, dvc-hue, ...): CSV with the header
    /// source,legacy_id,full_name,birthdate,phone,personal_id,email, or JSON Lines with these
    /// keys. Re-running a file changes nothing. Exit status 0 when every row loaded, 3 when some
    /// rows were rejected (each is reported with its line), 1 when the import failed.
    LegacyAccounts {
        file: PathBuf,
        /// The file's format; by default its extension (.csv, .jsonl or .ndjson).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
    },
    /// Load the agency tree: CSV with the header code,name,parent_code[,level]. Units are
    /// inserted or updated, never deleted; a unit whose parent is unknown, or on a cycle, is
    /// refused with its descendants. Exit status as for legacy-accounts.
    OrgUnits { file: PathBuf },
    /// Load the staff roster: CSV with the header
    /// personal_id,full_name,birthdate,gender,category,org_code,position (import org-units
    /// first). One person may hold several posts. Exit status as for legacy-accounts.
    Staff {
        file: PathBuf,
        /// The file is the whole roster: remove the posts of earlier imports it lacks.
        #[arg(long)]
        prune: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    Csv,
    Jsonl,
}

pub async fn run(command: ImportCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let (file, format) = match command {
        ImportCommand::LegacyAccounts { file, format } => (file, format),
        ImportCommand::OrgUnits { file } => {
            let db = connect_db(settings).await?;
            let report = crate::directory::import::org_units(&db, &file, SystemClock.now()).await?;
            return Ok(directory_report(&report));
        }
        ImportCommand::Staff { file, prune } => {
            let db = connect_db(settings).await?;
            let sealer = crate::directory::import::PostSealer::new(master_key(settings)?);
            let report =
                crate::directory::import::staff(&db, &sealer, &file, prune, SystemClock.now())
                    .await?;
            return Ok(directory_report(&report));
        }
    };
    let format = match format {
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Jsonl) => Format::Jsonl,
        None => Format::of_path(&file)
            .context("cannot tell the format from the file name: give --format csv or jsonl")?,
    };
    let size = std::fs::metadata(&file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let db = connect_db(settings).await?;
    let importer = Importer::new(Arc::new(db), LegacySealer::new(master_key(settings)?));
    let mut report = Report::new(size);
    let summary = importer
        .run(&file, format, SystemClock.now(), &mut report)
        .await;
    report.bar.finish_and_clear();
    let summary = summary?;
    println!(
        "read {}, inserted {}, updated {}, unchanged {}, rejected {}",
        summary.read, summary.inserted, summary.updated, summary.unchanged, summary.rejected
    );
    Ok(if summary.rejected > 0 {
        ExitCode::from(ROWS_REJECTED)
    } else {
        ExitCode::SUCCESS
    })
}

/// A directory import's rejections and summary on standard output, and its exit status.
fn directory_report(report: &crate::directory::import::Report) -> ExitCode {
    for rejection in &report.rejected {
        println!("line {}: {}", rejection.line, rejection.reason);
    }
    let w = &report.written;
    println!(
        "read {}, inserted {}, updated {}, unchanged {}, removed {}, rejected {}",
        report.read,
        w.inserted,
        w.updated,
        w.unchanged,
        w.removed,
        report.rejected.len()
    );
    if report.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(ROWS_REJECTED)
    }
}

/// Rejections on standard output as they come; a progress bar on standard error when it is a
/// terminal, nothing otherwise.
struct Report {
    bar: ProgressBar,
}

impl Report {
    fn new(size: u64) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(size);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {percent:>3}% {bytes}/{total_bytes} {msg} ({elapsed}, {eta} left)",
            ) {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Self { bar }
    }
}

impl Observer for Report {
    fn rejected(&mut self, rejection: &Rejection) {
        self.bar.suspend(|| {
            println!("line {}: {}", rejection.line, rejection.reason);
        });
    }

    fn progress(&mut self, offset: u64, summary: &Summary) {
        self.bar.set_position(offset);
        self.bar.set_message(format!(
            "{} rows, {} rejected",
            summary.read, summary.rejected
        ));
    }
}
