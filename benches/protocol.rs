//! WebSocket event codec: decoding a client `message.send` event and encoding a
//! server `message` event, simd-json (what the server uses to decode) next to
//! serde_json, on the same bytes.
//!
//! Run: `cargo bench --bench protocol`

use chat_server::config::Config;
use chat_server::json::Parser;
use chat_server::model::{metadata_from_text, Message, Timestamp, User};
use chat_server::ws::protocol;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;

const EVENT: &str = r#"{"type":"message.send","content":"Hello there! How is the new release going? Benchmarks look good so far.","metadata":{"type":"text","reply_to":1234,"mentions":[1,2,3],"client":{"os":"android","version":"5.2.1"}},"client_msg_id":"3f2b9c1e-8d4a-4f7e-9b1a-2c3d4e5f6a7b"}"#;

fn sample_message() -> Message {
    Message {
        id: 987_654,
        chat: 4_321,
        seq: 1_234_567,
        sender: std::sync::Arc::new(User {
            id: 42,
            email: "ann@example.com".into(),
            full_name: "Ann Example".into(),
            nickname: Some("annie".into()),
        }),
        content: "Hello there! How is the new release going? Benchmarks look good so far.".into(),
        metadata: metadata_from_text(
            r#"{"type":"text","reply_to":1234,"mentions":[1,2,3]}"#.into(),
        ),
        client_msg_id: Some("3f2b9c1e-8d4a-4f7e-9b1a-2c3d4e5f6a7b".into()),
        created_at: Timestamp::now(),
    }
}

fn decode(c: &mut Criterion) {
    let limits = Config::from_vars([("SECRET_KEY".to_string(), "bench".to_string())].into())
        .unwrap()
        .limits;
    let mut group = c.benchmark_group("decode message.send");
    let mut parser = Parser::default();
    group.bench_function("simd-json: full event decode + validation", |b| {
        b.iter_batched_ref(
            || EVENT.as_bytes().to_vec(),
            |bytes| black_box(protocol::decode(&mut parser, bytes, &limits).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function(
        "simd-json: full event decode + validation, a fresh parser each time",
        |b| {
            b.iter_batched_ref(
                || EVENT.as_bytes().to_vec(),
                |bytes| {
                    let mut parser = Parser::default();
                    black_box(protocol::decode(&mut parser, bytes, &limits).unwrap())
                },
                BatchSize::SmallInput,
            )
        },
    );
    group.bench_function("simd-json: parse to a tree", |b| {
        b.iter_batched_ref(
            || EVENT.as_bytes().to_vec(),
            |bytes| {
                let tree = simd_json::to_borrowed_value(bytes).unwrap();
                black_box(&tree);
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("serde_json: parse to a tree", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(EVENT.as_bytes()).unwrap()))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let message = sample_message();
    let tree: serde_json::Value =
        serde_json::from_slice(&chat_server::delivery::events::message_event(&message)).unwrap();
    let mut group = c.benchmark_group("encode message event");
    group.bench_function(
        "server path: field by field, metadata kept as raw text",
        |b| b.iter(|| black_box(chat_server::delivery::events::message_event(&message))),
    );
    group.bench_function("serde_json: from a tree", |b| {
        b.iter(|| black_box(serde_json::to_vec(&tree).unwrap()))
    });
    group.bench_function("simd-json: from a tree", |b| {
        b.iter(|| black_box(simd_json::to_vec(&tree).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
