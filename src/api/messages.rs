//! `GET` (history) and `POST` (send) on `/api/chat/chats/{id}/messages/`.

use super::pagination::{HistoryRequest, Plan};
use crate::app::access;
use crate::app::AppState;
use crate::cache::history::HistoryCache;
use crate::cache::memberships::Member;
use crate::http::body::RawBody;
use crate::http::error::ApiError;
use crate::http::query::Query;
use crate::http::response::{json_bytes, Body};
use crate::input::fields::Fields;
use crate::input::message::MessageInput;
use crate::json;
use crate::model::{Message, User};
use crate::store::{AppendOutcome, HistoryRead, SeqRun};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HOST};
use hyper::{Request, Response, StatusCode};
use std::ops::RangeInclusive;
use std::sync::Arc;

/// A page of history, oldest-first within the page, in DRF's paginated
/// envelope. Messages this node has cached come from the cache; the store is
/// asked for the chat and the rest (see [`crate::cache::history`]).
pub async fn history(
    state: &AppState,
    request: Request<Incoming>,
    chat_id: i64,
) -> Result<Response<Body>, ApiError> {
    let me = access::authenticate(state, request.headers())?;
    let query = Query::parse(request.uri().query());
    let wanted = HistoryRequest::parse(&query, state.config.paging)?;
    let read = HistoryRead {
        chat_id,
        reader: me,
        window: wanted.window(),
        held: state.reads.history_cache.held(chat_id),
    };
    let page = match read_page(state, read, wanted).await? {
        Some(page) => page,
        // The cache dropped its part while the store was read: read it all.
        None => {
            let whole = HistoryRead {
                held: SeqRun::EMPTY,
                ..read
            };
            read_page(state, whole, wanted)
                .await?
                .ok_or(ApiError::Internal(
                    "a page read in full needs no cache".into(),
                ))?
        }
    };
    let base = absolute_path(&request);
    let link = |changes: Vec<(&str, Option<String>)>| {
        let query = query.with(&changes);
        if query.is_empty() {
            base.clone()
        } else {
            format!("{base}?{query}")
        }
    };
    let Plan { next, previous, .. } = page.plan;
    let body = encode_page(
        page.last_seq,
        next.map(link),
        previous.map(link),
        &page.results,
    );
    Ok(json_bytes(StatusCode::OK, body))
}

/// A page read: the chat's newest `seq`, the plan it gave, the messages' JSON.
struct Page {
    last_seq: i64,
    plan: Plan,
    results: Vec<Bytes>,
}

/// One round trip for the chat and what the cache lacks (one statement with
/// the other reads waiting), then the page; `None` when the cache no longer
/// has its part.
async fn read_page(
    state: &AppState,
    read: HistoryRead,
    wanted: HistoryRequest,
) -> Result<Option<Page>, ApiError> {
    let history = state.reads.histories.ask(read).await?;
    let access = access::admitted(history.as_ref().map(|h| h.access), read.reader)?;
    let plan = wanted.plan(access.last_seq)?;
    let stored = history.map(|h| h.messages).unwrap_or_default();
    let Some(results) = assemble(
        &state.reads.history_cache,
        read.chat_id,
        &plan.seqs,
        &stored,
    ) else {
        return Ok(None);
    };
    let metrics = &state.metrics;
    metrics.history_messages_stored.inc_by(stored.len() as u64);
    let cached = results.len().saturating_sub(stored.len());
    metrics.history_messages_cached.inc_by(cached as u64);
    Ok(Some(Page {
        last_seq: access.last_seq,
        plan,
        results,
    }))
}

