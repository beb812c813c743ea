//! CPU time from `/proc`: this process's, the PostgreSQL server's (the
//! postmaster and its children), and the whole machine's, so that a run
//! can say where its CPU went and how busy the machine was.

use std::path::Path;

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU seconds (user + system) from a `/proc/PID/stat` line, with the
/// parent's pid.
fn stat_line(text: &str) -> Option<(u32, f64)> {
    // The command name may hold spaces: the fields follow its last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((ppid, (utime + stime) / TICKS))
}

/// This process's CPU seconds.
pub fn own() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| stat_line(&t))
        .map_or(0.0, |(_, s)| s)
}

/// The postmaster's pid: the first line of `postmaster.pid` in `data`.
pub fn postmaster(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// CPU seconds of the postmaster `pid` and its living children, by pid.
pub fn server(pid: u32) -> Vec<(u32, f64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some((ppid, secs)) = stat_line(&text)
            && (p == pid || ppid == pid)
        {
            out.push((p, secs));
        }
    }
    out
}

/// CPU seconds the server spent between two [`server`] samples (a process
/// absent from the first counts from zero; one gone by the second is lost).
pub fn server_since(before: &[(u32, f64)], after: &[(u32, f64)]) -> f64 {
    after
        .iter()
        .map(|(p, s)| s - before.iter().find(|(q, _)| q == p).map_or(0.0, |(_, b)| *b))
        .sum()
}

/// The machine's busy and total CPU seconds so far (`/proc/stat`'s `cpu`
/// line; busy is everything but idle and iowait).
pub fn machine() -> (f64, f64) {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return (0.0, 0.0);
    };
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    ((total - idle) / TICKS, total / TICKS)
}

/// The 1-minute load average.
pub fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A span of CPU accounting: this process, the server, the machine.
#[derive(Clone, Debug)]
pub struct Sample {
    own: f64,
    server: Vec<(u32, f64)>,
    machine: (f64, f64),
}

/// CPU seconds spent over a span.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spent {
    /// By this process.
    pub own: f64,
    /// By PostgreSQL.
    pub server: f64,
    /// By the whole machine (busy), and its capacity (cores × seconds).
    pub busy: f64,
    pub capacity: f64,
}

impl Sample {
    pub fn now(postmaster: u32) -> Sample {
        Sample {
            own: own(),
            server: server(postmaster),
            machine: machine(),
        }
    }

    /// What was spent from `self` to `later`.
    pub fn to(&self, later: &Sample) -> Spent {
        Spent {
            own: later.own - self.own,
            server: server_since(&self.server, &later.server),
            busy: later.machine.0 - self.machine.0,
            capacity: later.machine.1 - self.machine.1,
        }
    }
}
