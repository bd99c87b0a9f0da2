//! What clients send, read and validated by one set of rules for REST and
//! WebSocket alike: fields of a JSON object with Django REST Framework's
//! checks and messages ([`fields`]), and a message to send ([`message`]).

pub mod fields;
pub mod message;
