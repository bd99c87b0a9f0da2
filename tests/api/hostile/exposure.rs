//! Secrets and exposure: `/readyz` tells the public that the store is
//! unavailable, never why (the cause names hosts, users and databases; it goes
//! to the log).

use crate::helpers::{pg_base, spawn_app};

#[tokio::test]
async fn readyz_does_not_show_the_databases_error() {
    let app = spawn_app().await;
    app.get("/readyz", None).await.expect(200);
    let (admin, connection) = tokio_postgres::connect(
        &format!("{} dbname=postgres", pg_base()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", app.database))
        .await
        .unwrap();
    let ready = app.get("/readyz", None).await;
    let body = ready.expect(503);
    assert_eq!(body["store"], "unavailable", "{body}");
    for secret in [
        app.database.as_str(),
        "postgres",
        "does not exist",
        "127.0.0.1",
    ] {
        assert!(
            !ready.text.contains(secret),
            "{secret} shown: {}",
            ready.text
        );
    }
}
