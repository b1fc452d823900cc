//! `broker import legacy-accounts`: loads an export of an older app into `legacy_accounts`.
//! Every row is validated; a bad row is reported with its line and reason and the good rows
//! still load. A re-import of the same file changes nothing (each row's keyed digest is
//! compared), a changed row updates its record, and links are never touched.
//!
//! Reading, validating and sealing run on a blocking thread while the previous batch is being
//! written, so parsing and the database overlap; each batch costs two statements.

pub mod read;
pub mod row;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::legacy::{LegacySealer, LegacyStore, SealedLegacyRecord};
pub use read::Format;
pub use row::RowError;

/// Rows per batch: 12 columns a row stays far below both databases' limit on parameters.
pub const BATCH_ROWS: usize = 1000;

/// The province's offset from UTC: a birth date "in the future" is judged by the local date.
const LOCAL_OFFSET: time::UtcOffset = time::macros::offset!(+7);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub reason: RowError,
}

/// Hears about an import as it goes (the terminal's progress bar and report).
pub trait Observer: Send {
    fn rejected(&mut self, rejection: &Rejection);
    /// The file has been read up to `offset` bytes.
    fn progress(&mut self, offset: u64, summary: &Summary);
}

/// What the reading thread hands to the writer.
struct Batch {
    records: Vec<SealedLegacyRecord>,
    rejections: Vec<Rejection>,
    read: u64,
    offset: u64,
}

pub struct Importer {
    pub store: Arc<dyn LegacyStore>,
    pub sealer: LegacySealer,
    pub batch_rows: usize,
}

impl Importer {
    pub fn new(store: Arc<dyn LegacyStore>, sealer: LegacySealer) -> Self {
        Self {
            store,
            sealer,
            batch_rows: BATCH_ROWS,
        }
    }

    /// Imports the file; `now` is the import time (Unix seconds).
    pub async fn run(
        &self,
        path: &Path,
        format: Format,
        now: i64,
        observer: &mut dyn Observer,
    ) -> anyhow::Result<Summary> {
        let today = time::OffsetDateTime::from_unix_timestamp(now)
            .context("the clock is out of range")?
            .to_offset(LOCAL_OFFSET)
            .date();
        let rows = read::open(path, format)?;
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(4);
        let sealer = self.sealer.clone();
        let batch_rows = self.batch_rows.max(1);
        let reading = tokio::task::spawn_blocking(move || {
            read_batches(rows, &sealer, today, now, batch_rows, &sender)
        });
        let mut summary = Summary::default();
        while let Some(batch) = receiver.recv().await {
            summary.read += batch.read;
            for rejection in &batch.rejections {
                observer.rejected(rejection);
            }
            summary.rejected += batch.rejections.len() as u64;
            let outcome = self.store.import_batch(&batch.records).await?;
            summary.inserted += outcome.inserted;
            summary.updated += outcome.updated;
            summary.unchanged += outcome.unchanged;
            observer.progress(batch.offset, &summary);
        }
        reading.await.context("the reading thread failed")??;
        Ok(summary)
    }
}

/// Reads, validates and seals rows into batches until the file ends or the writer stops.
fn read_batches(
    rows: Box<dyn read::Rows>,
    sealer: &LegacySealer,
    today: time::Date,
    now: i64,
    batch_rows: usize,
    sender: &tokio::sync::mpsc::Sender<Batch>,
) -> anyhow::Result<()> {
    // The line that loaded each key: a later line with the same key is refused.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let new_batch = || Batch {
        records: Vec::with_capacity(batch_rows),
        rejections: Vec::new(),
        read: 0,
        offset: 0,
    };
    let mut batch = new_batch();
    for raw in rows {
        let raw = raw?;
        batch.read += 1;
        batch.offset = raw.offset;
        let record = raw
            .fields
            .and_then(|fields| row::validate(fields, today, now));
        let record = record.and_then(|r| {
            let key = format!("{}\u{1f}{}", r.source, r.legacy_id);
            match seen.get(&key) {
                Some(first) => Err(RowError::Duplicate(*first)),
                None => {
                    seen.insert(key, raw.line);
                    Ok(r)
                }
            }
        });
        match record {
            Ok(record) => batch.records.push(sealer.seal(&record)),
            Err(reason) => batch.rejections.push(Rejection {
                line: raw.line,
                reason,
            }),
        }
        if batch.records.len() >= batch_rows {
            let full = std::mem::replace(&mut batch, new_batch());
            if sender.blocking_send(full).is_err() {
                return Ok(());
            }
        }
    }
    if batch.read > 0 {
        let _ = sender.blocking_send(batch);
    }
    Ok(())
}
