//! Per-request work of an authenticated REST read, the old way next to the new
//! way in one run: verifying the access token in full against recalling a
//! token verified before, and encoding a 25-message history page from stored
//! rows against joining the messages' cached JSON.
//!
//! Run: `cargo bench --bench requests`

use bytes::Bytes;
use chat_server::auth::jwt::{TokenService, TokenType};
use chat_server::json;
use chat_server::model::{metadata_from_text, Message, Timestamp, User};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

fn message(seq: i64) -> Message {
    Message {
        id: 1_000 + seq,
        chat: 4_321,
        seq,
        sender: std::sync::Arc::new(User {
            id: 42,
            email: "ann@example.com".into(),
            full_name: "Ann Example".into(),
            nickname: Some("annie".into()),
        }),
        content: format!("rest message number {seq}"),
        metadata: metadata_from_text("{}".into()),
        client_msg_id: Some(format!("r{seq}")),
        created_at: Timestamp::now(),
    }
}

fn tokens(c: &mut Criterion) {
    let service = TokenService::new(
        "bench-secret-0123456789abcdef",
        Duration::from_secs(1800),
        Duration::from_secs(3600),
    );
    let token = service.issue(42, TokenType::Access);
    let mut group = c.benchmark_group("access token");
    group.bench_function("verify in full", |b| {
        b.iter(|| {
            service
                .verify(black_box(&token), TokenType::Access)
                .unwrap()
        })
    });
    service.verify_access(&token).unwrap();
    group.bench_function("verified before (remembered)", |b| {
        b.iter(|| service.verify_access(black_box(&token)).unwrap())
    });
    group.finish();
}

#[derive(serde::Serialize)]
struct Page<'a> {
    count: i64,
    next: Option<&'a str>,
    previous: Option<&'a str>,
    results: &'a [Message],
}

fn pages(c: &mut Criterion) {
    let messages: Vec<Message> = (476..=500).map(message).collect();
    let cached: Vec<Bytes> = messages
        .iter()
        .map(|m| Bytes::from(json::encode(m)))
        .collect();
    let next = "http://127.0.0.1:8000/api/chat/chats/4321/messages/?page=2";
    let mut group = c.benchmark_group("history page of 25");
    group.bench_function("encode stored messages (serde)", |b| {
        b.iter(|| {
            json::encode(&Page {
                count: 500,
                next: Some(next),
                previous: None,
                results: black_box(&messages),
            })
        })
    });
    group.bench_function("join cached JSON", |b| {
        b.iter(|| {
            let page: Vec<Bytes> = black_box(&cached).to_vec();
            chat_server::api::messages::encode_page(500, Some(next.into()), None, &page)
        })
    });
    group.finish();
}

criterion_group!(benches, tokens, pages);
criterion_main!(benches);
