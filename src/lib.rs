//! chat-server: a drop-in, high-performance replacement for a Django + Channels
//! chat backend. The binary (`main.rs`) only parses the command line; everything
//! lives here so integration tests can start real servers on port 0.
//!
//! # The path of a message
//!
//! A client sends `{"type":"message.send",...}` on a WebSocket, or `POST`s to
//! `/api/chats/{id}/messages/`:
//!
//! 1. [`net`] accepted the TCP connection, serves it with hyper, and routes the
//!    request ([`net::routes`]) to a REST handler in [`api`] or to the
//!    WebSocket [`ws::handshake()`], which upgrades it into a [`ws::session`].
//! 2. The edge asks [`app::access`] who the user is and whether they take part
//!    in the chat, and reads the send with [`input`]'s rules into a
//!    [`input::message::MessageInput`].
//! 3. The input goes to [`delivery::pipeline`], the group-commit writer: one
//!    statement appends a whole batch to the [`store`] (PostgreSQL or the
//!    embedded SQLite store), giving each message its chat's next `seq`.
//! 4. Once the batch is committed, each message is encoded once
//!    ([`delivery::events`]) and handed to [`delivery::rooms`], which queues the
//!    same bytes on every local socket of both participants that watches the
//!    chat (user sockets watch all of their user's chats), and to
//!    [`delivery::bus`], which publishes it (signed) on each participant's
//!    channel to the other nodes' rooms over Redis.
//! 5. Each session writes its queue to its socket in `seq` order per chat
//!    ([`ws::transport`]), filling any gap from the store; the sender gets its
//!    echo or its `201`.
//!
//! Reads take the same way down: history pages through [`cache::history`]
//! to the store, the chat list straight from it.
//!
//! # Layers
//!
//! Each layer uses only the layers below it (`scripts/layers.py` checks this):
//!
//! | layer | modules | job |
//! |---|---|---|
//! | commands | [`django`] | `import-django`: the Django backend's data moved in |
//! | network | [`net`] | listen, accept, serve connections, route requests |
//! | edges | [`api`], [`ws`] | the REST API; WebSocket handshake, sessions, transport |
//! | node | [`app`] | the node's parts, built once, and the access checks |
//! | input | [`input`] | validating what clients send |
//! | HTTP | [`http`] | bodies, queries, responses, errors, CORS |
//! | delivery | [`delivery`] | group-commit writer, room map, bus, events |
//! | caches | [`cache`] | history JSON, confirmed memberships |
//! | storage | [`store`] | the `Store` trait; `postgres/` and `sqlite/` |
//! | auth | [`auth`] | JWTs and password hashes |
//! | foundation | [`config`], [`model`], [`json`], [`digest`], [`metrics`], [`ratelimit`], [`remembered`], [`shutdown`], [`telemetry`], [`tls_files`], [`allocator`], [`fast_maps`] | used by all, using none of the above |

pub mod allocator;
pub mod api;
pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod delivery;
pub mod digest;
pub mod django;
pub mod fast_maps;
pub mod http;
pub mod input;
pub mod json;
pub mod metrics;
pub mod model;
pub mod net;
pub mod ratelimit;
pub mod remembered;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tls_files;
pub mod ws;

pub use config::Config;
pub use net::Application;

#[cfg(test)]
mod fuzz_tests;
