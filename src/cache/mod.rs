//! What a node remembers to skip repeated store work: stored messages' JSON
//! for history pages ([`history`]) and confirmed memberships for sends
//! ([`memberships`]). Both are bounded and only ever hold what the store already
//! said; losing either costs a query, never a wrong answer.

pub mod history;
pub mod memberships;
