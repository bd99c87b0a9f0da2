//! What a request carries about its connection, as request extensions: the
//! client's address (its own, or the one trusted proxies forwarded) and the
//! connection's place under the connection limits, which an upgraded socket
//! keeps for as long as it is open.

use crate::ratelimit::Slot;
use std::net::IpAddr;
use tokio::sync::OwnedSemaphorePermit;

/// The client's address: its TCP connection's, or behind trusted proxies
/// the one they forwarded (see [`crate::config::TrustedProxies`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The client address of a request.
pub fn client_addr<B>(request: &hyper::Request<B>) -> std::net::IpAddr {
    request
        .extensions()
        .get::<ClientAddr>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0)
}

/// A connection's place under `MAX_CONNECTIONS`, given back when the last
/// handle drops. Its connection task holds one and every request carries one
/// (as an extension), so a WebSocket session keeps the place for as long as its
/// upgraded socket is open.
pub struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
    _address: Option<Slot<IpAddr>>,
}

impl ConnectionPermit {
    /// A place under `MAX_CONNECTIONS`, and one of the address's places when
    /// its address is capped.
    pub fn new(permit: OwnedSemaphorePermit, address: Option<Slot<IpAddr>>) -> Self {
        ConnectionPermit {
            _permit: permit,
            _address: address,
        }
    }
}
