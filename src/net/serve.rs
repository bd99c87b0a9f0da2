//! The hyper service every request runs through. It checks the `Host` header
//! against `ALLOWED_HOSTS`, answers CORS preflights, hands the request to the
//! router and turns its error, if any, into the response.

use super::routes;
use crate::app::AppState;
use crate::http::connection::ClientAddr;
use crate::http::error::ApiError;
use crate::http::response::Body;
use crate::shutdown::Shutdown;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Serves one request; never fails (errors are responses). Each request gets an
/// id (the client's `X-Request-Id`, or a fresh one) that is logged and echoed.
pub async fn serve(
    state: &Arc<AppState>,
    mut request: Request<Incoming>,
    shutdown: &Shutdown,
    peer: std::net::IpAddr,
) -> Response<Body> {
    let client = state.config.trusted_proxies.client(peer, request.headers());
    request.extensions_mut().insert(ClientAddr(client));
    let started = Instant::now();
    let method = request.method().clone();
    let resolved = routes::Route::resolve(request.uri().path());
    let route = resolved.map_or("unknown", routes::Route::name);
    let headers = request.headers();
    let request_id = request_id(headers);
    let id = request_id.to_str().unwrap_or_default();
    let origin = state.cors.allowed_origin(headers).cloned();
    let refused = state.cors.preflight(&method, headers).or_else(|| {
        let allowed = host_allowed(&state.config.allowed_hosts, headers);
        (!allowed).then(|| ApiError::DisallowedHost.into_response())
    });
    let span = tracing::info_span!("request", id, %method, route);
    let mut response = match refused {
        Some(response) => response,
        None => routes::dispatch(state, resolved, request, shutdown)
            .instrument(span.clone())
            .await
            .unwrap_or_else(ApiError::into_response),
    };
    state.cors.decorate(origin, &mut response);
    let status = response.status().as_u16();
    state.metrics.http_request(route, status);
    if status == 429 {
        state.metrics.rate_limited.inc();
    }
    response.headers_mut().insert(X_REQUEST_ID, request_id);
    span.in_scope(|| {
        tracing::debug!(
            status,
            micros = started.elapsed().as_micros() as u64,
            "request done"
        )
    });
    response
}

/// A constant name: looking a header up or inserting it by `&str` parses the
/// name every time.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's request id when it sent a sane one (shared, not copied), else
/// a fresh one.
fn request_id(headers: &hyper::HeaderMap) -> HeaderValue {
    let sane = |v: &&HeaderValue| {
        let bytes = v.as_bytes();
        !bytes.is_empty() && bytes.len() <= 64 && bytes.iter().all(u8::is_ascii_graphic)
    };
    match headers.get(X_REQUEST_ID).filter(sane) {
        Some(theirs) => theirs.clone(),
        // Hex digits always make a valid value; "-" only to stay total.
        None => HeaderValue::from_str(&crate::digest::random_hex(8))
            .unwrap_or(HeaderValue::from_static("-")),
    }
}

/// Django's `ALLOWED_HOSTS`: `*`, an exact host, or `.example.com` for a domain and
/// its subdomains. The port is ignored.
fn host_allowed(allowed: &[String], headers: &hyper::HeaderMap) -> bool {
    if allowed.iter().any(|h| h == "*") {
        return true;
    }
    let Some(host) = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let host = strip_port(host);
    allowed
        .iter()
        .any(|pattern| match pattern.strip_prefix('.') {
            Some(domain) => {
                host.eq_ignore_ascii_case(domain) || ends_with_ignoring_case(host, pattern)
            }
            None => host.eq_ignore_ascii_case(pattern),
        })
}

/// `text.ends_with(suffix)`, ASCII letters compared without case (no copies).
fn ends_with_ignoring_case(text: &str, suffix: &str) -> bool {
    let (text, suffix) = (text.as_bytes(), suffix.as_bytes());
    text.len() >= suffix.len() && text[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}
