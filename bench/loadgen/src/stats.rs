//! Tallies of one scenario (latency histogram of successes, errors by kind) and how they are printed:
//! a human table and a Markdown row for docs/benchmarks.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::failure::Failure;

/// Latencies are kept in microseconds, from 1 µs up to two minutes, to three significant digits.
const MAX_LATENCY_US: u64 = 120_000_000;

pub struct Recorder {
    latency_us: Histogram<u64>,
    errors: BTreeMap<String, ErrorTally>,
    /// Work a scenario had to do that is not its operation (e.g. re-login after a broken refresh chain).
    pub unmeasured: u64,
    /// Completion time of the latest recorded operation.
    pub last_completion: Option<Instant>,
}

struct ErrorTally {
    count: u64,
    first_detail: String,
}

impl Recorder {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .context("latency histogram")?,
            errors: BTreeMap::new(),
            unmeasured: 0,
            last_completion: None,
        })
    }

    pub fn record(&mut self, started: Instant, finished: Instant, outcome: Result<(), Failure>) {
        self.last_completion = self.last_completion.max(Some(finished));
        match outcome {
            Ok(()) => {
                let us =
                    u64::try_from(finished.duration_since(started).as_micros()).unwrap_or(u64::MAX);
                self.latency_us.saturating_record(us.max(1));
            }
            Err(failure) => {
                let tally = self
                    .errors
                    .entry(failure.to_string())
                    .or_insert(ErrorTally {
                        count: 0,
                        first_detail: failure.detail,
                    });
                tally.count += 1;
            }
        }
    }

    pub fn merge(&mut self, other: Recorder) -> anyhow::Result<()> {
        self.latency_us
            .add(&other.latency_us)
            .context("merging latency histograms")?;
        for (key, tally) in other.errors {
            let mine = self.errors.entry(key).or_insert(ErrorTally {
                count: 0,
                first_detail: tally.first_detail,
            });
            mine.count += tally.count;
        }
        self.unmeasured += other.unmeasured;
        self.last_completion = self.last_completion.max(other.last_completion);
        Ok(())
    }

    pub fn successes(&self) -> u64 {
        self.latency_us.len()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|t| t.count).sum()
    }

    /// Latency at quantile `q` (0..=1) of successful operations, in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }
}

/// One scenario's result, ready to print.
pub struct Report {
    pub scenario: &'static str,
    pub concurrency: usize,
    pub window: Duration,
    pub recorder: Recorder,
    /// Server CPU time over the window, in milliseconds, when measured.
    pub server_cpu_ms: Option<f64>,
    pub db_cpu_ms: Option<f64>,
    pub stopped_by_max_ops: bool,
}

impl Report {
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.recorder.successes() as f64 / secs
        } else {
            0.0
        }
    }

    /// Adds another run of the same scenario: its operations, errors, window and CPU.
    pub fn absorb(&mut self, other: Report) -> anyhow::Result<()> {
        let add = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a + b);
        self.recorder.merge(other.recorder)?;
        self.window += other.window;
        self.server_cpu_ms = add(self.server_cpu_ms, other.server_cpu_ms);
        self.db_cpu_ms = add(self.db_cpu_ms, other.db_cpu_ms);
        self.stopped_by_max_ops |= other.stopped_by_max_ops;
        Ok(())
    }

    /// Server CPU milliseconds per successful operation, when measured.
    pub fn server_cpu_per_op(&self) -> Option<f64> {
        self.per_op(self.server_cpu_ms)
    }

    fn per_op(&self, cpu_ms: Option<f64>) -> Option<f64> {
        let n = self.recorder.successes();
        cpu_ms.filter(|_| n > 0).map(|ms| ms / n as f64)
    }

    pub fn human_header() -> String {
        format!(
            "{:<20} {:>5} {:>10} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>13} {:>12}",
            "scenario",
            "conc",
            "ops/s",
            "ok",
            "errors",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "srv cpu ms/op",
            "db cpu ms/op"
        )
    }

    pub fn human(&self) -> String {
        let r = &self.recorder;
        let mut out = format!(
            "{:<20} {:>5} {:>10.1} {:>9} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>13} {:>12}",
            self.scenario,
            self.concurrency,
            self.ops_per_sec(),
            r.successes(),
            r.error_count(),
            r.percentile_ms(0.50),
            r.percentile_ms(0.90),
            r.percentile_ms(0.99),
            r.max_ms(),
            fmt_opt(self.per_op(self.server_cpu_ms), 3),
            fmt_opt(self.per_op(self.db_cpu_ms), 3),
        );
        for (key, tally) in &r.errors {
            let _ = write!(out, "\n    error {key} x{}", tally.count);
            if !tally.first_detail.is_empty() {
                let _ = write!(out, "  (first: {})", tally.first_detail);
            }
        }
        if r.unmeasured > 0 {
            let _ = write!(
                out,
                "\n    {} unmeasured login(s) (a refresh chain restarted, or the session a logout ends; not in ops/s)",
                r.unmeasured
            );
        }
        if self.stopped_by_max_ops {
            let _ = write!(
                out,
                "\n    stopped early at --max-ops after {:.1} s",
                self.window.as_secs_f64()
            );
        }
        out
    }

    pub fn markdown_header() -> &'static str {
        "| scenario | concurrency | ops/s | p50 ms | p99 ms | errors | broker CPU ms/op | db CPU ms/op |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    }

    pub fn markdown(&self) -> String {
        let r = &self.recorder;
        format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
            self.scenario,
            self.concurrency,
            self.ops_per_sec(),
            r.percentile_ms(0.50),
            r.percentile_ms(0.99),
            r.error_count(),
            fmt_opt(self.per_op(self.server_cpu_ms), 3),
            fmt_opt(self.per_op(self.db_cpu_ms), 3),
        )
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder_with(latencies_ms: impl IntoIterator<Item = u64>) -> Recorder {
        let mut r = Recorder::new().unwrap();
        let t0 = Instant::now();
        for ms in latencies_ms {
            r.record(t0, t0 + Duration::from_millis(ms), Ok(()));
        }
        r
    }

    #[test]
    fn percentiles_of_merged_recorders() {
        let mut a = recorder_with(1..=50);
        let b = recorder_with(51..=100);
        a.merge(b).unwrap();
        a.record(
            Instant::now(),
            Instant::now(),
            Err(Failure::status("token", 503, "busy")),
        );
        assert_eq!(a.successes(), 100);
        assert_eq!(a.error_count(), 1);
        // Three significant digits: within 0.1 % of the exact value.
        assert!(
            (a.percentile_ms(0.50) - 50.0).abs() < 0.1,
            "{}",
            a.percentile_ms(0.50)
        );
        assert!((a.percentile_ms(0.90) - 90.0).abs() < 0.1);
        assert!((a.percentile_ms(0.99) - 99.0).abs() < 0.1);
        assert!((a.max_ms() - 100.0).abs() < 0.1);
    }

    #[test]
    fn report_rows() {
        let report = Report {
            scenario: "client-credentials",
            concurrency: 32,
            window: Duration::from_secs(10),
            recorder: recorder_with(std::iter::repeat_n(2, 1000)),
            server_cpu_ms: Some(500.0),
            db_cpu_ms: None,
            stopped_by_max_ops: false,
        };
        assert!((report.ops_per_sec() - 100.0).abs() < 1e-9);
        assert_eq!(
            report.markdown(),
            "| client-credentials | 32 | 100 | 2.00 | 2.00 | 0 | 0.500 | – |"
        );
        assert!(report
            .human()
            .starts_with("client-credentials      32      100.0"));
    }
}