/// The page's messages as JSON: the ones before the store's first come from
/// the cache (`None` if it lacks any); a whole, consecutive page is remembered.
fn assemble(
    cache: &HistoryCache,
    chat_id: i64,
    seqs: &RangeInclusive<i64>,
    stored: &[Message],
) -> Option<Vec<Bytes>> {
    let store_from = stored.first().map_or(seqs.end() + 1, |message| message.seq);
    let mut page = cache.take(chat_id, *seqs.start()..=store_from - 1)?;
    // Boxed first: the encoder's spare capacity would stay allocated for as
    // long as the cache holds the message, uncounted by its budget.
    page.extend(
        stored
            .iter()
            .map(|message| Bytes::from(message_json(message).into_boxed_slice())),
    );
    let consecutive = stored
        .iter()
        .zip(store_from..)
        .all(|(message, seq)| message.seq == seq);
    let whole = seqs.clone().count() == page.len();
    if consecutive && whole {
        cache.remember(chat_id, *seqs.start(), &page);
    }
    Some(page)
}

/// A message's JSON, sized for its variable parts.
fn message_json(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + message.content.len() + message.metadata.get().len());
    message.append_json(&mut out);
    out
}

/// DRF's paginated envelope, `{"count","next","previous","results"}`, around
/// results already encoded (the bytes `serde_json` would write for the struct).
pub fn encode_page(
    count: i64,
    next: Option<String>,
    previous: Option<String>,
    results: &[Bytes],
) -> Vec<u8> {
    let links = next.as_ref().map_or(4, String::len) + previous.as_ref().map_or(4, String::len);
    let size = results.iter().map(|r| r.len() + 1).sum::<usize>() + links + 64;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"count\":");
    json::append(&mut out, &count);
    out.extend_from_slice(b",\"next\":");
    json::append(&mut out, &next);
    out.extend_from_slice(b",\"previous\":");
    json::append(&mut out, &previous);
    out.extend_from_slice(b",\"results\":[");
    for (index, result) in results.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(result);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Sends a message: 201 with it, or 200 with the original when `client_msg_id`
/// was already used for this chat by this sender.
pub async fn send(
    state: &AppState,
    request: Request<Incoming>,
    chat_id: i64,
) -> Result<Response<Body>, ApiError> {
    let me = access::authenticate(state, request.headers())?;
    let sends = &state.limiters.sends;
    sends.check_user(me).map_err(ApiError::Throttled)?;
    let (sender, audience) = confirmed_sender(state, me, chat_id).await?;
    let limits = &state.config.limits;
    let mut body = RawBody::read(request, limits).await?;
    let value = body.object()?;
    let mut fields = Fields::new(&value);
    let input = MessageInput::read(&mut fields, limits);
    fields.finish()?;
    let input = input.ok_or(ApiError::Internal("validated fields missing".into()))?;
    let outcome = match state
        .delivery
        .pipeline
        .send(input.into_message(chat_id, sender), audience)
        .await
    {
        Ok(outcome) => outcome,
        Err(error) => return Err(explain_failed_send(state, me, chat_id, error.into()).await),
    };
    match outcome {
        AppendOutcome::Created(message) => Ok(json_bytes(StatusCode::CREATED, message.to_json())),
        AppendOutcome::Duplicate(message) => Ok(json_bytes(StatusCode::OK, message.to_json())),
    }
}

/// The sender and the chat's participants, once the sender is known to take
/// part in the chat: from this node's memory of confirmed memberships, else
/// from the store (and then remembered).
async fn confirmed_sender(
    state: &AppState,
    me: i64,
    chat_id: i64,
) -> Result<(Arc<User>, [i64; 2]), ApiError> {
    if let Some(member) = state.reads.memberships.get(me, chat_id) {
        return Ok((member.user.clone(), member.participants));
    }
    let (user, access) = access::member_of(state, me, chat_id).await?;
    let user = Arc::new(user);
    let member = Member {
        user: user.clone(),
        participants: access.participants,
    };
    state.reads.memberships.remember(chat_id, Arc::new(member));
    Ok((user, access.participants))
}

