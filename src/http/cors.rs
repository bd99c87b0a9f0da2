//! CORS for the origins in `CORS_ALLOWED_ORIGINS` (`*` allows any): preflight
//! requests are answered here, and allowed origins are echoed on every response.

use super::response::Body;
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use hyper::{HeaderMap, Method, Response, StatusCode};

/// The allowed origins.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    pub fn new(origins: &[String]) -> Self {
        Cors {
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// The request's `Origin` when it is allowed.
    pub fn allowed_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(ORIGIN)?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins
            .iter()
            .any(|o| o == "*" || *o == text)
            .then_some(origin)
    }

    /// A preflight (`OPTIONS` with `Access-Control-Request-Method`) gets its answer
    /// here: 200 with the allow headers for an allowed origin, a bare 200 otherwise.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response<Body>> {
        if method != Method::OPTIONS || !headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
            return None;
        }
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::OK;
        if let Some(origin) = self.allowed_origin(headers) {
            let out = response.headers_mut();
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            out.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            out.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, x-request-id"),
            );
            out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        response
            .headers_mut()
            .insert(VARY, HeaderValue::from_static("Origin"));
        Some(response)
    }

    /// Adds the CORS headers to an ordinary response.
    /// `origin` is the request's allowed origin ([`Cors::allowed_origin`]), if any.
    pub fn decorate(&self, origin: Option<HeaderValue>, response: &mut Response<Body>) {
        if self.origins.is_empty() {
            return;
        }
        let out = response.headers_mut();
        out.insert(VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = origin {
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}
