//! Static documents: the demo web client at `/` (one page, no build step, no
//! external assets: register, find someone, chat live, see each `seq`, resume
//! with `after_seq`) and the OpenAPI 3.1 description at `/api/schema/`.

use crate::http::response::Body;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;

const PAGE: &str = include_str!("../../static/index.html");
const SCHEMA: &str = include_str!("../../static/openapi.json");

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

/// The OpenAPI 3.1 document of the REST API.
pub fn schema() -> Response<Body> {
    let mut response = Response::new(Body::from(SCHEMA));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
