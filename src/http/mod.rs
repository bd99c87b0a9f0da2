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
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use response::Body;
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
    request.extensions_mut().insert(ClientAddr(peer));
    let started = Instant::now();
    let method = request.method().clone();
    let resolved = router::Route::resolve(request.uri().path());
    let route = resolved.map_or("unknown", router::Route::name);
    let headers = request.headers();
    let request_id = request_id(headers);
    let origin = state.cors.allowed_origin(headers).cloned();
    let refused = state.cors.preflight(&method, headers).or_else(|| {
        let allowed = host_allowed(&state.config.allowed_hosts, headers);
        (!allowed).then(|| ApiError::DisallowedHost.into_response())
    });
    let span = tracing::info_span!("request", id = %request_id, %method, route);
    let mut response = match refused {
        Some(response) => response,
        None => router::dispatch(state, resolved, request, shutdown)
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
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    span.in_scope(|| {
        tracing::debug!(
            status,
            micros = started.elapsed().as_micros() as u64,
            "request done"
        )
    });
    response
}

/// The address of the client's TCP connection (a proxy's, behind one).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The client address of a request.
pub fn client_addr<B>(request: &Request<B>) -> std::net::IpAddr {
    request
        .extensions()
        .get::<ClientAddr>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0)
}

/// The client's request id when it sent a sane one, else a fresh one.
fn request_id(headers: &hyper::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| crate::auth::random_hex(8), str::to_owned)
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
