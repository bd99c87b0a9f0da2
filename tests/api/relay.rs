//! A TCP relay that tests put between a node and a server (Redis, a
//! PostgreSQL standby) to make the server go quiet without closing
//! anything, as behind a partition or a host that vanished:
//! - `sever`: the server's side of every open connection is closed (the
//!   server forgets the client) while the node's side stays open and silent
//!   until the node says something, which closes it (as a reset would);
//!   later connections are relayed as before;
//! - `freeze`: every connection, open or new, stays open and carries
//!   nothing more.

use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Relay {
    pub port: u16,
    severed: watch::Sender<u64>,
    frozen: watch::Sender<bool>,
}

impl Relay {
    /// A relay on a free loopback port to `upstream` (`host:port`).
    pub async fn to(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (severed, _) = watch::channel(0);
        let (frozen, _) = watch::channel(false);
        let (severs, freezes) = (severed.clone(), frozen.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let quiet = (severs.subscribe(), freezes.subscribe());
                tokio::spawn(relay(inbound, upstream.clone(), quiet));
            }
        });
        Relay {
            port,
            severed,
            frozen,
        }
    }

    pub fn sever(&self) {
        self.severed.send_modify(|n| *n += 1);
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

/// How one relayed connection ended.
enum Ended {
    ByAnEnd,
    Severed,
    Frozen,
}

async fn relay(
    mut inbound: TcpStream,
    upstream: String,
    (mut severed, mut frozen): (watch::Receiver<u64>, watch::Receiver<bool>),
) {
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let ended = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => Ended::ByAnEnd,
        _ = severed.changed() => Ended::Severed,
        _ = frozen.wait_for(|frozen| *frozen) => Ended::Frozen,
    };
    match ended {
        Ended::ByAnEnd => {}
        Ended::Severed => {
            drop(outbound);
            let mut byte = [0u8; 1];
            let _ = inbound.read(&mut byte).await;
        }
        // Held open, carrying nothing, until the test ends.
        Ended::Frozen => tokio::time::sleep(Duration::from_secs(600)).await,
    }
}
