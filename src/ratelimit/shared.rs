//! Rate limits that the nodes of a deployment keep together. Each node notes
//! the users and addresses its shared limits let through, reports them to
//! the other nodes every [`REPORT_EVERY`] (over the bus, signed like its
//! events), and takes what the others report from its own buckets. So a user
//! with sockets on three nodes, or an address whose requests a balancer
//! spreads over them, draws on one budget, not three. A report arrives a
//! period (and Redis's delay) late, so a client spread over N nodes can get
//! past a limit by what those nodes let through in that time, a burst each
//! at the most. A node that hears no reports (Redis down) limits alone.
//!
//! A report is text: `letter key count` entries joined by `;`, the letter
//! naming the limit and the key a user id or an address. A node ignores
//! entries it cannot read or whose letter it does not know (a newer node's
//! limit).

use super::{Key, RateLimiter};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often a node reports what it let through.
pub const REPORT_EVERY: Duration = Duration::from_millis(100);
/// A report's size at which the next entries start another.
const REPORT_BYTES: usize = 48 * 1024;
/// Tokens one entry takes at the most (a report can say no more than a
/// node could let through).
const COUNT_MAX: u32 = 1_000_000;

/// The shared limits of a node, each under its letter.
pub struct SharedLimits {
    limits: Vec<(u8, Arc<RateLimiter>)>,
}

impl SharedLimits {
    /// Shares `limits` (per-user or per-address limiters, each named by a
    /// letter no other uses): from now on they note whom they let through.
    pub fn new(limits: Vec<(u8, Arc<RateLimiter>)>) -> Self {
        for (_, limiter) in &limits {
            limiter.noting.store(true, Ordering::Relaxed);
        }
        SharedLimits { limits }
    }

    /// What this node let through since the last reports, as reports of at
    /// most about [`REPORT_BYTES`] each; none when it let no one through.
    pub fn reports(&self) -> Vec<Vec<u8>> {
        let mut reports = Vec::new();
        let mut report = String::new();
        for (letter, limiter) in &self.limits {
            for (key, count) in limiter.take_noted() {
                if !report.is_empty() {
                    report.push(';');
                }
                let _ = write!(report, "{} {key} {count}", char::from(*letter));
                if report.len() >= REPORT_BYTES {
                    reports.push(std::mem::take(&mut report).into_bytes());
                }
            }
        }
        if !report.is_empty() {
            reports.push(report.into_bytes());
        }
        reports
    }

    /// Takes what another node's report says it let through from this
    /// node's buckets.
    pub fn charge(&self, report: &[u8]) {
        let Ok(report) = std::str::from_utf8(report) else {
            return;
        };
        for entry in report.split(';') {
            if let Some((letter, key, count)) = entry_of(entry) {
                if let Some((_, limiter)) = self.limits.iter().find(|(l, _)| *l == letter) {
                    limiter.charge(key, count.min(COUNT_MAX));
                }
            }
        }
    }
}

/// `letter key count` → its parts.
fn entry_of(entry: &str) -> Option<(u8, Key, u32)> {
    let mut parts = entry.split(' ');
    let letter = match parts.next()?.as_bytes() {
        [letter] => *letter,
        _ => return None,
    };
    let key = parts.next()?.parse().ok()?;
    let count = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((letter, key, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn limiter(per_second: f64, burst: f64) -> Arc<RateLimiter> {
        Arc::new(RateLimiter::new(per_second, burst))
    }

    /// One node's limit named `letter`, shared.
    fn node(letter: u8, per_second: f64, burst: f64) -> (Arc<RateLimiter>, SharedLimits) {
        let limiter = limiter(per_second, burst);
        let shared = SharedLimits::new(vec![(letter, limiter.clone())]);
        (limiter, shared)
    }

    #[test]
    fn what_one_node_lets_through_is_taken_from_the_others_buckets() {
        let ((here, ours), (there, theirs)) = (node(b's', 1.0, 3.0), node(b's', 1.0, 3.0));
        for _ in 0..3 {
            assert!(here.check_user(7).is_ok());
        }
        assert!(here.check_user(8).is_ok());
        let reports = ours.reports();
        assert_eq!(reports.len(), 1);
        let mut entries: Vec<&str> = std::str::from_utf8(&reports[0])
            .unwrap()
            .split(';')
            .collect();
        entries.sort_unstable();
        assert_eq!(entries, ["s 7 3", "s 8 1"]);
        assert!(ours.reports().is_empty(), "each token is reported once");
        theirs.charge(&reports[0]);
        let wait = there.check_user(7).unwrap_err();
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        assert!(there.check_user(8).is_ok(), "one of three taken");
        assert_eq!(theirs.reports().len(), 1, "its own send is reported");
    }

    #[test]
    fn addresses_are_shared_as_users_are() {
        let ((here, ours), (there, theirs)) = (node(b'a', 1.0, 1.0), node(b'a', 1.0, 1.0));
        let (v4, v6): (IpAddr, IpAddr) =
            ("10.0.0.7".parse().unwrap(), "2001:db8::7".parse().unwrap());
        assert!(here.check_address(v4).is_ok());
        assert!(here.check_address(v6).is_ok());
        for report in ours.reports() {
            theirs.charge(&report);
        }
        assert!(there.check_address(v4).is_err());
        assert!(there.check_address(v6).is_err());
        assert!(there.check_address("10.0.0.8".parse().unwrap()).is_ok());
        assert!(there.check_user(7).is_ok(), "a user is not an address");
    }

    #[test]
    fn debt_is_bounded_by_a_burst() {
        let (there, theirs) = node(b's', 10.0, 2.0);
        theirs.charge(b"s 7 1000");
        let wait = there.check_user(7).unwrap_err();
        assert!(
            wait > Duration::from_millis(250) && wait <= Duration::from_millis(300),
            "minus one burst at the most: {wait:?}"
        );
    }

    #[test]
    fn unknown_letters_and_garbled_entries_are_ignored() {
        let (there, theirs) = node(b's', 1.0, 1.0);
        theirs.charge(b"x 7 5;s 7;s seven 1;s 7 1 2;;s 7 -1;\xff");
        assert!(there.check_user(7).is_ok(), "nothing was taken");
    }

    #[test]
    fn an_unshared_limiter_notes_no_one() {
        let alone = limiter(1.0, 3.0);
        assert!(alone.check_user(7).is_ok());
        assert!(alone.take_noted().is_empty());
    }

    #[test]
    fn large_reports_are_split() {
        let (here, ours) = node(b's', 1.0, 1.0);
        for user in 0..20_000 {
            assert!(here.check_user(user).is_ok());
        }
        let reports = ours.reports();
        assert!(reports.len() > 1, "{} report", reports.len());
        assert!(reports.iter().all(|r| r.len() < REPORT_BYTES + 64));
        let entries: usize = reports
            .iter()
            .map(|r| std::str::from_utf8(r).unwrap().split(';').count())
            .sum();
        assert_eq!(entries, 20_000);
    }
}
