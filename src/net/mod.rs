//! The network layer: the [`Application`] that binds, accepts and drains; one
//! hyper HTTP/1.1 connection task per socket (upgrades enabled for
//! WebSockets), a semaphore capping open connections at what the open-file
//! limit can hold (excess sockets are answered 503 and closed at once, see
//! [`capacity`]), backoff on accept errors, and a graceful drain on
//! shutdown. Each request goes through [`serve`] and then [`routes`].

mod capacity;
pub mod routes;
pub mod serve;
pub mod socket_options;

use crate::app::{AppState, StartError};
use crate::config::Config;
use crate::http::connection::ConnectionPermit;
use crate::ratelimit::Slots;
use crate::shutdown::{Shutdown, ShutdownController};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

/// Connections the kernel may hold completed but not yet accepted. The kernel
/// caps it at `net.core.somaxconn`. (A plain `TcpListener::bind` asks for 128:
/// a burst of connects overflowed it and each dropped SYN cost its client a
/// one-second retransmit.)
const LISTEN_BACKLOG: u32 = 65_535;

/// Binds `addr` with address reuse (restarts do not wait out TIME_WAIT) and a
/// deep accept queue. Connections are handed over once their first bytes
/// have arrived (or after `defer_accept`, see [`socket_options`]), and carry
/// `TCP_NODELAY` from the listener where the OS copies it (elsewhere, set it
/// on each accepted socket: [`crate::net::socket_options::set_nodelay_unless_inherited`]).
/// The load tester's minimal echo server listens the same way.
pub fn listen(addr: SocketAddr, defer_accept: Duration) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    crate::net::socket_options::accept_when_data_arrives(&socket, defer_accept);
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A built server, listening but not yet accepting.
pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Application {
    /// Binds `config.bind`, connects the store and applies migrations.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let addr = config.bind;
        let defer_accept = config.limits.header_read_timeout;
        let listener =
            listen(addr, defer_accept).map_err(|source| StartError::Bind { addr, source })?;
        let state = Arc::new(AppState::build(config).await?);
        Ok(Application { listener, state })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Which store and bus this server uses, for the start-up log.
    pub fn describe(&self) -> (String, &'static str) {
        let bus = if self.state.delivery.bus.is_distributed() {
            "redis"
        } else {
            "in-process"
        };
        (self.state.store.describe(), bus)
    }

    /// Serves until SIGINT or SIGTERM, then drains.
    pub async fn run_until_stopped(self) {
        self.run_until(shutdown_signal()).await;
    }

    /// Serves until `stop` resolves, then stops accepting and gives open
    /// connections `SHUTDOWN_TIMEOUT_SECS` to finish.
    pub async fn run_until(self, stop: impl Future<Output = ()>) {
        let Application { listener, state } = self;
        let controller = ShutdownController::new();
        // Accepting is a task of its own, not part of the caller (often
        // `block_on`'s thread, outside the workers): a connection task spawned
        // from a worker starts on that worker's own queue, where one spawned
        // from outside goes through the shared queue and wakes a worker.
        let mut accepting = tokio::spawn(accept(listener, state.clone(), controller.handle()));
        tokio::select! {
            () = stop => {}
            _ = &mut accepting => {}
        }
        accepting.abort();
        let _ = accepting.await;
        let timeout = state.config.shutdown_timeout;
        tracing::info!(?timeout, "shutting down: draining connections");
        state.delivery.rooms.go_away().await;
        if !controller.drain(timeout).await {
            tracing::warn!("drain timed out; closing remaining connections");
        }
    }
}

