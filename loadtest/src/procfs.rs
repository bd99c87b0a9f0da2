//! What /proc tells about the servers under test: their resident memory and
//! the CPU time their threads have used, summed over their processes.

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
    use super::{cpu_seconds, cpu_sum};
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
}
