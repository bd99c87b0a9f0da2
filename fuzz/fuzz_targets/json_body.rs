//! Request bodies: parsed in place and read the way the handlers read them.
//! Never a panic; what is accepted is valid JSON again when written out, and
//! holds no NUL.
#![no_main]

use chat_server::input::fields::{Fields, Text};
use chat_server::json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    let Ok(value) = json::parse(&mut bytes) else {
        return;
    };
    let _ = json::depth(&value);
    let text = json::to_text(&value);
    let mut again = text.clone().into_bytes();
    assert!(
        json::parse(&mut again).is_ok(),
        "written out, it parses: {text}"
    );
    let mut fields = Fields::new(&value);
    let content = fields.text("content", Text::required(100));
    let _ = fields.integer("user_id");
    let metadata = fields.json("metadata", "{}", 1_000, 8);
    assert!(content.map_or(true, |c| !c.contains('\0')));
    // No NUL once read back: the text may hold `\\u0000` (an escaped
    // backslash, then "u0000"), which is no NUL.
    if let Some(metadata) = metadata {
        let mut stored = metadata.into_bytes();
        let read_back = json::parse(&mut stored).expect("accepted metadata parses");
        assert!(!json::holds_nul(&read_back), "metadata holds a NUL");
    }
    let _ = fields.finish();
});
