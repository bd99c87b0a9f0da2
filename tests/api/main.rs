//! Integration tests: the real server on port 0, a fresh PostgreSQL database per
//! test, a real HTTP client. One test binary so it links once.

mod accounts;
mod attacks;
mod auth;
mod bad_input;
mod bus_liveness;
mod chats;
mod cluster;
mod django_cutover;
mod faults;
mod helpers;
mod history_cache;
mod hostile;
mod http;
mod limits;
mod messages;
mod postgres_replication;
mod redis_cluster;
mod relay;
mod schema;
mod store_ceiling_table;
mod store_conformance;
mod tls;
mod user_socket;
mod users;
mod ws;
mod ws_client;
mod zero_config;
