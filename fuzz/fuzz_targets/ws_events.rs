//! The WebSocket event decoder: the bytes of two text frames, decoded by one
//! parser as a session does (whatever the first leaves in its buffers, the
//! second must decode as it would alone). Never a panic; an event that is
//! accepted holds no text the store cannot keep.
#![no_main]

use chat_server::json::Parser;
use chat_server::ws::protocol::{decode, ClientEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = chat_server::Config::from_vars([("SECRET_KEY".into(), "k".into())].into())
        .expect("a valid configuration")
        .limits;
    let split = data.iter().position(|b| *b == 0xff).unwrap_or(data.len());
    let (first, second) = data.split_at(split);
    let mut reused = Parser::default();
    let _ = decode(&mut reused, &mut first.to_vec(), &limits);
    let again = decode(&mut reused, &mut second.to_vec(), &limits);
    let alone = decode(&mut Parser::default(), &mut second.to_vec(), &limits);
    assert_eq!(
        again.is_ok(),
        alone.is_ok(),
        "a reused parser decodes as a fresh one"
    );
    if let Ok(ClientEvent::Send { input, .. }) = again {
        assert!(!input.content.contains('\0'));
        assert!(!input.metadata.contains("\\u0000"));
        assert!(input.client_msg_id.map_or(true, |id| !id.contains('\0')));
    }
});
