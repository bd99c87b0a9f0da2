//! Transport-level behaviour: CORS, ALLOWED_HOSTS, OPTIONS, form bodies, shutdown.

use crate::helpers::{spawn_app, spawn_app_with, Reply, TestApp};
use reqwest::Method;

#[tokio::test]
async fn cors_preflight_and_responses_for_allowed_origins_only() {
    let app = spawn_app_with(&[("CORS_ALLOWED_ORIGINS", "https://chat.example.com")]).await;
    let preflight = app
        .send(
            Method::OPTIONS,
            "/api/chat/chats/",
            None,
            None,
            &[
                ("origin", "https://chat.example.com"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "https://chat.example.com"
    );
    assert!(preflight.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));

    let stranger = app
        .send(
            Method::OPTIONS,
            "/api/chat/chats/",
            None,
            None,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
    assert!(stranger
        .headers
        .get("access-control-allow-origin")
        .is_none());

    let user = app.user("cors").await;
    let simple = app
        .send(
            Method::GET,
            "/api/chat/chats/",
            Some(&user.access),
            None,
            &[("origin", "https://chat.example.com")],
        )
        .await;
    assert_eq!(simple.status, 200);
    assert_eq!(
        simple.headers["access-control-allow-origin"],
        "https://chat.example.com"
    );
}

#[tokio::test]
async fn hosts_outside_allowed_hosts_are_refused() {
    let app = spawn_app_with(&[("ALLOWED_HOSTS", "chat.example.com,.example.org")]).await;
    let bad = chats_with_host(&app, "evil.test").await;
    assert_eq!(bad.expect(400).clone()["detail"], "Bad Request (400)");
    for host in [
        "notexample.org",
        "example.org.evil.test",
        "chat.example.com.evil",
    ] {
        let refused = chats_with_host(&app, host).await;
        assert_eq!(refused.status, 400, "{host}");
    }
    for host in [
        "chat.example.com:8000",
        "api.example.org",
        "example.org",
        "CHAT.Example.COM",
        "Api.EXAMPLE.org:443",
    ] {
        let ok = chats_with_host(&app, host).await;
        assert_eq!(
            ok.status, 401,
            "{host} passes the host check and reaches auth"
        );
    }
}

/// `GET /api/chat/chats/` (no token) with the given `Host` header.
async fn chats_with_host(app: &TestApp, host: &str) -> Reply {
    app.send(
        Method::GET,
        "/api/chat/chats/",
        None,
        None,
        &[("host", host)],
    )
    .await
}

#[tokio::test]
async fn options_lists_allowed_methods() {
    let app = spawn_app().await;
    let reply = app
        .send(
            Method::OPTIONS,
            "/api/chat/chats/1/messages/",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["allow"], "GET, POST, OPTIONS");
}

/// RFC 9110: a 405 says which methods the resource supports.
#[tokio::test]
async fn a_method_not_allowed_lists_the_allowed_ones() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        ("TRACE", "/", "GET, OPTIONS"),
        (
            "DELETE",
            "/api/chat/chats/1/messages/",
            "GET, POST, OPTIONS",
        ),
        ("GET", "/auth/login/", "POST, OPTIONS"),
    ] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = app.send(method.clone(), path, None, None, &[]).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn form_encoded_login_works_like_drf() {
    let app = spawn_app().await;
    let user = app.user("form").await;
    let body = format!(
        "email={}&password={}",
        user.email,
        crate::helpers::PASSWORD.replace(' ', "+")
    );
    let reply = app
        .client
        .post(app.url("/auth/login/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn shutdown_stops_accepting_and_finishes() {
    let app = spawn_app().await;
    let addr = app.addr;
    app.get("/api/chat/chats/", None).await.expect(401);
    tokio::time::timeout(std::time::Duration::from_secs(5), app.stop())
        .await
        .expect("graceful shutdown completes");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener is closed"
    );
}

#[tokio::test]
async fn metrics_count_requests_messages_and_sockets() {
    let app = spawn_app().await;
    let (ann, bob, chat) = app.pair().await;
    let mut socket = crate::ws_client::WsClient::connect(&app, chat, &bob.access, None).await;
    app.say(&ann, chat, "counted").await;
    assert_eq!(socket.message().await["content"], "counted");
    let reply = app.get("/metrics", None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    for line in [
        "chat_messages_received_total 1",
        "chat_messages_delivered_total 1",
        "chat_websocket_connections_open 1",
        "chat_websocket_handshakes_total 1",
        "chat_writer_batch_size_count 1",
        r#"chat_http_requests_total{route="messages",status="201"} 1"#,
        r#"chat_http_requests_total{route="register",status="201"} 2"#,
    ] {
        assert!(
            reply.text.contains(line),
            "missing {line:?} in\n{}",
            reply.text
        );
    }
    socket.close().await;
}

#[tokio::test]
async fn requests_carry_an_id() {
    let app = spawn_app().await;
    let mine = app
        .send(
            Method::GET,
            "/healthz",
            None,
            None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(mine.headers["x-request-id"], "abc-123");
    assert_eq!(mine.body["status"], "ok");
    let fresh = app.get("/healthz", None).await;
    assert_eq!(fresh.headers["x-request-id"].len(), 16);
    let long = "a".repeat(65);
    for insane in ["two words", long.as_str()] {
        let replaced = app
            .send(
                Method::GET,
                "/healthz",
                None,
                None,
                &[("x-request-id", insane)],
            )
            .await;
        let id = replaced.headers["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 16, "{insane:?} got a fresh id");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_ne!(id, fresh.headers["x-request-id"].to_str().unwrap());
    }
}

#[tokio::test]
async fn the_demo_page_and_its_client_package_are_served() {
    let app = spawn_app().await;
    let page = app.get("/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(
        page.text.contains("from \"/chat-client.js\""),
        "the page runs on the client package"
    );
    assert!(!page.text.contains("setInterval"), "nothing polls");
    assert!(!page.text.contains("src=\"http"), "no external assets");
    let client = app.get("/chat-client.js", None).await;
    assert_eq!(client.status, 200);
    assert_eq!(
        client.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(
        client.text.contains("ws/?token=") && client.text.contains("type: \"sync\""),
        "the package speaks the user socket"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let doc = app.get("/api/schema/", None).await;
    assert_eq!(doc.body["openapi"], "3.1.0");
    let paths = doc.body["paths"].as_object().unwrap();
    let items = &doc.body["components"]["pathItems"];
    for (method, template) in chat_server::net::routes::ROUTES {
        let item = &paths
            .get(*template)
            .unwrap_or_else(|| panic!("{template} is not documented"));
        let item = match item["$ref"].as_str() {
            Some(reference) => &items[reference.rsplit('/').next().unwrap()],
            None => item,
        };
        assert!(
            item.get(method.to_lowercase()).is_some(),
            "{method} {template} is not documented"
        );
    }
    assert_eq!(
        paths.len(),
        chat_server::net::routes::ROUTES
            .iter()
            .map(|(_, t)| t)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        "no undocumented extras either way"
    );
}
