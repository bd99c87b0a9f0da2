//! REST handlers, one file per resource. Each takes the shared state and the
//! request and returns `Result<Response, ApiError>`; the access checks they
//! share live in [`crate::app::access`].

pub mod auth;
pub mod chats;
pub mod demo;
pub mod health;
pub mod messages;
pub mod pagination;
pub mod users;
