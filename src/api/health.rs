//! `/healthz` (the process answers), `/readyz` (can it serve: the store
//! answers; the bus state is reported) and `/metrics` (Prometheus text). A node whose Redis is down still stores
//! and delivers to its own sockets, so it stays ready and says `degraded`;
//! only an unreachable store makes it unready (503).

use crate::app::AppState;
use crate::http::response::{json_response, ok, Body};
use hyper::{Response, StatusCode};
use serde_json::json;
use std::time::Duration;

pub fn healthz() -> Response<Body> {
    ok(&json!({"status": "ok"}))
}

pub async fn readyz(state: &AppState) -> Response<Body> {
    let store = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        // The cause is for the operator's log, not the public: it can name
        // hosts, users and databases.
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the store does not answer");
            "unavailable".to_owned()
        }
        Err(_) => {
            tracing::warn!("readiness: the store did not answer within 2 s");
            "timed out".to_owned()
        }
    };
    let bus = match (
        state.delivery.bus.is_distributed(),
        state.delivery.bus.is_healthy(),
    ) {
        (false, _) => "local",
        (true, true) => "ok",
        (true, false) => "disconnected",
    };
    let (status, code) = match (store.as_str(), bus) {
        ("ok", "disconnected") => ("degraded", StatusCode::OK),
        ("ok", _) => ("ready", StatusCode::OK),
        _ => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
    };
    json_response(code, &json!({"status": status, "store": store, "bus": bus}))
}

/// `/metrics` in the Prometheus text format.
pub fn metrics(state: &AppState) -> Response<Body> {
    let mut response = Response::new(Body::from(state.metrics.render()));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
