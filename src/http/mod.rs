//! HTTP: the hyper service every connection runs. It checks the `Host` header
//! against `ALLOWED_HOSTS`, answers CORS preflights, hands the request to the
//! router and turns its error, if any, into the response.

pub mod body;
pub mod cors;
pub mod input;
pub mod query;
pub mod response;
pub mod router;

use crate::error::ApiError;
use crate::shutdown::Shutdown;
use crate::state::AppState;
use hyper::body::Incoming;
use hyper::{Request, Response};
use response::Body;
use std::sync::Arc;
use std::time::Instant;

/// Serves one request; never fails (errors are responses).
pub async fn serve(
    state: &Arc<AppState>,
    request: Request<Incoming>,
    shutdown: &Shutdown,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let mut response = if let Some(preflight) = state.cors.preflight(&method, &headers) {
        preflight
    } else if !host_allowed(&state.config.allowed_hosts, &headers) {
        ApiError::DisallowedHost.into_response()
    } else {
        router::dispatch(state, request, shutdown)
            .await
            .unwrap_or_else(ApiError::into_response)
    };
    state.cors.decorate(&headers, &mut response);
    tracing::debug!(%method, %path, status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64, "request");
    response
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
    let host = strip_port(host).to_ascii_lowercase();
    allowed.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('.') {
            Some(domain) => host == domain || host.ends_with(&pattern),
            None => host == pattern,
        }
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}
