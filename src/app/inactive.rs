//! The users this node knows to be inactive (`is_active` false, set by an
//! admin or imported from the Django backend), read from the store every
//! `INACTIVE_USERS_POLL_SECS`. SimpleJWT refuses such a user on every
//! authenticated request; so do we, without a query per request: a bearer
//! of a user in this set is refused with 401, and when a poll finds a user
//! newly inactive, their sockets on this node close with 4003.
//!
//! The store's own lookups of a requester (login, refresh, handshakes, the
//! membership query of a send) find no inactive user either, so those paths
//! refuse one at once; the set covers the paths that ask no query (a token
//! already verified, a remembered membership), within one poll.

use crate::delivery::rooms::Rooms;
use crate::store::Store;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The inactive users, as of the last poll.
#[derive(Debug, Default)]
pub struct InactiveUsers {
    known: Mutex<HashSet<i64>>,
    /// Whether `known` holds anyone: without inactive users a request
    /// takes no lock.
    any: AtomicBool,
}

impl InactiveUsers {
    /// Reads the inactive users once (so a node knows them before it serves;
    /// a store that cannot answer leaves the set empty until the next poll),
    /// then polls every `interval` while the returned handle lives.
    pub async fn start(store: Arc<dyn Store>, rooms: Rooms, interval: Duration) -> Arc<Self> {
        let users = Arc::new(InactiveUsers::default());
        users.poll(store.as_ref(), &rooms).await;
        tokio::spawn(keep_polling(Arc::downgrade(&users), store, rooms, interval));
        users
    }

    /// Whether the user was inactive at the last poll.
    pub fn contains(&self, user_id: i64) -> bool {
        self.any.load(Ordering::Acquire) && crate::remembered::lock(&self.known).contains(&user_id)
    }

    /// Replaces the set with the store's, then signs out every user that was
    /// not in it before (after the replacement, so a socket that joins
    /// meanwhile is refused by its handshake's check or closed by this).
    async fn poll(&self, store: &dyn Store, rooms: &Rooms) {
        let inactive: HashSet<i64> = match store.inactive_users().await {
            Ok(ids) => ids.into_iter().collect(),
            Err(error) => return tracing::warn!(%error, "reading the inactive users failed"),
        };
        let newly: Vec<i64> = {
            let mut known = crate::remembered::lock(&self.known);
            let newly = inactive.difference(&known).copied().collect();
            self.any.store(!inactive.is_empty(), Ordering::Release);
            *known = inactive;
            newly
        };
        for user in newly {
            rooms.sign_out(user).await;
        }
    }
}

/// Polls until the node's handle is dropped.
async fn keep_polling(
    users: Weak<InactiveUsers>,
    store: Arc<dyn Store>,
    rooms: Rooms,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(users) = users.upgrade() else {
            return;
        };
        users.poll(store.as_ref(), &rooms).await;
    }
}
