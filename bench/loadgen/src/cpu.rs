//! Server CPU time from /proc, sampled at both ends of the measured window: the given server processes
//! (all their threads), and optionally every PostgreSQL and Redis process on the machine.

use std::fs;

use anyhow::{bail, Context};

/// Process names counted as database CPU with `--postgres`.
const DB_COMMS: [&str; 2] = ["postgres", "redis-server"];

pub struct CpuProbe {
    server_pids: Vec<u32>,
    db: bool,
    ticks_per_sec: f64,
}

/// Cumulative CPU ticks at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    server: u64,
    db: u64,
}

/// CPU milliseconds spent between two samples, for what was asked to be measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub server_ms: Option<f64>,
    pub db_ms: Option<f64>,
}

impl CpuProbe {
    pub fn new(server_pids: Vec<u32>, db: bool) -> anyhow::Result<Self> {
        for pid in &server_pids {
            read_stat(*pid).with_context(|| format!("--server-pid {pid}"))?;
        }
        Ok(Self {
            server_pids,
            db,
            ticks_per_sec: clock_ticks_per_sec(),
        })
    }

    pub fn sample(&self) -> anyhow::Result<CpuSample> {
        let mut sample = CpuSample::default();
        for pid in &self.server_pids {
            let stat = read_stat(*pid).with_context(|| format!("server process {pid} is gone"))?;
            sample.server += stat.own;
        }
        if self.db {
            sample.db = db_ticks(&self.server_pids);
        }
        Ok(sample)
    }

    pub fn used(&self, from: CpuSample, to: CpuSample) -> CpuUse {
        let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 * 1000.0 / self.ticks_per_sec;
        CpuUse {
            server_ms: (!self.server_pids.is_empty()).then(|| ms(from.server, to.server)),
            db_ms: self.db.then(|| ms(from.db, to.db)),
        }
    }
}

/// CPU ticks of one process from /proc/PID/stat.
#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    /// utime + stime: every thread of the process, live or exited.
    own: u64,
    /// cutime + cstime: children that exited and were reaped.
    children: u64,
}

fn read_stat(pid: u32) -> anyhow::Result<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> anyhow::Result<ProcStat> {
    // The command name (field 2) may hold spaces and parentheses: the fields that follow start after
    // its last ')', at field 3 (state); utime is field 14.
    let close = text.rfind(')').context("no ')' in stat")?;
    let fields: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        let raw = fields
            .get(n - 3)
            .with_context(|| format!("stat has no field {n}"))?;
        raw.parse()
            .with_context(|| format!("stat field {n} is not a number"))
    };
    let (utime, stime, cutime, cstime) = (field(14)?, field(15)?, field(16)?, field(17)?);
    Ok(ProcStat {
        own: utime + stime,
        children: cutime + cstime,
    })
}

/// Every database process, with the children it reaped, so backends that exit inside the window (their
/// time then moves into the postmaster's cutime) are still counted.
fn db_ticks(exclude: &[u32]) -> u64 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if exclude.contains(&pid) {
            continue;
        }
        // Processes come and go while /proc is read: a vanished one is simply skipped.
        let Ok(comm) = fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if !DB_COMMS.contains(&comm.trim_end()) {
            continue;
        }
        if let Ok(stat) = read_stat(pid) {
            total += stat.own + stat.children;
        }
    }
    total
}

/// USER_HZ, the unit of /proc/PID/stat times; 100 on every mainstream Linux.
fn clock_ticks_per_sec() -> f64 {
    let ticks = rustix::param::clock_ticks_per_second();
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Fails early when /proc cannot be read (not Linux, or a restricted sandbox).
pub fn check_procfs() -> anyhow::Result<()> {
    if fs::metadata("/proc/self/stat").is_err() {
        bail!("/proc is not readable: CPU per operation cannot be measured here");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 1500 250 7 3 20 0 9 0 100 0 0";
        assert_eq!(
            parse_stat(line).unwrap(),
            ProcStat {
                own: 1750,
                children: 10
            }
        );
        assert!(parse_stat("1 (x) S 1 2").is_err());
    }

    #[test]
    fn reads_own_process() {
        let probe = CpuProbe::new(vec![std::process::id()], false).unwrap();
        let a = probe.sample().unwrap();
        let b = probe.sample().unwrap();
        let used = probe.used(a, b);
        assert!(used.server_ms.unwrap() >= 0.0);
        assert!(used.db_ms.is_none());
    }
}
