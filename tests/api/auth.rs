//! Register, login, refresh and logout, on both route sets.

use crate::helpers::{spawn_app, PASSWORD, SECRET};
use serde_json::json;

#[tokio::test]
async fn register_returns_the_user_on_both_routes() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/auth/register/",
            None,
            &json!({"email": "ann@Example.COM", "password": PASSWORD, "full_name": "Ann",
                    "nickname": "annie", "other_info": {"city": "Oslo"}}),
        )
        .await;
    let body = reply.expect(201);
    assert!(body["id"].as_i64().unwrap() > 0);
    assert_eq!(body["email"], "ann@example.com", "domain is normalized");
    assert_eq!(body["full_name"], "Ann");
    assert_eq!(body["nickname"], "annie");
    assert!(body.get("password").is_none(), "password is write-only");
    assert_eq!(reply.headers["content-type"], "application/json");

    let alias = app
        .post(
            "/api/users/register/",
            None,
            &json!({"email": "bob@example.com", "password": PASSWORD, "full_name": "Bob"}),
        )
        .await;
    assert_eq!(alias.expect(201)["nickname"], serde_json::Value::Null);
}

#[tokio::test]
async fn duplicate_emails_are_refused_case_insensitively() {
    let app = spawn_app().await;
    app.user("dup").await;
    let again = app
        .post(
            "/auth/register/",
            None,
            &json!({"email": "DUP@example.com", "password": PASSWORD, "full_name": "Again"}),
        )
        .await;
    assert_eq!(
        again.expect(400)["email"][0],
        "user with this email already exists."
    );
}

#[tokio::test]
async fn login_returns_a_token_pair_with_simplejwt_claims() {
    let app = spawn_app().await;
    let user = app.user("carol").await;
    for path in ["/auth/login/", "/api/token/"] {
        let reply = app
            .post(
                path,
                None,
                &json!({"email": "CAROL@example.com", "password": PASSWORD}),
            )
            .await;
        let body = reply.expect(200);
        let access = body["access"].as_str().unwrap();
        let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes());
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            access,
            &key,
            &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
        )
        .unwrap()
        .claims;
        assert_eq!(claims["token_type"], "access");
        assert_eq!(
            claims["user_id"],
            user.id.to_string(),
            "user_id is a string"
        );
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert_eq!(lifetime, 30 * 60);
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let app = spawn_app().await;
    app.user("dave").await;
    let wrong = app
        .post(
            "/auth/login/",
            None,
            &json!({"email": "dave@example.com", "password": "nope-nope"}),
        )
        .await;
    let unknown = app
        .post(
            "/auth/login/",
            None,
            &json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    wrong.expect(401);
    unknown.expect(401);
    assert_eq!(
        wrong.detail(),
        "No active account found with the given credentials"
    );
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn refresh_issues_a_new_access_token_on_both_routes() {
    let app = spawn_app().await;
    let user = app.user("erin").await;
    for path in ["/auth/refresh/", "/api/token/refresh/"] {
        let reply = app
            .post(path, None, &json!({"refresh": user.refresh}))
            .await;
        let access = reply.expect(200)["access"].as_str().unwrap().to_owned();
        app.get("/api/chat/chats/", Some(&access)).await.expect(200);
    }
}

#[tokio::test]
async fn tokens_of_the_wrong_type_are_refused() {
    let app = spawn_app().await;
    let user = app.user("fay").await;
    let refresh_as_access = app.get("/api/chat/chats/", Some(&user.refresh)).await;
    assert_eq!(refresh_as_access.expect(401)["code"], "token_not_valid");
    let access_as_refresh = app
        .post("/auth/refresh/", None, &json!({"refresh": user.access}))
        .await;
    assert_eq!(access_as_refresh.expect(401)["code"], "token_not_valid");
}

#[tokio::test]
async fn logout_blacklists_the_refresh_token() {
    let app = spawn_app().await;
    let user = app.user("gus").await;
    let logout = app
        .post("/auth/logout/", None, &json!({"refresh": user.refresh}))
        .await;
    assert_eq!(logout.expect(200), &json!({}));
    let refresh = app
        .post("/auth/refresh/", None, &json!({"refresh": user.refresh}))
        .await;
    assert_eq!(
        refresh.expect(401).clone()["detail"],
        "Token is blacklisted"
    );
    let again = app
        .post(
            "/api/token/blacklist/",
            None,
            &json!({"refresh": user.refresh}),
        )
        .await;
    again.expect(401);

    let db = app.db().await;
    let rows = db
        .query("SELECT jti FROM token_blacklist", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_hashes() {
    let app = spawn_app().await;
    app.user("hal").await;
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT password_hash FROM users WHERE email = 'hal@example.com'",
            &[],
        )
        .await
        .unwrap();
    let hash: String = row.get(0);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
}

#[tokio::test]
async fn expired_access_tokens_are_refused() {
    let app = crate::helpers::spawn_app_with(&[("ACCESS_TOKEN_TTL_SECS", "0")]).await;
    let user = app.user("ida").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reply = app.get("/api/chat/chats/", Some(&user.access)).await;
    assert_eq!(
        reply.expect(401)["messages"][0]["message"],
        "Token is expired"
    );
}
