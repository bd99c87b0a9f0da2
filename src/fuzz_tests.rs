//! Property tests over the parsers that see untrusted input first: the WebSocket
//! event decoder, the router's path parsing, the query-string parser and JSON
//! body handling. Whatever the bytes, they return a value or an error; they never
//! panic.

use crate::config::Config;
use crate::http::query::Query;
use crate::input::fields::{Fields, Text};
use crate::json;
use crate::net::routes::Route;
use crate::ws::protocol;
use proptest::prelude::*;

fn limits() -> crate::config::Limits {
    Config::from_vars([("SECRET_KEY".to_string(), "k".to_string())].into())
        .unwrap()
        .limits
}

/// JSON-looking text: brackets, quotes, escapes, numbers, keywords and noise.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(":".to_string()),
        Just(",".to_string()),
        Just("\"type\"".to_string()),
        Just("\"message.send\"".to_string()),
        Just("\"content\"".to_string()),
        Just("\"metadata\"".to_string()),
        Just("\"seq\"".to_string()),
        Just("\"read\"".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("\"\\u0000\\\"\"".to_string()),
        "-?[0-9]{1,25}(\\.[0-9]{1,5})?(e[+-]?[0-9]{1,4})?",
        "\"[^\"\\\\]{0,12}\"",
        ".{0,4}",
    ];
    proptest::collection::vec(token, 0..64).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_event_decoder_never_panics(text in jsonish(), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let limits = limits();
        // One parser for both, as a socket reuses it: whatever the first left
        // in its buffers, the second must not panic either.
        let mut parser = json::Parser::default();
        let _ = protocol::decode(&mut parser, &mut text.clone().into_bytes(), &limits);
        let _ = protocol::decode(&mut parser, &mut bytes.clone(), &limits);
    }

    #[test]
    fn json_bodies_never_panic(text in jsonish()) {
        exercise_fields(text.into_bytes());
    }

    #[test]
    fn paths_never_panic_and_ids_are_positive(path in "(/[a-z0-9%+.-]{0,12}){0,7}/?", noise in ".{0,40}") {
        for candidate in [path.as_str(), noise.as_str()] {
            if let Some(Route::Messages(id) | Route::ChatSocket(id)) = Route::resolve(candidate) {
                prop_assert!(id > 0);
            }
        }
    }

    #[test]
    fn query_strings_never_panic(raw in ".{0,80}", key in "[a-z_]{1,10}") {
        let query = Query::parse(Some(&raw));
        let _ = query.get(&key);
        let _ = query.with(&[("page", Some("2".into())), (key.as_str(), None)]);
        let paging = crate::config::Paging {
            default_page_size: 25,
            max_page_size: 100,
            history_cache_bytes: 0,
        };
        if let Ok(request) = crate::api::pagination::HistoryRequest::parse(&query, paging) {
            let _ = request.plan(1_000);
            let _ = request.plan(0);
            let _ = request.plan(i64::MAX / 2);
        }
    }
}

/// Parses a body and reads fields out of it the way the handlers do.
fn exercise_fields(mut bytes: Vec<u8>) {
    let Ok(value) = json::parse(&mut bytes) else {
        return;
    };
    let _ = json::depth(&value);
    let _ = json::to_text(&value);
    let mut fields = Fields::new(&value);
    let _ = fields.text("content", Text::required(10));
    let _ = fields.integer("user_id");
    let _ = fields.json("metadata", "{}", 100, 4);
    let _ = fields.finish();
}
