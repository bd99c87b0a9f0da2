//! A TCP relay that tests put between a node and a server (Redis,
//! PostgreSQL, a standby) to make the server go quiet, as behind a
//! partition or a host that vanished, or go away and come back:
//! - `sever`: the server's side of every open connection is closed (the
//!   server forgets the client) while the node's side stays open and silent
//!   until the node says something, which closes it (as a reset would);
//!   later connections are relayed as before;
//! - `freeze`: every connection, open or new, stays open and carries
//!   nothing more;
//! - `cut`: both sides of every open connection are closed, and new ones
//!   are closed at once, until `restore` (a server that went away and came
//!   back).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Relay {
    pub port: u16,
    severed: watch::Sender<u64>,
    frozen: watch::Sender<bool>,
    cuts: watch::Sender<u64>,
    open: Arc<AtomicBool>,
}

impl Relay {
    /// A relay on a free loopback port to `upstream` (`host:port`).
    pub async fn to(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (severed, _) = watch::channel(0);
        let (frozen, _) = watch::channel(false);
        let (cuts, _) = watch::channel(0);
        let open = Arc::new(AtomicBool::new(true));
        let quiets = (severed.clone(), frozen.clone(), cuts.clone());
        let accepting = open.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let quiet = (
                    quiets.0.subscribe(),
                    quiets.1.subscribe(),
                    quiets.2.subscribe(),
                );
                tokio::spawn(relay(inbound, upstream.clone(), quiet));
            }
        });
        Relay {
            port,
            severed,
            frozen,
            cuts,
            open,
        }
    }

    pub fn sever(&self) {
        self.severed.send_modify(|n| *n += 1);
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// How one relayed connection ended.
enum Ended {
    ByAnEnd,
    Severed,
    Frozen,
    Cut,
}

/// What a relayed connection watches: severs, the freeze and cuts.
type Quiet = (
    watch::Receiver<u64>,
    watch::Receiver<bool>,
    watch::Receiver<u64>,
);

async fn relay(
    mut inbound: TcpStream,
    upstream: String,
    (mut severed, mut frozen, mut cuts): Quiet,
) {
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let ended = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => Ended::ByAnEnd,
        _ = severed.changed() => Ended::Severed,
        _ = frozen.wait_for(|frozen| *frozen) => Ended::Frozen,
        _ = cuts.changed() => Ended::Cut,
    };
    match ended {
        // Both sides dropped here.
        Ended::ByAnEnd | Ended::Cut => {}
        Ended::Severed => {
            drop(outbound);
            let mut byte = [0u8; 1];
            let _ = inbound.read(&mut byte).await;
        }
        // Held open, carrying nothing, until the test ends.
        Ended::Frozen => tokio::time::sleep(Duration::from_secs(600)).await,
    }
}
