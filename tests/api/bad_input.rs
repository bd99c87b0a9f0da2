//! Hostile and broken requests: every one gets a 4xx with the documented JSON body,
//! never a 500. One table, so adding a case is one line.

use crate::helpers::{spawn_app, SECRET};
use reqwest::Method;
use serde_json::json;

/// Which credentials a case sends.
#[derive(Clone, Copy)]
enum Auth {
    Anonymous,
    Ann,
    Eve,
    AnnRefresh,
    Raw(&'static str),
    Forged,
    AlgNone,
    Expired,
    NotYetValid,
    IssuedInTheFuture,
    Tampered,
}

/// What the error body must say.
#[derive(Clone, Copy)]
enum Expect {
    Detail(&'static str),
    DetailStarts(&'static str),
    Field(&'static str),
}

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    auth: Auth,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    status: u16,
    expect: Expect,
}

fn case(
    name: &'static str,
    method: Method,
    path: &'static str,
    auth: Auth,
    body: Option<Vec<u8>>,
    status: u16,
    expect: Expect,
) -> Case {
    Case {
        name,
        method,
        path,
        auth,
        body,
        content_type: None,
        status,
        expect,
    }
}

fn json_body(value: serde_json::Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&value).unwrap())
}

fn raw(text: &str) -> Option<Vec<u8>> {
    Some(text.as_bytes().to_vec())
}

fn token_with(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn claims(user_id: i64, exp_offset: i64) -> serde_json::Value {
    let now = chat_server::auth::jwt::unix_now();
    json!({"token_type": "access", "exp": now + exp_offset, "iat": now - 10,
           "jti": "0123456789abcdef0123456789abcdef", "user_id": user_id.to_string()})
}

/// `{"alg":"none"}` header, valid claims, no signature.
fn alg_none_token(user_id: i64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(user_id, 600).to_string());
    format!("{header}.{payload}.")
}

/// Ann's genuine token with its payload rewritten to claim Bob's id, signature kept.
fn tamper(token: &str, user_id: i64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["user_id"] = json!(user_id.to_string());
    let forged = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{}.{forged}.{}", parts[0], parts[2])
}

fn cases() -> Vec<Case> {
    use Auth::*;
    use Expect::*;
    let msgs = "/api/chat/chats/CHAT/messages/";
    let long_text = "x".repeat(10_001);
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let very_deep = format!(
        r#"{{"content":"x","metadata":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let big_meta = json!({"content": "x", "metadata": {"blob": "y".repeat(17 * 1024)}});
    let register = "/auth/register/";
    vec![
        case(
            "register: malformed JSON",
            Method::POST,
            register,
            Anonymous,
            raw(r#"{"email": "#),
            400,
            DetailStarts("JSON parse error"),
        ),
        case(
            "register: a list, not an object",
            Method::POST,
            register,
            Anonymous,
            raw("[1, 2]"),
            400,
            Field("non_field_errors"),
        ),
        case(
            "register: nothing",
            Method::POST,
            register,
            Anonymous,
            raw("{}"),
            400,
            Field("password"),
        ),
        case(
            "register: bad email",
            Method::POST,
            register,
            Anonymous,
            json_body(
                json!({"email": "not-an-email", "password": "long enough pw", "full_name": "X"}),
            ),
            400,
            Field("email"),
        ),
        case(
            "register: email is a number",
            Method::POST,
            register,
            Anonymous,
            json_body(json!({"email": 42, "password": "long enough pw", "full_name": "X"})),
            400,
            Field("email"),
        ),
        case(
            "register: short password",
            Method::POST,
            register,
            Anonymous,
            json_body(json!({"email": "a@b.io", "password": "short", "full_name": "X"})),
            400,
            Field("password"),
        ),
        case(
            "register: full_name too long",
            Method::POST,
            register,
            Anonymous,
            json_body(
                json!({"email": "a@b.io", "password": "long enough pw", "full_name": "n".repeat(256)}),
            ),
            400,
            Field("full_name"),
        ),
        case(
            "register: nickname too long",
            Method::POST,
            register,
            Anonymous,
            json_body(
                json!({"email": "a@b.io", "password": "long enough pw", "full_name": "X", "nickname": "n".repeat(101)}),
            ),
            400,
            Field("nickname"),
        ),
        case(
            "register: other_info too deep",
            Method::POST,
            register,
            Anonymous,
            raw(&format!(
                r#"{{"email": "a@b.io", "password": "long enough pw", "full_name": "X", "other_info": {deep}}}"#
            )),
            400,
            Field("other_info"),
        ),
        case(
            "register: invalid UTF-8",
            Method::POST,
            register,
            Anonymous,
            Some(b"{\"email\": \"\xff\xfe\"}".to_vec()),
            400,
            DetailStarts("JSON parse error"),
        ),
        case(
            "login: missing password",
            Method::POST,
            "/auth/login/",
            Anonymous,
            json_body(json!({"email": "a@b.io"})),
            400,
            Field("password"),
        ),
        case(
            "login: null email",
            Method::POST,
            "/api/token/",
            Anonymous,
            json_body(json!({"email": null, "password": "x"})),
            400,
            Field("email"),
        ),
        case(
            "refresh: garbage token",
            Method::POST,
            "/auth/refresh/",
            Anonymous,
            json_body(json!({"refresh": "abc.def.ghi"})),
            401,
            Detail("Token is invalid or expired"),
        ),
        case(
            "refresh: missing token",
            Method::POST,
            "/auth/refresh/",
            Anonymous,
            raw("{}"),
            400,
            Field("refresh"),
        ),
        case(
            "logout: wrong token type",
            Method::POST,
            "/auth/logout/",
            Anonymous,
            json_body(json!({"refresh": 12})),
            400,
            Field("refresh"),
        ),
        case(
            "no token",
            Method::GET,
            "/api/chat/chats/",
            Anonymous,
            None,
            401,
            Detail("Authentication credentials were not provided."),
        ),
        case(
            "Bearer without a token",
            Method::GET,
            "/api/chat/chats/",
            Raw("Bearer"),
            None,
            401,
            Detail("Invalid Authorization header. No credentials provided."),
        ),
        case(
            "Bearer with spaces",
            Method::GET,
            "/api/chat/chats/",
            Raw("Bearer a b"),
            None,
            401,
            Detail("Invalid Authorization header. Credentials string should not contain spaces."),
        ),
        case(
            "Basic auth scheme",
            Method::GET,
            "/api/chat/chats/",
            Raw("Basic YTpi"),
            None,
            401,
            Detail("Authentication credentials were not provided."),
        ),
        case(
            "garbage token",
            Method::GET,
            "/api/chat/chats/",
            Raw("Bearer not.a.jwt"),
            None,
            401,
            Detail("Given token not valid for any token type"),
        ),
        case(
            "token signed with another secret",
            Method::GET,
            "/api/chat/chats/",
            Forged,
            None,
            401,
            Detail("Given token not valid for any token type"),
        ),
        case(
            "alg none token",
            Method::GET,
            "/api/chat/chats/",
            AlgNone,
            None,
            401,
            Detail("Given token not valid for any token type"),
        ),
        case(
            "expired token",
            Method::GET,
            "/api/chat/chats/",
            Expired,
            None,
            401,
            Detail("Given token not valid for any token type"),
        ),
        case(
            "payload tampered, signature kept",
            Method::GET,
            "/api/chat/chats/",
            Tampered,
            None,
            401,
            Detail("Given token not valid for any token type"),
        ),
        case(
            "token not valid yet (nbf)",
            Method::GET,
            "/api/chat/chats/",
            NotYetValid,
            None,
            401,
            Detail("Given token not valid for any token type"),
        ),
        case(
            "token issued in the future",
            Method::GET,
            "/api/chat/chats/",
            IssuedInTheFuture,
            None,
            401,
            Detail("Given token not valid for any token type"),
        ),
        case(
            "refresh token used as access",
            Method::GET,
            "/api/users/",
            AnnRefresh,
            None,
            401,
            Detail("Given token not valid for any token type"),
        ),
        case(
            "start: user_id not a number",
            Method::POST,
            "/api/chat/start/",
            Ann,
            json_body(json!({"user_id": "abc"})),
            400,
            Field("user_id"),
        ),
        case(
            "start: user_id missing",
            Method::POST,
            "/api/chat/start/",
            Ann,
            raw("{}"),
            400,
            Field("user_id"),
        ),
        case(
            "start: user_id fractional",
            Method::POST,
            "/api/chat/start/",
            Ann,
            raw(r#"{"user_id": 1.5}"#),
            400,
            Field("user_id"),
        ),
        case(
            "start: user_id beyond u64 (valid JSON, not a valid id)",
            Method::POST,
            "/api/chat/start/",
            Ann,
            raw(r#"{"user_id": 99999999999999999999999}"#),
            400,
            Field("user_id"),
        ),
        case(
            "start: user_id beyond i64",
            Method::POST,
            "/api/chat/start/",
            Ann,
            raw(r#"{"user_id": 18446744073709551615}"#),
            400,
            Field("user_id"),
        ),
        case(
            "start: user_id 1e300",
            Method::POST,
            "/api/chat/start/",
            Ann,
            raw(r#"{"user_id": 1e300}"#),
            400,
            Field("user_id"),
        ),
        case(
            "start: user_id a list",
            Method::POST,
            "/api/chat/start/",
            Ann,
            raw(r#"{"user_id": [1]}"#),
            400,
            Field("user_id"),
        ),
        case(
            "start: user_id negative",
            Method::POST,
            "/api/chat/start/",
            Ann,
            raw(r#"{"user_id": -3}"#),
            404,
            Detail("Not found."),
        ),
        case(
            "history: non-numeric chat id",
            Method::GET,
            "/api/chat/chats/abc/messages/",
            Ann,
            None,
            404,
            Detail("Not found."),
        ),
        case(
            "history: huge chat id",
            Method::GET,
            "/api/chat/chats/99999999999999999999999/messages/",
            Ann,
            None,
            404,
            Detail("Not found."),
        ),
        case(
            "history: chat id zero",
            Method::GET,
            "/api/chat/chats/0/messages/",
            Ann,
            None,
            404,
            Detail("Not found."),
        ),
        case(
            "history: unknown chat",
            Method::GET,
            "/api/chat/chats/424242/messages/",
            Ann,
            None,
            404,
            Detail("Not found."),
        ),
        case(
            "history: someone else's chat",
            Method::GET,
            msgs,
            Eve,
            None,
            403,
            Detail("You do not have permission to perform this action."),
        ),
        case(
            "send: someone else's chat",
            Method::POST,
            msgs,
            Eve,
            json_body(json!({"content": "hi"})),
            403,
            Detail("You do not have permission to perform this action."),
        ),
        case(
            "send: blank content",
            Method::POST,
            msgs,
            Ann,
            json_body(json!({"content": "   \n\t"})),
            400,
            Field("content"),
        ),
        case(
            "send: missing content",
            Method::POST,
            msgs,
            Ann,
            json_body(json!({"metadata": {}})),
            400,
            Field("content"),
        ),
        case(
            "send: content is an object",
            Method::POST,
            msgs,
            Ann,
            json_body(json!({"content": {"a": 1}})),
            400,
            Field("content"),
        ),
        case(
            "send: content too long",
            Method::POST,
            msgs,
            Ann,
            json_body(json!({"content": long_text})),
            400,
            Field("content"),
        ),
        case(
            "send: metadata null",
            Method::POST,
            msgs,
            Ann,
            json_body(json!({"content": "x", "metadata": null})),
            400,
            Field("metadata"),
        ),
        case(
            "send: metadata too large",
            Method::POST,
            msgs,
            Ann,
            json_body(big_meta),
            400,
            Field("metadata"),
        ),
        case(
            "send: metadata too deep",
            Method::POST,
            msgs,
            Ann,
            raw(&format!(r#"{{"content": "x", "metadata": {deep}}}"#)),
            400,
            Field("metadata"),
        ),
        case(
            "send: metadata 100,000 levels deep",
            Method::POST,
            msgs,
            Ann,
            raw(&very_deep),
            400,
            DetailStarts("JSON nesting deeper"),
        ),
        case(
            "send: client_msg_id a number",
            Method::POST,
            msgs,
            Ann,
            json_body(json!({"content": "x", "client_msg_id": 7})),
            400,
            Field("client_msg_id"),
        ),
        case(
            "send: body over 1 MiB",
            Method::POST,
            msgs,
            Ann,
            Some(vec![b' '; 2 * 1024 * 1024]),
            413,
            DetailStarts("Request body is larger"),
        ),
        case(
            "send: truncated JSON",
            Method::POST,
            msgs,
            Ann,
            raw(r#"{"content": "x""#),
            400,
            DetailStarts("JSON parse error"),
        ),
        case(
            "history: after_seq not a number",
            Method::GET,
            "/api/chat/chats/CHAT/messages/?after_seq=abc",
            Ann,
            None,
            400,
            Field("after_seq"),
        ),
        case(
            "history: negative after_seq",
            Method::GET,
            "/api/chat/chats/CHAT/messages/?after_seq=-1",
            Ann,
            None,
            400,
            Field("after_seq"),
        ),
        case(
            "history: both cursors",
            Method::GET,
            "/api/chat/chats/CHAT/messages/?after_seq=1&before_seq=3",
            Ann,
            None,
            400,
            DetailStarts("Use either"),
        ),
        case(
            "history: limit zero",
            Method::GET,
            "/api/chat/chats/CHAT/messages/?after_seq=0&limit=0",
            Ann,
            None,
            400,
            Field("limit"),
        ),
        case(
            "history: page not a number",
            Method::GET,
            "/api/chat/chats/CHAT/messages/?page=abc",
            Ann,
            None,
            404,
            Detail("Invalid page."),
        ),
        case(
            "history: page beyond i64",
            Method::GET,
            "/api/chat/chats/CHAT/messages/?page=99999999999999999999999",
            Ann,
            None,
            404,
            Detail("Invalid page."),
        ),
        case(
            "history: page zero",
            Method::GET,
            "/api/chat/chats/CHAT/messages/?page=0",
            Ann,
            None,
            404,
            Detail("Invalid page."),
        ),
        case(
            "PUT on messages",
            Method::PUT,
            msgs,
            Ann,
            None,
            405,
            Detail("Method \"PUT\" not allowed."),
        ),
        case(
            "GET on register",
            Method::GET,
            register,
            Anonymous,
            None,
            405,
            Detail("Method \"GET\" not allowed."),
        ),
        case(
            "DELETE on chats",
            Method::DELETE,
            "/api/chat/chats/",
            Ann,
            None,
            405,
            Detail("Method \"DELETE\" not allowed."),
        ),
        case(
            "unknown path",
            Method::GET,
            "/api/nothing/here/",
            Ann,
            None,
            404,
            Detail("Not found."),
        ),
        Case {
            content_type: Some("text/plain"),
            ..case(
                "send: text/plain body",
                Method::POST,
                msgs,
                Ann,
                raw("hello"),
                415,
                DetailStarts("Unsupported media type"),
            )
        },
    ]
}

#[tokio::test]
async fn every_bad_input_gets_a_clear_4xx() {
    let app = spawn_app().await;
    let (ann, bob, eve) = (
        app.user("ann").await,
        app.user("bob").await,
        app.user("eve").await,
    );
    let chat = app.chat(&ann, &bob).await;
    let forged = token_with("some-other-secret", claims(ann.id, 600));
    let expired = token_with(SECRET, claims(ann.id, -60));
    let alg_none = alg_none_token(ann.id);
    let mut nbf = claims(ann.id, 600);
    nbf["nbf"] = json!(chat_server::auth::jwt::unix_now() + 300);
    let not_yet_valid = token_with(SECRET, nbf);
    let mut later = claims(ann.id, 7200);
    later["iat"] = json!(chat_server::auth::jwt::unix_now() + 3600);
    let future = token_with(SECRET, later);
    let tampered = tamper(&ann.access, bob.id);
    let cases = cases();
    assert!(cases.len() >= 30, "at least 30 cases");
    for case in cases {
        let path = case.path.replace("CHAT", &chat.to_string());
        let mut request = app.client.request(case.method.clone(), app.url(&path));
        let authorization = match case.auth {
            Auth::Anonymous => None,
            Auth::Ann => Some(format!("Bearer {}", ann.access)),
            Auth::Eve => Some(format!("Bearer {}", eve.access)),
            Auth::AnnRefresh => Some(format!("Bearer {}", ann.refresh)),
            Auth::Raw(value) => Some(value.to_owned()),
            Auth::Forged => Some(format!("Bearer {forged}")),
            Auth::AlgNone => Some(format!("Bearer {alg_none}")),
            Auth::Expired => Some(format!("Bearer {expired}")),
            Auth::NotYetValid => Some(format!("Bearer {not_yet_valid}")),
            Auth::IssuedInTheFuture => Some(format!("Bearer {future}")),
            Auth::Tampered => Some(format!("Bearer {tampered}")),
        };
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        if let Some(body) = case.body {
            request = request
                .header(
                    "content-type",
                    case.content_type.unwrap_or("application/json"),
                )
                .body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let text = response.text().await.unwrap();
        assert_eq!(status, case.status, "{}: body {text}", case.name);
        assert_eq!(content_type, "application/json", "{}", case.name);
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        match case.expect {
            Expect::Detail(detail) => assert_eq!(body["detail"], detail, "{}", case.name),
            Expect::DetailStarts(prefix) => assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(prefix)),
                "{}: {text}",
                case.name
            ),
            Expect::Field(field) => assert!(
                body[field]
                    .as_array()
                    .is_some_and(|m| m.iter().all(|s| s.is_string()) && !m.is_empty()),
                "{}: expected a message list for {field}, got {text}",
                case.name
            ),
        }
    }
    // Nothing above was stored.
    assert_eq!(app.stored_message_count().await, 0);
}

#[tokio::test]
async fn absurd_page_sizes_are_refused_and_big_ones_capped() {
    let app = spawn_app().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let chat = app.chat(&ann, &bob).await;
    for i in 0..3 {
        app.say(&ann, chat, &format!("m{i}")).await;
    }
    let path = |query: &str| format!("/api/chat/chats/{chat}/messages/?{query}");
    for query in [
        "page_size=-1",
        "page_size=abc",
        "page_size=0",
        "page_size=99999999999999999999999",
    ] {
        let reply = app.get(&path(query), Some(&ann.access)).await;
        assert!(reply.expect(400)["page_size"].is_array(), "{query}");
    }
    let capped = app.get(&path("page_size=100000"), Some(&ann.access)).await;
    assert_eq!(capped.expect(200)["results"].as_array().unwrap().len(), 3);
}
