//! Delivery: from an accepted send to every socket that should see it.
//! [`pipeline`] is the group-commit writer (a batch of sends, one statement,
//! one event encoding per message); [`rooms`] is this node's room map, which
//! queues each message's bytes on every local socket watching its chat;
//! [`bus`] carries committed messages to the other nodes' room maps;
//! [`read_markers`] coalesces read markers; [`notices`] carries new chats,
//! read markers and typing to the rooms and the bus; [`events`] encodes what
//! sockets receive; [`send_holds`] keeps a socket's sends in order behind one
//! the pipeline could not store.
//!
//! Dependencies inside: the pipeline feeds the rooms and the bus, read
//! markers feed the notices, the notices feed the rooms and the bus; the bus
//! feeds the rooms; the rooms know none of them.

pub mod bus;
pub mod events;
pub mod notices;
pub mod pipeline;
pub mod read_markers;
pub mod rooms;
pub mod send_holds;
