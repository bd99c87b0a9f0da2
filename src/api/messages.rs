//! `GET` (history) and `POST` (send) on `/api/chat/chats/{id}/messages/`.

use super::pagination::{HistoryRequest, Plan};
use crate::error::ApiError;
use crate::http::body::RawBody;
use crate::http::input::{Fields, Text};
use crate::http::query::Query;
use crate::http::response::{created, ok, Body};
use crate::model::Message;
use crate::state::AppState;
use crate::store::{AppendOutcome, NewMessage};
use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Request, Response};
use serde::Serialize;

/// Longest accepted `client_msg_id`.
const MAX_CLIENT_MSG_ID_CHARS: usize = 100;

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
    let access = super::participant_access(state, chat_id, me).await?;
    let plan = wanted.plan(access.last_seq)?;
    let results = if plan.seqs.is_empty() {
        Vec::new()
    } else {
        let (from, to) = (*plan.seqs.start(), *plan.seqs.end());
        state.store.messages_between(chat_id, from, to).await?
    };
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
    let sender = super::current_user(state, request.headers()).await?;
    super::participant_access(state, chat_id, sender.id).await?;
    let limits = &state.config.limits;
    let mut body = RawBody::read(request, limits.max_body_bytes).await?;
    let value = body.object()?;
    let mut fields = Fields::new(&value);
    let content = fields.text("content", Text::required(limits.max_content_chars));
    let metadata = fields.json(
        "metadata",
        "{}",
        limits.max_metadata_bytes,
        limits.max_metadata_depth,
    );
    let client_msg_id = fields
        .text("client_msg_id", Text::optional(MAX_CLIENT_MSG_ID_CHARS))
        .filter(|id| !id.is_empty());
    fields.finish()?;
    let (Some(content), Some(metadata)) = (content, metadata) else {
        return Err(ApiError::Internal("validated fields missing".into()));
    };
    let outcome = state
        .pipeline
        .send(NewMessage {
            chat_id,
            sender,
            content,
            metadata,
            client_msg_id,
        })
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
