//! chat-server: a drop-in, high-performance replacement for a Django + Channels
//! chat backend. The binary (`main.rs`) only parses the command line; everything
//! lives here so integration tests can start real servers on port 0.
//!
//! Request flow: [`server`] accepts → [`http`] routes → [`api`] handlers →
//! [`pipeline`] (sends) / [`store`] (reads) → PostgreSQL.

pub mod allocator;
pub mod api;
pub mod auth;
pub mod batched;
pub mod bus;
pub mod config;
pub mod digest;
pub mod draft;
pub mod error;
pub mod history_cache;
pub mod http;
pub mod json;
pub mod members;
pub mod memo;
pub mod metrics;
pub mod model;
pub mod os;
pub mod pipeline;
pub mod ratelimit;
pub mod read_markers;
pub mod rooms;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ws;

pub use config::Config;
pub use server::Application;

#[cfg(test)]
mod fuzz_tests;
