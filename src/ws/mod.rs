//! Real-time delivery over WebSocket, in the order a socket lives:
//! [`mod@handshake`] checks and upgrades the request, [`session`] runs the socket
//! (client events in, room deliveries out, in `seq` order, under deadlines),
//! and [`transport`] moves frames over the TCP stream. [`protocol`] reads the
//! client's events; the events the server sends are encoded in
//! [`crate::delivery::events`], shared with the writer.

pub mod handshake;
pub mod protocol;
pub mod session;
pub mod transport;

pub use handshake::{handshake, user_handshake};
