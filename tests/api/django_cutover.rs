//! The cut-over from the Django backend, with Django itself as the oracle:
//! a Django 5.2 project whose schema matches the original's (tests/django),
//! filled through Django's ORM, hashers and SimpleJWT, imported with
//! `chat-server import-django`, then checked through our API and WebSocket.
//!
//! These tests need Django, Django REST Framework and SimpleJWT: the test
//! command installs them into a throwaway virtual environment and runs them
//! with `DJANGO_PYTHON` set to its interpreter (`cargo test --test api
//! django_cutover -- --ignored`).

use crate::helpers::{pg_base, spawn_app_on, spawn_embedded_in, TestApp};
use crate::ws_client::{socket_path, WsClient};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The Django project's `SECRET_KEY`, shared with our server as SimpleJWT
/// and we must share it for tokens to cross.
const DJANGO_SECRET: &str = "django-secret-shared-by-both-backends-0123456789";

/// A Django project on a database of its own.
struct Django {
    python: PathBuf,
    project: PathBuf,
    database: String,
}

impl Django {
    /// Copies tests/django to a scratch directory, creates its database,
    /// writes its migrations and migrates it.
    async fn start() -> Django {
        let python = std::env::var("DJANGO_PYTHON").expect("DJANGO_PYTHON: a python with Django");
        let suffix = chat_server::digest::random_hex(6);
        let project = std::env::temp_dir().join(format!("chat-django-{suffix}"));
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/django"),
            &project,
        );
        let database = format!("chat_test_django_{suffix}");
        let admin = format!("{} dbname=postgres", pg_base());
        let connected = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await;
        let (client, connection) = connected.expect("PostgreSQL reachable");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap();
        let django = Django {
            python: python.into(),
            project,
            database,
        };
        django
            .manage(&["makemigrations", "users", "chat", "-v0"])
            .await;
        django.manage(&["migrate", "-v0"]).await;
        django
    }

    fn command(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.python);
        command
            .current_dir(&self.project)
            .arg(program)
            .args(args)
            .env("DJANGO_SECRET_KEY", DJANGO_SECRET)
            .env("DJANGO_DB_NAME", &self.database);
        for (key, value) in pg_parts() {
            command.env(key, value);
        }
        command
    }

    async fn manage(&self, args: &[&str]) {
        let output = self.command("manage.py", args).output().await.unwrap();
        assert!(
            output.status.success(),
            "manage.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs an oracle command (tests/django/oracle.py); its JSON answer.
    async fn oracle(&self, args: &[&str]) -> Value {
        let output = self.command("oracle.py", args).output().await.unwrap();
        assert!(
            output.status.success(),
            "oracle.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("the oracle answers JSON")
    }

    fn url(&self) -> String {
        format!("{} dbname={}", pg_base(), self.database)
    }

    /// A direct connection to the Django database.
    async fn db(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

/// TEST_PG's host, port and user as Django's settings read them.
fn pg_parts() -> Vec<(&'static str, String)> {
    let base = pg_base();
    let part = |key: &str| {
        base.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
    };
    let mut parts = Vec::new();
    for (key, env) in [
        ("host", "DJANGO_DB_HOST"),
        ("port", "DJANGO_DB_PORT"),
        ("user", "DJANGO_DB_USER"),
    ] {
        if let Some(value) = part(key) {
            parts.push((env, value));
        }
    }
    parts
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" && entry.file_name() != "migrations" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Where an import writes: a PostgreSQL database, or a data directory.
#[derive(Clone)]
enum Target {
    Postgres(String),
    Embedded(PathBuf),
}

impl Target {
    fn postgres() -> Target {
        Target::Postgres(crate::helpers::fresh_database())
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("SECRET_KEY", DJANGO_SECRET.to_owned()),
            ("RUST_LOG", "warn".into()),
        ];
        match self {
            Target::Postgres(db) => {
                env.push(("DATABASE_URL", format!("{} dbname={db}", pg_base())))
            }
            Target::Embedded(dir) => env.push(("DATA_DIR", dir.display().to_string())),
        }
        env
    }

    fn import_command(&self, django: &Django, extra: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"));
        command
            .env_clear()
            .envs(self.env())
            .args(["import-django", "--source", &django.url()])
            .args(extra);
        command
    }

    /// Runs `import-django`: whether it succeeded, and its standard output.
    async fn import(&self, django: &Django, extra: &[&str]) -> (bool, String) {
        let output = self.import_command(django, extra).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!("import-django {extra:?}:\n{stdout}{stderr}");
        (output.status.success(), stdout)
    }

    /// The server on this store, reading the inactive users every second.
    async fn serve(&self) -> TestApp {
        let overrides = [
            ("SECRET_KEY", DJANGO_SECRET),
            ("INACTIVE_USERS_POLL_SECS", "1"),
        ];
        match self {
            Target::Postgres(db) => spawn_app_on(db, &overrides).await,
            Target::Embedded(dir) => spawn_embedded_in(dir, &overrides).await,
        }
    }
}

/// A count from the target PostgreSQL database.
async fn count(app_db: &tokio_postgres::Client, sql: &str) -> i64 {
    app_db.query_one(sql, &[]).await.unwrap().get(0)
}

async fn target_db(target: &Target) -> tokio_postgres::Client {
    let Target::Postgres(db) = target else {
        panic!("a PostgreSQL target");
    };
    let (client, connection) =
        tokio_postgres::connect(&format!("{} dbname={db}", pg_base()), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
}

/// The summary's line for `kind` says `what`.
fn says(summary: &str, kind: &str, what: &str) {
    let line = line_with(summary, kind);
    assert!(line.contains(what), "{kind}: {what:?} in\n{summary}");
}

fn line_with<'a>(summary: &'a str, start: &str) -> &'a str {
    summary
        .lines()
        .find(|line| line.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{summary}"))
}

async fn login(app: &TestApp, email: &str, password: &str) -> Option<Value> {
    let reply = app
        .post(
            "/auth/login/",
            None,
            &json!({"email": email, "password": password}),
        )
        .await;
    (reply.status == 200).then(|| reply.body.clone())
}

async fn status(app: &TestApp, path: &str, token: &str) -> u16 {
    app.get(path, Some(token)).await.status.as_u16()
}

/// Every importable chat's history through our API equals Django's, in
/// content and order, numbered 1..n; read as `reader` of each chat.
async fn histories_match(app: &TestApp, expected: &Value, readers: &[(i64, String)]) {
    let chats = expected["chats"].as_object().unwrap();
    for (chat, messages) in chats {
        let messages = messages.as_array().unwrap();
        let path = format!("/api/chat/chats/{chat}/messages/?after_seq=0&limit=100");
        let mut page = None;
        for (_, token) in readers {
            let reply = app.get(&path, Some(token)).await;
            if reply.status == 200 {
                page = Some(reply.body.clone());
                break;
            }
        }
        let page = page.unwrap_or_else(|| panic!("no reader of chat {chat}"));
        let results = page["results"].as_array().unwrap();
        assert_eq!(results.len(), messages.len(), "chat {chat}");
        for (n, (ours, theirs)) in results.iter().zip(messages).enumerate() {
            assert_eq!(ours["seq"], json!(n + 1), "chat {chat}");
            assert_eq!(ours["id"], theirs["id"], "chat {chat} seq {}", n + 1);
            assert_eq!(ours["content"], theirs["content"]);
            assert_eq!(ours["metadata"], theirs["metadata"]);
            assert_eq!(ours["sender"]["id"], theirs["sender"]);
            assert_eq!(ours["created_at"], theirs["created_at"]);
        }
    }
}

/// The user's chat list through our API: ids in order, and each chat read
/// up to its end (the history Django served counts as read).
async fn chat_list(app: &TestApp, token: &str) -> Vec<i64> {
    let reply = app.get("/api/chat/chats/", Some(token)).await;
    let chats = reply.expect(200).as_array().unwrap().clone();
    for chat in &chats {
        assert_eq!(chat["read_seq"], chat["last_seq"], "{chat}");
        assert_eq!(chat["unread_count"], 0, "{chat}");
    }
    chats.iter().map(|c| c["id"].as_i64().unwrap()).collect()
}

fn id_of(fill: &Value, name: &str) -> i64 {
    fill["users"][name]["id"].as_i64().unwrap()
}

fn expected_list(expected: &Value, user: i64) -> Vec<i64> {
    let list = &expected["chat_lists"][user.to_string()];
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

#[tokio::test]
#[ignore = "needs Django: the test command runs it (scripts/test.sh)"]
async fn a_django_deployment_moves_over_to_postgres_and_again_after_more_writes() {
    let django = Django::start().await;
    let fill = django.oracle(&["fill"]).await;
    let target = Target::postgres();

    let (ok, dry) = target.import(&django, &["--dry-run"]).await;
    assert!(ok && dry.contains("dry run"), "{dry}");
    says(&dry, "messages", "would add 34");
    let db = target_db(&target).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM users").await,
        0,
        "a dry run writes nothing"
    );

    let (ok, summary) = target.import(&django, &[]).await;
    assert!(ok, "{summary}");
    says(&summary, "users", "added 7, updated 0");
    says(&summary, "chats", "added 5");
    says(&summary, "messages", "added 34");
    says(&summary, "blacklisted", "added 1");
    for reported in [
        format!("chat {}: 3 participants", fill["chats"]["crowd"]),
        format!("chat {}: 1", fill["chats"]["ann_gina"]),
        format!("user {}: bcrypt_sha256", id_of(&fill, "frank")),
        "unusable password".to_owned(),
    ] {
        assert!(summary.contains(&reported), "{reported:?} in {summary}");
    }

    let app = target.serve().await;
    let tokens = &fill["tokens"];
    let token = |name: &str| tokens[name].as_str().unwrap().to_owned();
    // SimpleJWT's tokens, string and numeric user_id, keep working.
    assert_eq!(
        status(&app, "/api/chat/chats/", &token("ann_access")).await,
        200
    );
    assert_eq!(
        status(&app, "/api/chat/chats/", &token("ann_numeric_access")).await,
        200
    );
    let refreshed = app
        .post(
            "/auth/refresh/",
            None,
            &json!({"refresh": token("ann_refresh")}),
        )
        .await;
    refreshed.expect(200);
    let revoked = app
        .post(
            "/auth/refresh/",
            None,
            &json!({"refresh": token("ann_revoked_refresh")}),
        )
        .await;
    assert_eq!(
        revoked.status, 401,
        "blacklisted in Django: {}",
        revoked.text
    );

    // The inactive user is refused everywhere.
    let dave = token("dave_access");
    assert_eq!(status(&app, "/api/chat/chats/", &dave).await, 401);
    let dave_refresh = app
        .post(
            "/auth/refresh/",
            None,
            &json!({"refresh": token("dave_refresh")}),
        )
        .await;
    assert_eq!(dave_refresh.status, 401);
    assert!(login(&app, "dave@example.com", "dave-password-4")
        .await
        .is_none());
    let ann_dave = fill["chats"]["ann_dave"].as_i64().unwrap();
    for path in [
        socket_path(ann_dave, &dave, None),
        format!("/ws/?token={dave}"),
    ] {
        assert_eq!(app.upgrade_request(&path).await.status, 401, "{path}");
    }

    // Old passwords log in, and are rehashed; Django's unusable and
    // unverifiable ones do not.
    let mut readers = Vec::new();
    for (name, email) in [
        ("ann", "ann@example.com"),
        ("bob", "bob@example.com"),
        ("carol", "carol@example.com"),
        ("gina", "gina@example.com"),
    ] {
        let password = fill["passwords"][name].as_str().unwrap();
        let tokens = login(&app, email, password)
            .await
            .unwrap_or_else(|| panic!("{name} logs in"));
        let hash: String = db
            .query_one(
                "SELECT password_hash FROM users WHERE id = $1",
                &[&id_of(&fill, name)],
            )
            .await
            .unwrap()
            .get(0);
        assert!(hash.starts_with("$argon2id$"), "{name}: {hash}");
        readers.push((
            id_of(&fill, name),
            tokens["access"].as_str().unwrap().to_owned(),
        ));
    }
    assert!(login(&app, "frank@example.com", "frank-password-6")
        .await
        .is_none());
    assert!(login(&app, "erin@example.com", "").await.is_none());
    assert!(login(&app, "erin@example.com", "anything at all")
        .await
        .is_none());

    // Our tokens work in Django.
    let ann_ours = login(&app, "ann@example.com", "ann-password-1")
        .await
        .unwrap();
    let verified = django
        .oracle(&[
            "verify",
            ann_ours["access"].as_str().unwrap(),
            ann_ours["refresh"].as_str().unwrap(),
        ])
        .await;
    assert_eq!(verified["access_user"], id_of(&fill, "ann"));
    assert_eq!(verified["refresh_user"], id_of(&fill, "ann"));

    // Histories and chat lists equal Django's.
    let expected = django.oracle(&["expect"]).await;
    histories_match(&app, &expected, &readers).await;
    let ann = (id_of(&fill, "ann"), readers[0].1.clone());
    assert_eq!(
        chat_list(&app, &ann.1).await,
        expected_list(&expected, ann.0)
    );
    // A socket resuming from seq 0 replays the imported history in order.
    let ann_bob = fill["chats"]["ann_bob"].as_i64().unwrap();
    let mut socket = WsClient::connect(&app, ann_bob, &ann.1, Some(0)).await;
    let history = expected["chats"][ann_bob.to_string()].as_array().unwrap();
    for (n, theirs) in history.iter().enumerate() {
        let ours = socket.message().await;
        assert_eq!(ours["seq"], json!(n + 1));
        assert_eq!(ours["id"], theirs["id"]);
        assert_eq!(ours["content"], theirs["content"]);
    }
    socket.close().await;

    // Django keeps serving; a second import brings only what is new.
    let more = django.oracle(&["more"]).await;
    let (ok, summary) = target.import(&django, &[]).await;
    assert!(ok, "{summary}");
    says(&summary, "users", "added 1, updated 1");
    says(&summary, "chats", "added 1");
    says(&summary, "messages", "added 6");
    let expected = django.oracle(&["expect"]).await;
    histories_match(&app, &expected, &readers).await;
    let list = chat_list(&app, &ann.1).await;
    assert_eq!(list, expected_list(&expected, ann.0));
    assert_eq!(
        list[0],
        more["ann_ivan"].as_i64().unwrap(),
        "the newest chat leads"
    );
    assert!(login(&app, "ivan@example.com", "ivan-password-9")
        .await
        .is_some());
    // New ids come after Django's.
    let registered = app
        .post(
            "/auth/register/",
            None,
            &json!({"email": "new@example.com", "password": "long enough pw", "full_name": "New"}),
        )
        .await;
    assert!(registered.expect(201)["id"].as_i64().unwrap() > more["ivan"]["id"].as_i64().unwrap());
    let path = format!("/api/chat/chats/{ann_bob}/messages/");
    let sent = app
        .post(&path, Some(&ann.1), &json!({"content": "after the switch"}))
        .await;
    assert_eq!(
        sent.expect(201)["seq"],
        37,
        "numbered on from the imported history"
    );

    let (ok, summary) = target.import(&django, &[]).await;
    assert!(
        ok && summary.contains("nothing new since the last import"),
        "{summary}"
    );
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Django: the test command runs it (scripts/test.sh)"]
async fn a_django_deployment_moves_over_to_the_embedded_store() {
    let django = Django::start().await;
    let fill = django.oracle(&["fill"]).await;
    let dir = std::env::temp_dir().join(format!(
        "chat-django-data-{}",
        chat_server::digest::random_hex(6)
    ));
    let target = Target::Embedded(dir);
    let (ok, summary) = target.import(&django, &[]).await;
    assert!(ok, "{summary}");
    says(&summary, "messages", "added 34");

    // The server runs on the store while the second import writes to it.
    let app = target.serve().await;
    let gina = login(&app, "gina@example.com", "gina-password-7")
        .await
        .expect("gina logs in");
    let gina = gina["access"].as_str().unwrap().to_owned();
    let mut gina_socket = WsClient::user_synced(&app, &gina, json!({})).await;
    // Django deactivates gina, and writes more; the second import brings it.
    django.oracle(&["more"]).await;
    let (ok, summary) = target.import(&django, &[]).await;
    assert!(ok, "{summary}");
    says(&summary, "users", "added 1, updated 1");
    says(&summary, "messages", "added 6");
    assert_eq!(
        gina_socket.closed().await,
        4003,
        "deactivated by the import"
    );
    assert_eq!(status(&app, "/api/chat/chats/", &gina).await, 401);

    let ann = login(&app, "ann@example.com", "ann-password-1")
        .await
        .expect("ann logs in");
    let bob = login(&app, "Bob@example.com", "bob-password-2")
        .await
        .expect("bob logs in");
    let readers = vec![
        (
            id_of(&fill, "ann"),
            ann["access"].as_str().unwrap().to_owned(),
        ),
        (
            id_of(&fill, "bob"),
            bob["access"].as_str().unwrap().to_owned(),
        ),
    ];
    let expected = django.oracle(&["expect"]).await;
    histories_match(&app, &expected, &readers).await;
    assert_eq!(
        chat_list(&app, &readers[0].1).await,
        expected_list(&expected, readers[0].0)
    );
    let dave = fill["tokens"]["dave_access"].as_str().unwrap();
    assert_eq!(status(&app, "/api/chat/chats/", dave).await, 401);
    let ann_access = fill["tokens"]["ann_access"].as_str().unwrap();
    assert_eq!(status(&app, "/api/chat/chats/", ann_access).await, 200);
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs Django: the test command runs it (scripts/test.sh)"]
async fn an_import_killed_halfway_leaves_nothing_and_the_next_run_completes() {
    let django = Django::start().await;
    django.oracle(&["fill"]).await;
    django.oracle(&["bulk", "300000"]).await;
    let target = Target::postgres();
    let mut child = target
        .import_command(&django, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut phases = BufReader::new(child.stderr.take().unwrap()).lines();
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = phases.next_line().await.unwrap() {
            if line.contains("numbering and storing messages") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the import reaches its messages");
    assert!(reached, "the import printed its phases");
    child.kill().await.unwrap();
    let db = target_db(&target).await;
    // Nothing of the killed run is visible, before or after PostgreSQL
    // notices the connection is gone and rolls it back (the next run waits
    // for that: it takes the import lock first).
    let left = (
        count(&db, "SELECT count(*) FROM users").await,
        count(&db, "SELECT count(*) FROM messages").await,
        count(&db, "SELECT count(*) FROM django_import_runs").await,
    );
    assert_eq!(left, (0, 0, 0), "users, messages, runs after the kill");
    let (ok, summary) = target.import(&django, &[]).await;
    assert!(
        ok && line_with(&summary, "messages").contains("added 300034"),
        "{summary}"
    );
    let gaps = count(&db, "SELECT count(*) FROM chats c WHERE c.last_seq <> (SELECT count(*) FROM messages m WHERE m.chat_id = c.id) OR c.last_seq <> coalesce((SELECT max(seq) FROM messages m WHERE m.chat_id = c.id), 0)").await;
    assert_eq!(gaps, 0, "every chat numbered 1..n");
}

#[tokio::test]
#[ignore = "needs Django: the test command runs it (scripts/test.sh)"]
async fn emails_equal_without_case_refuse_the_import_until_resolved() {
    let django = Django::start().await;
    let fill = django.oracle(&["fill"]).await;
    // Django's email is unique with case; ours without.
    let source = django.db().await;
    let clash = "ANN@example.com";
    source
        .execute(
            "INSERT INTO users_user (password, is_superuser, email, full_name, nickname, role,
                                     other_info, is_active, is_staff, date_joined)
             VALUES ('!', false, $1, 'Ann Again', '', 'user', '{}', true, false, now())",
            &[&clash],
        )
        .await
        .unwrap();
    let target = Target::postgres();
    for extra in [&["--dry-run"][..], &[]] {
        let (ok, report) = target.import(&django, extra).await;
        assert!(!ok, "refused: {report}");
        let line = line_with(&report, "ann@example.com:");
        assert!(
            line.contains(&format!("{} <ann@example.com>", id_of(&fill, "ann"))),
            "{line}"
        );
        assert!(line.contains(&format!("<{clash}>")), "{line}");
        assert!(
            report.contains("resolve each in the Django database"),
            "{report}"
        );
    }
    let db = target_db(&target).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM users").await,
        0,
        "nothing written"
    );
    source
        .execute("DELETE FROM users_user WHERE email = $1", &[&clash])
        .await
        .unwrap();
    let (ok, summary) = target.import(&django, &[]).await;
    assert!(
        ok && line_with(&summary, "users").contains("added 7"),
        "{summary}"
    );
}
