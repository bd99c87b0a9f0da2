//! What /proc tells about the processes sharing the machine during a run:
//! the servers' resident memory, and the CPU time spent by the servers, the
//! local PostgreSQL, the local Redis and this tool, which together say where
//! each message's (or socket's) share of the cores went, and how much of the
//! cores' time nobody used.

use std::collections::HashMap;

/// The summed resident memory of processes (from /proc/PID/status); `None`
/// without processes or when one cannot be read.
pub fn rss_sum(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| rss_bytes(pid)).sum()
}

/// The summed CPU time of processes in seconds; `None` without processes or
/// when one cannot be read.
pub fn cpu_sum(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// The processes sharing the machine whose CPU time a run divides among its
/// messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// The processes given with `--server-pid`.
    Servers,
    /// The local PostgreSQL: every process named `postgres` (none when the
    /// database is on another machine).
    Database,
    /// The local Redis between the nodes: every process named `redis-server`
    /// (none when Redis is on another machine or not installed).
    Bus,
    /// This process and its worker processes (for `echo`, its server and its
    /// clients alike).
    Tool,
}

/// CPU time of the machine's consumers at one moment, per process, so that a
/// database backend started or ended during the run counts for what it spent
/// while it was seen.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    servers: Option<f64>,
    database: HashMap<u32, f64>,
    bus: HashMap<u32, f64>,
    tool: Option<f64>,
    machine: Option<CoreTimes>,
}

impl CpuSnapshot {
    /// With this process as the tool.
    pub fn take(servers: &[u32]) -> Self {
        Self::with_tool(servers, &[std::process::id()])
    }

    /// With `tool` (this process and its workers) as the tool.
    pub fn with_tool(servers: &[u32], tool: &[u32]) -> Self {
        let [database, bus] = cpu_of_named(["postgres", "redis-server"]);
        CpuSnapshot {
            servers: cpu_sum(servers),
            database,
            bus,
            tool: cpu_sum(tool),
            machine: CoreTimes::now(),
        }
    }

    /// The share of all cores' time between `earlier` and this snapshot that
    /// no process used (idle, or waiting for I/O); `None` when /proc/stat could
    /// not be read or no time passed.
    pub fn idle_share_since(&self, earlier: &CpuSnapshot) -> Option<f64> {
        let (now, then) = (self.machine?, earlier.machine?);
        let total = now.total.checked_sub(then.total).filter(|&t| t > 0)?;
        let idle = now.idle.saturating_sub(then.idle);
        Some(idle as f64 / total as f64)
    }

    /// Seconds `consumer` spent on a CPU between `earlier` and this snapshot;
    /// `None` when it could not be read (or, for the database, has no local
    /// process). A database process gone by now is not counted.
    pub fn spent_since(&self, earlier: &CpuSnapshot, consumer: Consumer) -> Option<f64> {
        match consumer {
            Consumer::Servers => Some(self.servers? - earlier.servers?),
            Consumer::Tool => Some(self.tool? - earlier.tool?),
            Consumer::Database => spent_by_local(&self.database, &earlier.database),
            Consumer::Bus => spent_by_local(&self.bus, &earlier.bus),
        }
    }
}

/// The cores' time so far, summed over all cores, in clock ticks: all of it
/// and the part spent idle or waiting for I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CoreTimes {
    total: u64,
    idle: u64,
}

impl CoreTimes {
    /// From /proc/stat.
    fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// From the first line of /proc/stat: `cpu  user nice system idle iowait
    /// irq softirq steal ...` (guest time is already counted in user).
    fn parse(stat: &str) -> Option<Self> {
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .take(8)
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        let [_user, _nice, _system, idle, iowait, ..] = fields[..] else {
            return None;
        };
        Some(CoreTimes {
            total: fields.iter().sum(),
            idle: idle + iowait,
        })
    }
}

/// What a local service's processes spent since `earlier`, each counted for
/// what it spent while seen; `None` when it has no process here.
fn spent_by_local(now: &HashMap<u32, f64>, earlier: &HashMap<u32, f64>) -> Option<f64> {
    if now.is_empty() {
        return None;
    }
    Some(
        now.iter()
            .map(|(pid, seconds)| seconds - earlier.get(pid).unwrap_or(&0.0))
            .sum(),
    )
}

/// The CPU time of every process with each of `names`, by pid, from one
/// pass over /proc.
fn cpu_of_named<const N: usize>(names: [&str; N]) -> [HashMap<u32, f64>; N] {
    let mut found: [HashMap<u32, f64>; N] = std::array::from_fn(|_| HashMap::new());
    for (pid, comm) in processes() {
        if let Some(slot) = names.iter().position(|name| *name == comm) {
            if let Some(seconds) = cpu_seconds(pid) {
                found[slot].insert(pid, seconds);
            }
        }
    }
    found
}

