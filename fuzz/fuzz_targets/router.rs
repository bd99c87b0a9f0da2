//! The router's path parsing: never a panic, ids are positive, and every
//! route that resolves has a name and allowed methods.
#![no_main]

use chat_server::net::routes::Route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(route) = Route::resolve(path) {
        assert!(!route.name().is_empty());
        assert!(!route.allowed().is_empty());
        if let Route::Messages(id) | Route::ChatSocket(id) = route {
            assert!(id > 0, "{path}");
        }
    }
});