/// Accepts connections, each under a `MAX_CONNECTIONS` permit and a slot of
/// its address's `MAX_CONNECTIONS_PER_ADDRESS` (trusted proxies carry many
/// clients and take none), until the task is aborted (which closes the
/// listener).
async fn accept(listener: TcpListener, state: Arc<AppState>, shutdown: Shutdown) {
    let limits = &state.config.limits;
    let permits = Arc::new(Semaphore::new(connection_capacity(&state.config)));
    let per_address = Slots::<IpAddr>::new(limits.max_connections_per_address);
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection limit reached; refusing");
                    tokio::spawn(refuse(stream, Refusal::Full));
                    continue;
                };
                let address = peer.ip();
                let uncapped = limits.max_connections_per_address == 0;
                let slot = if uncapped || state.config.trusted_proxies.trusts(address) {
                    None
                } else if let Some(slot) = per_address.acquire(address) {
                    Some(slot)
                } else {
                    tracing::warn!(%peer, "connection limit of the address reached; refusing");
                    tokio::spawn(refuse(stream, Refusal::AddressFull));
                    continue;
                };
                let permit = Arc::new(ConnectionPermit::new(permit, slot));
                tokio::spawn(serve_connection(
                    state.clone(),
                    stream,
                    peer.ip(),
                    shutdown.clone(),
                    permit,
                ));
            }
            Err(error) => {
                tracing::warn!(%error, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// How many connections [`accept`] takes at once (see [`capacity`]), said in
/// the log when the open-file limit sets it: it lowers `MAX_CONNECTIONS`, or
/// `MAX_CONNECTIONS=0` leaves the cap to it (none when the limit is unknown).
fn connection_capacity(config: &Config) -> usize {
    let open_files = socket_options::open_files_limit();
    let capacity = capacity::connections_that_fit(config, open_files);
    let wanted = config.limits.max_connections;
    // The capacity falls below `wanted` only when the limit is known.
    if open_files.is_some() && (wanted == 0 || capacity < wanted) {
        let said = match wanted {
            0 => {
                "MAX_CONNECTIONS=0: connections capped by what the open-file limit leaves room for"
            }
            _ => "MAX_CONNECTIONS lowered to what the open-file limit leaves room for",
        };
        tracing::info!(max_connections = wanted, capacity, open_files, "{said}");
    }
    capacity
}

/// Why a connection is refused at accept.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// `MAX_CONNECTIONS` are open.
    Full,
    /// Its address holds `MAX_CONNECTIONS_PER_ADDRESS`.
    AddressFull,
}

/// Runs one HTTP/1.1 connection until it ends or shutdown asks it to finish.
async fn serve_connection(
    state: Arc<AppState>,
    stream: TcpStream,
    peer: std::net::IpAddr,
    mut shutdown: Shutdown,
    permit: Arc<ConnectionPermit>,
) {
    crate::net::socket_options::set_nodelay_unless_inherited(&stream);
    let state_header_timeout = state.config.limits.header_read_timeout;
    let for_requests = shutdown.clone();
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let (state, shutdown) = (state.clone(), for_requests.clone());
        request.extensions_mut().insert(permit.clone());
        async move {
            let response = crate::net::serve::serve(&state, request, &shutdown, peer).await;
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state_header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_connection_end(result),
        () = shutdown.recv() => {
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await);
        }
    }
}

/// Over a connection limit: a 503 (the server's) or a 429 (the address's)
/// and a close, instead of a silent reset.
async fn refuse(mut stream: TcpStream, why: Refusal) {
    use tokio::io::AsyncWriteExt;
    let (status, body) = match why {
        Refusal::Full => (
            "503 Service Unavailable",
            r#"{"detail":"Too many connections, retry shortly."}"#,
        ),
        Refusal::AddressFull => (
            "429 Too Many Requests",
            r#"{"detail":"Too many connections from your address."}"#,
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(response.as_bytes()),
    )
    .await;
    let _ = stream.shutdown().await;
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::listen;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn connections_are_accepted_with_their_first_bytes_and_without_nagle() {
        let listener = listen("127.0.0.1:0".parse().unwrap(), Duration::from_secs(5)).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(early.is_err(), "accepted before the client sent anything");

        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (accepted, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("accepted once its first bytes arrived")
            .unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY comes from the listener"
        );
        let mut first = [0u8; 16];
        assert_eq!(
            accepted.try_read(&mut first).unwrap(),
            16,
            "the first read finds the request"
        );
    }
}
