//! Query strings and the history parameters read from them: never a panic,
//! and a rewritten query reads back what was put in.
#![no_main]

use chat_server::api::pagination::HistoryRequest;
use chat_server::config::Paging;
use chat_server::http::query::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let query = Query::parse(Some(raw));
    for key in [
        "page",
        "page_size",
        "after_seq",
        "before_seq",
        "limit",
        "q",
        "token",
    ] {
        let _ = query.get(key);
    }
    let rewritten = query.with(&[("page", Some("7".into())), ("q", None)]);
    let reread = Query::parse(Some(&rewritten));
    assert_eq!(reread.get("page"), Some("7"), "{rewritten}");
    assert_eq!(reread.get("q"), None, "{rewritten}");
    let paging = Paging {
        default_page_size: 25,
        max_page_size: 100,
        history_cache_bytes: 0,
    };
    if let Ok(request) = HistoryRequest::parse(&query, paging) {
        for last_seq in [0, 1, 1_000, i64::MAX / 2, i64::MAX] {
            let _ = request.plan(last_seq);
        }
    }
});
