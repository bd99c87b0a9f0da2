//! Text the store cannot hold (a NUL character, also what simd-json makes of a
//! lone `\ud800`): a 400 or an `error` event naming the field, on both stores,
//! never a 500, and a refused message costs its batch-mates nothing.

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::ws_client::WsClient;
use reqwest::Method;
use serde_json::{json, Value};

const NUL: &str = "a\u{0}b";

/// An app on the embedded store, in a fresh data directory.
pub async fn spawn_embedded() -> (TestApp, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("chat-nul-{}", chat_server::digest::random_hex(6)));
    let dir_s = dir.to_str().unwrap().to_owned();
    let app = spawn_app_with(&[("DATABASE_URL", ""), ("DATA_DIR", &dir_s)]).await;
    (app, dir)
}

/// Asserts a 400 that names `field` with the NUL message.
#[track_caller]
fn refused(reply: &crate::helpers::Reply, field: &str, what: &str) {
    assert_eq!(reply.status.as_u16(), 400, "{what}: {}", reply.text);
    assert_eq!(
        reply.body[field],
        json!(["Null characters are not allowed."]),
        "{what}: {}",
        reply.text
    );
}

async fn every_rest_input_refuses_nul(app: &TestApp) {
    let (ann, _bob, chat) = app.pair().await;
    let register = |field: &str, value: Value| {
        let mut body =
            json!({"email": "new@example.com", "password": "correct horse", "full_name": "New"});
        body[field] = value;
        body
    };
    for (field, value) in [
        ("email", json!(format!("x{NUL}@example.com"))),
        ("full_name", json!(NUL)),
        ("nickname", json!(NUL)),
        ("other_info", json!({"k": NUL})),
        ("other_info", json!({NUL: 1})),
        ("other_info", json!([[{"deep": [NUL]}]])),
    ] {
        let reply = app
            .post("/auth/register/", None, &register(field, value.clone()))
            .await;
        refused(&reply, field, &format!("register {field} {value}"));
    }
    let lone_surrogate =
        br#"{"email":"s@example.com","password":"correct horse","full_name":"\ud800"}"#;
    let reply = app
        .send(
            Method::POST,
            "/auth/register/",
            None,
            Some(lone_surrogate.to_vec()),
            &[],
        )
        .await;
    refused(&reply, "full_name", "a lone surrogate");

    let login = json!({"email": format!("{NUL}@example.com"), "password": "correct horse"});
    refused(
        &app.post("/auth/login/", None, &login).await,
        "email",
        "login",
    );

    let search = app.get("/api/users/?q=a%00b", Some(&ann.access)).await;
    refused(&search, "q", "search");

    let path = format!("/api/chat/chats/{chat}/messages/");
    for (field, body) in [
        ("content", json!({"content": NUL})),
        ("metadata", json!({"content": "x", "metadata": {"k": NUL}})),
        ("metadata", json!({"content": "x", "metadata": {NUL: true}})),
        (
            "client_msg_id",
            json!({"content": "x", "client_msg_id": NUL}),
        ),
    ] {
        refused(
            &app.post(&path, Some(&ann.access), &body).await,
            field,
            &body.to_string(),
        );
    }
    let page = app.get(&path, Some(&ann.access)).await;
    assert_eq!(page.expect(200)["count"], 0, "nothing was stored");
}

#[tokio::test]
async fn nul_in_any_rest_input_is_a_400_naming_the_field_on_postgres() {
    every_rest_input_refuses_nul(&spawn_app().await).await;
}

#[tokio::test]
async fn nul_in_any_rest_input_is_a_400_naming_the_field_on_the_embedded_store() {
    let (app, dir) = spawn_embedded().await;
    every_rest_input_refuses_nul(&app).await;
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

async fn nul_on_the_socket_is_an_error_event_and_costs_its_batch_mates_nothing(app: &TestApp) {
    let (ann, _bob, chat) = app.pair().await;
    let mut ws = WsClient::connect(app, chat, &ann.access, None).await;
    // Sent back to back so they share batches with the refused ones.
    for i in 0..20 {
        let event = if i % 4 == 1 {
            json!({"type": "message.send", "content": "x", "metadata": {"k": NUL}, "client_msg_id": format!("bad{i}")})
        } else if i % 4 == 3 {
            json!({"type": "message.send", "content": NUL, "client_msg_id": format!("bad{i}")})
        } else {
            json!({"type": "message.send", "content": format!("ok {i}"), "client_msg_id": format!("ok{i}")})
        };
        ws.send_json(&event).await;
    }
    let (mut stored, mut errors) = (Vec::new(), Vec::new());
    while stored.len() + errors.len() < 20 {
        let event = ws.event().await;
        match event["type"].as_str() {
            Some("message") => {
                stored.push(event["data"]["client_msg_id"].as_str().unwrap().to_owned())
            }
            Some("error") => {
                assert_eq!(event["code"], "invalid_fields", "{event}");
                let fields = event["fields"].as_object().expect("the fields are named");
                assert!(
                    fields.contains_key("content") || fields.contains_key("metadata"),
                    "{event}"
                );
                errors.push(event["client_msg_id"].as_str().unwrap().to_owned());
            }
            _ => panic!("unexpected {event}"),
        }
    }
    let expected_ok: Vec<String> = (0..20)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("ok{i}"))
        .collect();
    assert_eq!(stored, expected_ok, "every valid message stored, in order");
    assert_eq!(errors.len(), 10);
    let page = app
        .get(
            &format!("/api/chat/chats/{chat}/messages/"),
            Some(&ann.access),
        )
        .await;
    assert_eq!(page.expect(200)["count"], 10);
}

#[tokio::test]
async fn nul_on_the_socket_is_refused_on_postgres() {
    nul_on_the_socket_is_an_error_event_and_costs_its_batch_mates_nothing(&spawn_app().await).await;
}

#[tokio::test]
async fn nul_on_the_socket_is_refused_on_the_embedded_store() {
    let (app, dir) = spawn_embedded().await;
    nul_on_the_socket_is_an_error_event_and_costs_its_batch_mates_nothing(&app).await;
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Valid JSON is never refused for a number wider than 64 bits (it is read
/// as a float, as Python's json would read it into a float-typed field).
#[tokio::test]
async fn integers_beyond_64_bits_are_valid_json() {
    let app = spawn_app().await;
    let (ann, _bob, chat) = app.pair().await;
    let body = br#"{"content":"big","metadata":{"n":201682184758476918489088},"extra":-99999999999999999999999}"#;
    let path = format!("/api/chat/chats/{chat}/messages/");
    let reply = app
        .send(
            Method::POST,
            &path,
            Some(&ann.access),
            Some(body.to_vec()),
            &[],
        )
        .await;
    let message = reply.expect(201);
    assert_eq!(
        message["metadata"]["n"].as_f64(),
        Some(2.0168218475847692e23)
    );
}
