//! The demo web client served at `/`: one static page (no build step, no external
//! assets) to register, find someone, start a chat and talk live, showing each
//! message's `seq` and resuming with `after_seq` after a disconnect.

use crate::http::response::Body;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;

const PAGE: &str = include_str!("../../static/index.html");

pub fn page() -> Response<Body> {
    let mut response = Response::new(Body::from(PAGE));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
