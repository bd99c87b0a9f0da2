//! `GET /api/users/?q=`.

use crate::helpers::spawn_app;

fn emails(body: &serde_json::Value) -> Vec<String> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_matches_email_name_and_nickname_but_not_the_caller() {
    let app = spawn_app().await;
    let me = app.user("searcher").await;
    app.user("alpha").await;
    app.user("beta").await;
    let reply = app
        .post(
            "/auth/register/",
            None,
            &serde_json::json!({"email": "z@example.org", "password": crate::helpers::PASSWORD,
                                "full_name": "Zed", "nickname": "AlphaFan"}),
        )
        .await;
    reply.expect(201);

    let found = app.get("/api/users/?q=ALPHA", Some(&me.access)).await;
    assert_eq!(
        emails(found.expect(200)),
        ["alpha@example.com", "z@example.org"]
    );
    let by_name = app
        .get("/api/users/?q=beta%20tester", Some(&me.access))
        .await;
    assert_eq!(emails(by_name.expect(200)), ["beta@example.com"]);
    for empty in ["/api/users/", "/api/users/?q=", "/api/users/?q=%20%20"] {
        let no_one = app.get(empty, Some(&me.access)).await;
        assert!(
            emails(no_one.expect(200)).is_empty(),
            "an empty q lists no one: {empty}"
        );
    }
    let start = app.get("/api/users/?q=ze", Some(&me.access)).await;
    assert_eq!(
        emails(start.expect(200)),
        ["z@example.org"],
        "'Zed' starts so"
    );
    let inside = app.get("/api/users/?q=ph", Some(&me.access)).await;
    assert!(
        emails(inside.expect(200)).is_empty(),
        "two characters match only the start: 'alpha' and 'AlphaFan' do not"
    );
    let wildcard = app.get("/api/users/?q=%25", Some(&me.access)).await;
    assert!(emails(wildcard.expect(200)).is_empty(), "% is literal");
}

#[tokio::test]
async fn search_is_bounded_and_needs_a_token() {
    let app = crate::helpers::spawn_app_with(&[("USER_SEARCH_LIMIT", "2")]).await;
    let me = app.user("me").await;
    for name in ["u1", "u2", "u3"] {
        app.user(name).await;
    }
    let found = app.get("/api/users/?q=u", Some(&me.access)).await;
    assert_eq!(
        emails(found.expect(200)),
        ["u1@example.com", "u2@example.com"]
    );
    app.get("/api/users/", None).await.expect(401);
}