/// A send the store refused may have come through a remembered membership
/// whose user or chat has since been deleted (directly in the database; the API
/// deletes neither): forget it and ask the store, so the client gets 401/404
/// rather than a server error, and later sends are checked again.
async fn explain_failed_send(state: &AppState, me: i64, chat_id: i64, error: ApiError) -> ApiError {
    if state.reads.memberships.forget(me, chat_id) {
        if let Err(refusal) = access::member_of(state, me, chat_id).await {
            return refusal;
        }
    }
    error
}

/// `http(s)://host/path` of the request, for DRF's absolute pagination links.
fn absolute_path(request: &Request<Incoming>) -> String {
    // A constant name: looking a header up by `&str` parses the name first.
    const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let headers = request.headers();
    let scheme = headers
        .get(FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v == "https")
        .unwrap_or("http");
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let path = request.uri().path();
    let mut url = String::with_capacity(scheme.len() + 3 + host.len() + path.len());
    for part in [scheme, "://", host, path] {
        url.push_str(part);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use serde::Serialize;

    /// The envelope as `serde_json` writes it, the reference for [`encode_page`].
    #[derive(Serialize)]
    struct HistoryPage {
        count: i64,
        next: Option<String>,
        previous: Option<String>,
        results: Vec<Message>,
    }

    fn message(seq: i64) -> Message {
        let sender = User {
            id: 3,
            email: "a\"b@example.com".into(),
            full_name: "Zoë \\ Ω".into(),
            nickname: None,
        };
        Message {
            id: 100 + seq,
            chat: 9,
            seq,
            sender: Arc::new(sender),
            content: format!("line {seq}\n\u{1F600}"),
            metadata: serde_json::value::RawValue::from_string(r#"{"k": [1, "x"]}"#.into())
                .unwrap(),
            client_msg_id: (seq % 2 == 0).then(|| format!("c{seq}")),
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn the_page_envelope_is_what_serde_writes() {
        let links = [
            (None, None),
            (Some("http://h/p?page=2&q=\"x\"".to_string()), None),
            (Some("http://h/a".into()), Some("http://h/b?page=1".into())),
        ];
        for (count, (next, previous)) in [0, 3, 123_456].into_iter().zip(links) {
            let messages: Vec<Message> = (1..=count.min(3)).map(message).collect();
            let encoded: Vec<Bytes> = messages
                .iter()
                .map(|m| Bytes::from(json::encode(m)))
                .collect();
            let reference = json::encode(&HistoryPage {
                count,
                next: next.clone(),
                previous: previous.clone(),
                results: messages,
            });
            let ours = encode_page(count, next, previous, &encoded);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(reference).unwrap()
            );
        }
    }

    #[test]
    fn a_page_takes_what_the_store_left_out_from_the_cache() {
        let cache = HistoryCache::new(1 << 20, 100);
        let all: Vec<Message> = (1..=10).map(message).collect();
        let bytes = |range: std::ops::Range<usize>| -> Vec<Bytes> {
            all[range]
                .iter()
                .map(|m| Bytes::from(json::encode(m)))
                .collect()
        };
        // Nothing cached: the store returned the whole page, now remembered.
        assert_eq!(assemble(&cache, 9, &(3..=6), &all[2..6]), Some(bytes(2..6)));
        assert_eq!(cache.held(9), SeqRun { first: 3, last: 6 });
        // Cached 3..=6, the store returned 7..=8 only.
        assert_eq!(assemble(&cache, 9, &(5..=8), &all[6..8]), Some(bytes(4..8)));
        assert_eq!(cache.held(9), SeqRun { first: 3, last: 8 });
        // All of it cached, the store returned nothing.
        assert_eq!(assemble(&cache, 9, &(3..=8), &[]), Some(bytes(2..8)));
        // A part the cache does not have: the caller must read again in full.
        assert_eq!(assemble(&cache, 9, &(1..=4), &[]), None);
        assert_eq!(assemble(&cache, 9, &(9..=10), &all[9..10]), None);
        // An empty page.
        assert_eq!(
            assemble(&cache, 9, &RangeInclusive::new(1, 0), &[]),
            Some(Vec::new())
        );
    }
}
