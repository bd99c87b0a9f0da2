//! Delivery: from an accepted send to every socket that should see it.
//! [`pipeline`] is the group-commit writer (a batch of sends, one statement,
//! one event encoding per message); [`rooms`] is this node's room map, which
//! queues each message's bytes on every local socket watching its chat;
//! [`bus`] carries committed messages to the other nodes' room maps;
//! [`read_markers`] coalesces read markers the same way; [`events`] encodes
//! what sockets receive.
//!
//! Dependencies inside: the pipeline and read markers feed the rooms and the
//! bus; the bus feeds the rooms; the rooms know neither.

pub mod bus;
pub mod events;
pub mod pipeline;
pub mod read_markers;
pub mod rooms;