/// The cores this process may run on, which the machine's consumers share.
pub fn cores() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Every process with its command name (/proc/PID/comm).
fn processes() -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some((pid, comm.trim_end().to_owned()))
        })
        .collect()
}

/// CPU time a process's threads have used, in seconds: the first field of each
/// /proc/PID/task/TID/schedstat (nanoseconds on a CPU). Finer than the clock
/// ticks of /proc/PID/stat; a thread that ends while being read is skipped.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanos: u64 = 0;
    for task in tasks.flatten() {
        let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        nanos += schedstat
            .split_whitespace()
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(nanos as f64 / 1e9)
}

/// Resident memory of a process, from /proc/PID/status.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::{cpu_seconds, cpu_sum, Consumer, CoreTimes, CpuSnapshot};
    use std::time::{Duration, Instant};

    #[test]
    fn a_process_cpu_time_grows_while_it_works_and_unknown_processes_have_none() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).expect("this process's threads");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut spins = 0u64;
        while cpu_seconds(pid).unwrap() - before < 0.02 {
            assert!(
                Instant::now() < deadline,
                "no CPU time counted after 10 s of work"
            );
            for _ in 0..100_000 {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        assert!(spins > 0);
        assert_eq!(cpu_sum(&[]), None);
        assert_eq!(cpu_sum(&[pid, u32::MAX]), None, "no such process");
    }

    #[test]
    fn a_local_service_process_counts_for_what_it_spent_while_seen() {
        let earlier = CpuSnapshot {
            servers: None,
            database: [(10, 1.0), (11, 2.0)].into_iter().collect(),
            bus: [(20, 4.0)].into_iter().collect(),
            tool: Some(0.5),
            machine: Some(CoreTimes {
                total: 1_000,
                idle: 300,
            }),
        };
        let later = CpuSnapshot {
            servers: Some(3.0),
            database: [(10, 1.5), (12, 0.25)].into_iter().collect(),
            bus: [(20, 4.125)].into_iter().collect(),
            tool: Some(0.75),
            machine: Some(CoreTimes {
                total: 1_400,
                idle: 350,
            }),
        };
        let spent = |consumer| later.spent_since(&earlier, consumer);
        assert_eq!(
            spent(Consumer::Database),
            Some(0.75),
            "10 grew 0.5, 12 is new"
        );
        assert_eq!(spent(Consumer::Tool), Some(0.25));
        assert_eq!(spent(Consumer::Bus), Some(0.125));
        assert_eq!(spent(Consumer::Servers), None, "not read at the start");
        assert_eq!(
            later.idle_share_since(&earlier),
            Some(0.125),
            "50 of 400 ticks"
        );
        assert_eq!(earlier.idle_share_since(&earlier), None, "no time passed");
        let remote = CpuSnapshot {
            database: Default::default(),
            bus: Default::default(),
            ..later
        };
        assert_eq!(remote.spent_since(&earlier, Consumer::Database), None);
        assert_eq!(remote.spent_since(&earlier, Consumer::Bus), None);
    }

    #[test]
    fn core_times_count_idle_and_io_wait_as_unused() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(
            CoreTimes::parse(stat),
            Some(CoreTimes {
                total: 1000,
                idle: 840
            })
        );
        assert_eq!(
            CoreTimes::parse("cpu0 1 2 3 4 5\n"),
            None,
            "not the total line"
        );
        assert_eq!(CoreTimes::parse("cpu  1 2 3\n"), None, "too few fields");
    }

    #[test]
    fn the_idle_share_leaves_out_a_core_kept_busy() {
        // /proc counts time in ticks of 1/100 s, each core's count off by up
        // to a tick at either end, so the share is known to within about
        // 2 / (100 × seconds), and this process's CPU time to 2/100 s. One
        // busy core is 1/cores of the machine: spin for long enough that it
        // stands four times clear of that error, on any number of cores.
        let cores = super::cores() as f64;
        let spin = Duration::from_secs_f64((8.0 * cores / 100.0).max(0.3));
        let before = CpuSnapshot::take(&[]);
        let started = Instant::now();
        let mut counter = 0u64;
        while started.elapsed() < spin {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
        let after = CpuSnapshot::take(&[]);
        let wall = started.elapsed().as_secs_f64();
        let share = after
            .idle_share_since(&before)
            .expect("/proc/stat is readable");
        let busy = after
            .spent_since(&before, Consumer::Tool)
            .expect("this process's CPU time is readable");
        let tick = 0.01;
        let most = 1.0 - (busy - 2.0 * tick) / (wall * cores) + 2.0 * tick / wall;
        assert!(
            most < 1.0,
            "the bound can fail: {busy} s busy of {wall} s on {cores} cores"
        );
        assert!(
            (0.0..=most).contains(&share),
            "one core kept busy, {cores} cores, idle share {share}, at most {most}"
        );
    }
}
