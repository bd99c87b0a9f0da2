//! The HTTP vocabulary both edges speak (the REST API and the WebSocket
//! handshake): reading bodies ([`body`]) and query strings ([`query`]),
//! building responses ([`response`]), errors as DRF-style replies
//! ([`error`]), CORS ([`cors`]) and what a request knows of its connection
//! ([`connection`]). Serving connections and routing live in [`crate::net`].

pub mod body;
pub mod connection;
pub mod cors;
pub mod error;
pub mod query;
pub mod response;
