//! `GET` (history) and `POST` (send) on `/api/chat/chats/{id}/messages/`.

use super::pagination::{HistoryRequest, Plan};
use crate::draft::Draft;
use crate::error::ApiError;
use crate::http::body::RawBody;
use crate::http::input::Fields;
use crate::http::query::Query;
use crate::http::response::{created, ok, Body};
use crate::model::Message;
use crate::state::AppState;
use crate::store::{AppendOutcome, HistoryRead};
use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Request, Response};
use serde::Serialize;

/// DRF's paginated envelope.
#[derive(Serialize)]
struct HistoryPage {
    count: i64,
    next: Option<String>,
    previous: Option<String>,
    results: Vec<Message>,
}

/// A page of history, oldest-first within the page.
pub async fn history(
    state: &AppState,
    request: Request<Incoming>,
    chat_id: i64,
) -> Result<Response<Body>, ApiError> {
    let me = super::authenticate(state, request.headers())?;
    let query = Query::parse(request.uri().query());
    let wanted = HistoryRequest::parse(&query, state.config.paging)?;
    // One round trip: the chat, its participants and the page, resolved in the store.
    let read = HistoryRead {
        chat_id,
        reader: me,
        window: wanted.window(),
    };
    let history = state.histories.ask(read).await?;
    let access = super::admitted(history.as_ref().map(|h| h.access), me)?;
    let results = history.map(|h| h.messages).unwrap_or_default();
    let plan = wanted.plan(access.last_seq)?;
    let base = absolute_path(&request);
    let Plan { next, previous, .. } = plan;
    let link = |changes: Vec<(&str, Option<String>)>| {
        let query = query.with(&changes);
        if query.is_empty() {
            base.clone()
        } else {
            format!("{base}?{query}")
        }
    };
    Ok(ok(&HistoryPage {
        count: access.last_seq,
        next: next.map(link),
        previous: previous.map(link),
        results,
    }))
}

/// Sends a message: 201 with it, or 200 with the original when `client_msg_id`
/// was already used for this chat by this sender.
pub async fn send(
    state: &AppState,
    request: Request<Incoming>,
    chat_id: i64,
) -> Result<Response<Body>, ApiError> {
    let me = super::authenticate(state, request.headers())?;
    state.send_limiter.check(me).map_err(ApiError::Throttled)?;
    let (sender, _) = super::member_of(state, me, chat_id).await?;
    let limits = &state.config.limits;
    let mut body = RawBody::read(request, limits.max_body_bytes).await?;
    let value = body.object()?;
    let mut fields = Fields::new(&value);
    let draft = Draft::read(&mut fields, limits);
    fields.finish()?;
    let draft = draft.ok_or(ApiError::Internal("validated fields missing".into()))?;
    let outcome = state
        .pipeline
        .send(draft.into_message(chat_id, sender))
        .await?;
    match outcome {
        AppendOutcome::Created(message) => Ok(created(&message)),
        AppendOutcome::Duplicate(message) => Ok(ok(&message)),
        AppendOutcome::ClientIdConflict => Err(ApiError::field(
            "client_msg_id",
            "This client_msg_id was already used for a message in another chat.",
        )),
    }
}

/// `http(s)://host/path` of the request, for DRF's absolute pagination links.
fn absolute_path(request: &Request<Incoming>) -> String {
    let headers = request.headers();
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v == "https")
        .unwrap_or("http");
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}{}", request.uri().path())
}
