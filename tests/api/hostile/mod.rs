//! Hostile input and faults, round two: text the store cannot hold, clients
//! behind proxies, abandoned handshakes, floods of cheap events, slow bodies,
//! catch-up memory, forged bus events and exposed secrets. Each test fails
//! without the fix it covers.

mod text;
