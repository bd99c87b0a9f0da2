//! Static documents: the demo web client at `/` (one page, no external assets:
//! register, find someone, chat live on the user socket), the TypeScript
//! client it runs on at `/chat-client.js` (bundled from `clients/js` by its
//! `npm run build`, kept in `static/` so building the server needs no Node),
//! and the OpenAPI 3.1 description at `/api/schema/`.

use crate::http::response::Body;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;

const PAGE: &str = include_str!("../../static/index.html");
const SCHEMA: &str = include_str!("../../static/openapi.json");
const CLIENT_SCRIPT: &str = include_str!("../../static/chat-client.js");

/// The demo page.
pub fn page() -> Response<Body> {
    revalidated(PAGE, "text/html; charset=utf-8")
}

/// The client package as one ES module, for the demo page (and anyone's).
pub fn client_script() -> Response<Body> {
    revalidated(CLIENT_SCRIPT, "text/javascript; charset=utf-8")
}

/// The OpenAPI 3.1 document of the REST API.
pub fn schema() -> Response<Body> {
    let mut response = Response::new(Body::from(SCHEMA));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A document a browser must check again before reusing (`no-cache`): the
/// page and its script change together when the server is upgraded.
fn revalidated(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
