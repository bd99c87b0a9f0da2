//! Clients behind a proxy and connection hogs: rate limits key on the client
//! address a trusted proxy forwards (never on a header anyone else sends),
//! logins are throttled per email too (counted across the nodes sharing a
//! database, and across a restart of the embedded store), one address cannot
//! hold every connection, and a body that never finishes arriving gets a 408.

use crate::helpers::{spawn_app_on, spawn_app_with, spawn_embedded_in, TestApp, PASSWORD};
use crate::limits::{open_and_start_a_request, read_until_closed};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

async fn login_from(app: &TestApp, forwarded_for: &str, email: &str, password: &str) -> u16 {
    let body = json!({"email": email, "password": password}).to_string();
    let reply = app
        .send(
            Method::POST,
            "/auth/login/",
            None,
            Some(body.into_bytes()),
            &[("x-forwarded-for", forwarded_for)],
        )
        .await;
    reply.status.as_u16()
}

const AUTH_LIMIT: [(&str, &str); 2] = [
    ("RATE_LIMIT_AUTH_PER_MIN", "6"),
    ("RATE_LIMIT_AUTH_BURST", "3"),
];

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_auth_bucket() {
    let mut vars = AUTH_LIMIT.to_vec();
    vars.push(("TRUSTED_PROXIES", "127.0.0.0/8"));
    let app = spawn_app_with(&vars).await;
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, "203.0.113.9", "x@example.com", "wrong").await,
            401
        );
    }
    assert_eq!(
        login_from(&app, "203.0.113.9", "x@example.com", "wrong").await,
        429
    );
    assert_eq!(
        login_from(&app, "198.51.100.4", "y@example.com", "wrong").await,
        401,
        "another client behind the same proxy is not locked out"
    );
    assert_eq!(
        login_from(&app, "203.0.113.9, 198.51.100.77", "z@example.com", "wrong").await,
        401,
        "the proxy's own hop names the client"
    );
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_header_picks_no_bucket() {
    let app = spawn_app_with(&AUTH_LIMIT).await;
    for i in 0..3 {
        let spoofed = format!("203.0.113.{i}");
        assert_eq!(
            login_from(&app, &spoofed, "x@example.com", "wrong").await,
            401
        );
    }
    assert_eq!(
        login_from(&app, "198.51.100.4", "x@example.com", "wrong").await,
        429,
        "the header is not believed: every attempt came from one peer"
    );
}

#[tokio::test]
async fn failed_logins_are_throttled_per_email_across_addresses() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("RATE_LIMIT_LOGIN_FAILURES_PER_EMAIL_PER_MIN", "3"),
    ])
    .await;
    let ann = app.user("ann").await;
    let bob = app.user("bob").await;
    for i in 0..3 {
        let from = format!("203.0.113.{i}");
        assert_eq!(login_from(&app, &from, &ann.email, "wrong").await, 401);
    }
    let upper = ann.email.to_uppercase();
    let reply = login_from(&app, "198.51.100.1", &upper, "wrong").await;
    assert_eq!(
        reply, 429,
        "a fourth failure from a fourth address, spelled otherwise"
    );
    assert_eq!(
        login_from(&app, "198.51.100.2", &bob.email, PASSWORD).await,
        200,
        "other accounts are untouched"
    );
    for _ in 0..5 {
        assert_eq!(
            login_from(&app, "198.51.100.3", &bob.email, PASSWORD).await,
            200,
            "successes take nothing from the bucket"
        );
    }
}

const THREE_FAILURES: [(&str, &str); 2] = [
    ("TRUSTED_PROXIES", "127.0.0.1"),
    ("RATE_LIMIT_LOGIN_FAILURES_PER_EMAIL_PER_MIN", "3"),
];

#[tokio::test]
async fn failed_logins_are_counted_across_the_nodes_of_one_database() {
    let first = spawn_app_with(&THREE_FAILURES).await;
    let second = spawn_app_on(&first.database, &THREE_FAILURES).await;
    let ann = first.user("ann").await;
    let bob = first.user("bob").await;
    for (node, from) in [(&first, "203.0.113.1"), (&second, "203.0.113.2")] {
        assert_eq!(login_from(node, from, &ann.email, "wrong").await, 401);
    }
    assert_eq!(
        login_from(&second, "203.0.113.3", &ann.email.to_uppercase(), "wrong").await,
        401,
        "the third failure, on the node that has seen one before"
    );
    for (node, from) in [(&first, "198.51.100.1"), (&second, "198.51.100.2")] {
        assert_eq!(
            login_from(node, from, &ann.email, PASSWORD).await,
            429,
            "no node checks a password for the account until its window closes"
        );
        assert_eq!(login_from(node, from, &bob.email, PASSWORD).await, 200);
    }
}

#[tokio::test]
async fn a_failed_login_sweeps_windows_closed_long_ago() {
    let app = spawn_app_with(&THREE_FAILURES).await;
    let db = app.db().await;
    db.execute(
        "INSERT INTO login_failures (account, failures, window_ends)
         VALUES ('old@example.com', 3, now() - interval '2 minutes'),
                ('recent@example.com', 3, now() - interval '10 seconds')",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        login_from(&app, "203.0.113.1", "new@example.com", "wrong").await,
        401
    );
    let accounts: Vec<String> = db
        .query("SELECT account FROM login_failures ORDER BY account", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(accounts, ["new@example.com", "recent@example.com"]);
}

#[tokio::test]
async fn the_embedded_store_keeps_counting_failed_logins_across_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "chat-test-failures-{}",
        chat_server::digest::random_hex(6)
    ));
    let app = spawn_embedded_in(&dir, &THREE_FAILURES).await;
    let ann = app.user("ann").await;
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, "203.0.113.1", &ann.email, "wrong").await,
            401
        );
    }
    app.stop().await;
    let restarted = spawn_embedded_in(&dir, &THREE_FAILURES).await;
    assert_eq!(
        login_from(&restarted, "198.51.100.1", &ann.email, PASSWORD).await,
        429,
        "the restart forgot no failure"
    );
    restarted.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let app = spawn_app_with(&[("MAX_CONNECTIONS_PER_ADDRESS", "3")]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open_and_start_a_request(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut excess = open_and_start_a_request(&app).await;
    let answer = read_until_closed(&mut excess, Duration::from_secs(2)).await;
    let answer = answer.expect("the excess connection is closed promptly");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.ends_with(r#"{"detail":"Too many connections from your address."}"#),
        "{answer}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.get("/healthz", None).await.expect(200);
}

#[tokio::test]
async fn a_trusted_proxy_is_not_capped_per_address() {
    let app = spawn_app_with(&[
        ("MAX_CONNECTIONS_PER_ADDRESS", "2"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(open_and_start_a_request(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.get("/healthz", None).await.expect(200);
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_a_408_and_a_close() {
    let app = spawn_app_with(&[("BODY_READ_TIMEOUT_SECS", "1")]).await;
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(
        b"POST /auth/login/ HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    let answer = answer.expect("the connection is answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("did not arrive within 1 seconds"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}
