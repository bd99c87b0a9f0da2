//! How many client connections the server holds at once: `MAX_CONNECTIONS`,
//! but never more than the process's open-file limit leaves room for. Every
//! connection is a descriptor; past the limit `accept` fails, and connections
//! wait in the kernel's queue with no answer (a client's handshake hangs) while
//! the database pool and Redis cannot reconnect either. Within the capacity,
//! a connection over it is accepted and answered 503 (see [`super::accept`]),
//! so the descriptors kept back also cover those refusals.

use crate::config::Config;
use tokio::sync::Semaphore;

/// Descriptors kept back whatever the configuration: the listener, the
/// runtime's, the log, the embedded store's files, Redis (a publisher and a
/// subscriber per node of the bus), TLS files and name lookups.
const RESERVED_BASE: u64 = 128;

/// Connections taken at once: `MAX_CONNECTIONS`, or fewer when the open-file
/// limit (`open_files`, `None` when unknown) cannot hold that many beside
/// what the server keeps back; at least one. `MAX_CONNECTIONS=0` sets no cap
/// of its own, only the open-file limit's.
pub fn connections_that_fit(config: &Config, open_files: Option<u64>) -> usize {
    let wanted = match config.limits.max_connections {
        0 => Semaphore::MAX_PERMITS,
        cap => cap.min(Semaphore::MAX_PERMITS),
    };
    let Some(open_files) = open_files else {
        return wanted;
    };
    let room = open_files.saturating_sub(kept_back(config, open_files));
    wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// Descriptors not given to client connections: [`RESERVED_BASE`], the
/// database pools (the primary's and each standby's), and a 32nd of the
/// limit for the sockets being refused while the server is full.
fn kept_back(config: &Config, open_files: u64) -> u64 {
    let pools = config.database.as_ref().map_or(0, |database| {
        let pools = 1 + database.read_urls.len() as u64;
        u64::from(database.pool_size).saturating_mul(pools)
    });
    RESERVED_BASE
        .saturating_add(pools)
        .saturating_add(open_files / 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let mut all = vec![("SECRET_KEY", "capacity-test-secret-0123456789abcdef")];
        all.extend_from_slice(vars);
        let owned = all.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_vars(owned.collect()).expect("valid configuration")
    }

    #[test]
    fn the_open_file_limit_caps_connections_less_what_is_kept_back() {
        let postgres = config(&[("DATABASE_URL", "postgres://db/chat")]);
        // 20,000 less 128, the pool of 16 and 625 for refusals.
        assert_eq!(connections_that_fit(&postgres, Some(20_000)), 19_231);
        let standbys = config(&[
            ("DATABASE_URL", "postgres://db/chat"),
            ("DATABASE_READ_URLS", "postgres://a/chat,postgres://b/chat"),
        ]);
        assert_eq!(connections_that_fit(&standbys, Some(20_000)), 19_199);
    }

    #[test]
    fn max_connections_stands_when_it_fits_or_the_limit_is_unknown() {
        let small = config(&[("MAX_CONNECTIONS", "500")]);
        assert_eq!(connections_that_fit(&small, Some(1_048_576)), 500);
        assert_eq!(connections_that_fit(&small, None), 500);
        assert_eq!(connections_that_fit(&config(&[]), Some(u64::MAX)), 100_000);
    }

    #[test]
    fn max_connections_zero_leaves_only_the_open_file_limit() {
        let uncapped = config(&[("MAX_CONNECTIONS", "0")]);
        assert_eq!(connections_that_fit(&uncapped, Some(20_000)), 19_247);
        assert_eq!(
            connections_that_fit(&uncapped, None),
            Semaphore::MAX_PERMITS
        );
    }

    #[test]
    fn a_limit_below_what_is_kept_back_still_takes_one_connection() {
        assert_eq!(connections_that_fit(&config(&[]), Some(100)), 1);
    }
}
