//! Response builders. Every API response is JSON with `Content-Type:
//! application/json`; bodies are `Full<Bytes>` so a response is one write.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// The body type of every response this server builds.
pub type Body = Full<Bytes>;

/// A JSON response with the given status.
pub fn json_response<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Response<Body> {
    json_bytes(status, crate::json::encode(value))
}

/// A response from already-encoded JSON.
pub fn json_bytes(status: StatusCode, encoded: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(encoded)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 200 with a JSON body.
pub fn ok<T: serde::Serialize + ?Sized>(value: &T) -> Response<Body> {
    json_response(StatusCode::OK, value)
}

/// 201 with a JSON body.
pub fn created<T: serde::Serialize + ?Sized>(value: &T) -> Response<Body> {
    json_response(StatusCode::CREATED, value)
}
