//! Faults: the server killed with -9 in the middle of a send storm loses no
//! acknowledged message, and the chat's sequence stays gap-free.

use crate::helpers::{fresh_database, spawn_process_on};
use crate::relay::Relay;
use crate::ws_client::{Received, WsClient};
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn kill_9_during_a_send_storm_loses_nothing_acknowledged() {
    let database = fresh_database();
    // Room for every echo: the socket reads nothing while it sends, and with the
    // default outbox a busy machine could close it for 4008 before the kill.
    let mut app = spawn_process_on(&database, &[("WS_OUTBOX_CAPACITY", "4096")]).await;
    let (ann, _bob, chat) = app.pair().await;
    let mut socket = WsClient::connect(&app, chat, &ann.access, None).await;
    const STORM: usize = 2_000;
    for i in 0..STORM {
        let event = json!({"type": "message.send", "content": format!("m{i}"), "client_msg_id": format!("c{i}")});
        socket.send_json(&event).await;
    }
    // Collect acknowledgements (echoes) until a few hundred are in, then kill -9.
    let mut acknowledged = HashSet::new();
    while acknowledged.len() < 300 {
        match socket.recv().await {
            Received::Json(event) if event["type"] == "message" => {
                acknowledged.insert(event["data"]["client_msg_id"].as_str().unwrap().to_owned());
            }
            Received::Json(_) => {}
            Received::Close(code) => panic!("closed early: {code}"),
        }
    }
    let process = app.process.as_mut().unwrap();
    process.start_kill().unwrap();
    process.wait().await.unwrap();
    // Whatever else arrived before the socket died was acknowledged too.
    while let Received::Json(event) = socket.recv().await {
        if let Some(id) = event["data"]["client_msg_id"].as_str() {
            acknowledged.insert(id.to_owned());
        }
    }

    let app = spawn_process_on(&database, &[]).await;
    let path = format!("/api/chat/chats/{chat}/messages/?after_seq=0&limit=100");
    let mut stored = Vec::new();
    let mut next = Some(app.url(&path));
    while let Some(url) = next {
        let page: serde_json::Value = app
            .client
            .get(&url)
            .bearer_auth(&ann.access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for message in page["results"].as_array().unwrap() {
            stored.push((
                message["seq"].as_i64().unwrap(),
                message["client_msg_id"].as_str().unwrap().to_owned(),
            ));
        }
        next = page["previous"].as_str().map(str::to_owned);
    }
    let seqs: Vec<i64> = stored.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "gap-free after the crash"
    );
    println!(
        "{} acknowledged before the kill, {} stored of {STORM} sent",
        acknowledged.len(),
        stored.len()
    );
    let stored_ids: HashSet<String> = stored.into_iter().map(|(_, id)| id).collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored_ids.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );
    assert!(acknowledged.len() >= 300);
}

/// A PostgreSQL cluster of this test's own, so it can be restarted.
struct OwnPostgres {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn start() -> Self {
        let bin = pg_bin();
        let dir =
            std::env::temp_dir().join(format!("chat-pg-{}", chat_server::digest::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let pg = OwnPostgres { dir, bin, port };
        run_as_postgres(&["chown", "-R", "postgres", pg.dir.to_str().unwrap()], true);
        let data = pg.dir.join("data");
        pg.ctl(&[
            pg.bin.join("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
        ]);
        pg.pg_ctl("start");
        pg
    }

    fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=chat",
            self.port
        )
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("pg.log");
        let pg_ctl = self.bin.join("pg_ctl");
        let mut args = vec![
            pg_ctl.to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-w",
            "-m",
            "immediate",
        ];
        if action != "stop" {
            args.extend(["-l", log.to_str().unwrap(), "-o", options.as_str()]);
        }
        args.push(action);
        self.ctl(&args);
    }

    fn ctl(&self, args: &[&str]) {
        run_as_postgres(args, false);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.pg_ctl("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's server binaries.
pub(crate) fn pg_bin() -> std::path::PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries are installed")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .max()
        .unwrap()
}

/// Runs a command as the `postgres` user when we are root (initdb refuses root).
pub(crate) fn run_as_postgres(args: &[&str], as_root: bool) {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut command = if is_root && !as_root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(args);
        c
    } else if is_root || !as_root {
        let mut c = std::process::Command::new(args[0]);
        c.args(&args[1..]);
        c
    } else {
        return;
    };
    let output = command.output().expect("command runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_postgres_restart_under_load_recovers_and_loses_nothing_acknowledged() {
    let pg = OwnPostgres::start();
    let url = pg.url();
    let app = crate::helpers::spawn_app_with(&[("DATABASE_URL", url.as_str())]).await;
    let (ann, _bob, chat) = app.pair().await;
    let path = format!("/api/chat/chats/{chat}/messages/");
    let mut acknowledged = Vec::new();
    let (mut failures, mut restarted) = (0, false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut i = 0;
    while acknowledged.len() < 120 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not recover"
        );
        if i == 40 && !restarted {
            pg.pg_ctl("restart");
            restarted = true;
        }
        let body = json!({"content": format!("m{i}"), "client_msg_id": format!("c{i}")});
        let reply = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            app.post(&path, Some(&ann.access), &body),
        )
        .await
        .expect("a request never hangs");
        match reply.status.as_u16() {
            200 | 201 => acknowledged.push(format!("c{i}")),
            503 => {
                failures += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue; // retried with the same client_msg_id
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
        i += 1;
    }
    println!("{failures} requests failed during the restart and were retried");
    let history = app
        .get(&format!("{path}?after_seq=0&limit=100"), Some(&ann.access))
        .await;
    let count = history.expect(200)["count"].as_i64().unwrap();
    assert_eq!(count, 120, "every acknowledged message is stored, each once ({failures} requests failed during the restart)");
}

/// Requests wait out a database that is down for a while (`DB_RETRY_SECS`,
/// here longer than the pool's own 5 s wait for a connection) instead of
/// failing: a send with a client id, a history read, and a send without one
/// (which never reached the database, so repeating it is safe) made while
/// PostgreSQL is stopped are answered once it is back, with no 503.
#[tokio::test]
async fn requests_that_are_safe_to_repeat_ride_out_a_database_restart() {
    let pg = OwnPostgres::start();
    let url = pg.url();
    let app = crate::helpers::spawn_app_with(&[("DATABASE_URL", url.as_str())]).await;
    let (ann, bob, chat) = app.pair().await;
    let path = format!("/api/chat/chats/{chat}/messages/");
    app.say(&ann, chat, "before").await;
    pg.pg_ctl("stop");
    let (send, read, plain) = {
        let (app, ann, path) = (&app, &ann, path.as_str());
        let send = async move {
            let body = json!({"content": "during", "client_msg_id": "d1"});
            app.post(path, Some(&ann.access), &body).await
        };
        let read = async move { app.get(path, Some(&bob.access)).await };
        let plain = async move {
            app.post(path, Some(&ann.access), &json!({"content": "plain"}))
                .await
        };
        let restart = async {
            tokio::time::sleep(std::time::Duration::from_millis(6500)).await;
            pg.pg_ctl("start");
        };
        let (send, read, plain, ()) = tokio::join!(send, read, plain, restart);
        (send, read, plain)
    };
    assert_eq!(send.status.as_u16(), 201, "{}", send.text);
    assert_eq!(read.status.as_u16(), 200, "{}", read.text);
    assert_eq!(
        plain.status.as_u16(),
        201,
        "it never reached the database: {}",
        plain.text
    );
    let history = app.get(&path, Some(&ann.access)).await;
    assert_eq!(history.expect(200)["count"], 3);
}

/// A send the database did not take holds back its socket's later sends to
/// the chat, even those queued behind it that reach a database which is back:
/// they are refused too, the client resends in order, and the chat keeps it.
#[tokio::test]
async fn sends_queued_behind_one_the_database_did_not_take_wait_for_its_resend() {
    let (relay, app) = behind_relay("2").await;
    let (ann, _bob, chat) = app.pair().await;
    let mut socket = WsClient::connect(&app, chat, &ann.access, None).await;
    let send = |id: &str| json!({"type": "message.send", "content": id, "client_msg_id": id});
    socket.send_json(&send("first")).await;
    assert_eq!(socket.message().await["client_msg_id"], "first");

    relay.cut();
    socket.send_json(&send("a")).await;
    // "a" is in a batch of its own that waits for the database; "b" and "c"
    // queue behind it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    socket.send_json(&send("b")).await;
    socket.send_json(&send("c")).await;
    let refused = socket.event().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["client_msg_id"], "a", "{refused}");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    relay.restore();
    for id in ["b", "c"] {
        let event = socket.event().await;
        assert_eq!(
            event["type"], "error",
            "{id} must not be stored ahead of a: {event}"
        );
        assert_eq!(event["client_msg_id"], id, "{event}");
        assert_eq!(event["chat"], chat, "{event}");
    }
    for id in ["a", "b", "c"] {
        socket.send_json(&send(id)).await;
    }
    for id in ["a", "b", "c"] {
        assert_eq!(socket.message().await["client_msg_id"], id);
    }
    let stored = app.stored_contents(&ann, chat).await;
    assert_eq!(stored, ["first", "a", "b", "c"]);
}

/// A user socket's send refused as `unavailable` before it reached the
/// writer (its chat could not be read: the database was away) holds back the
/// socket's later sends, which would otherwise find the database back and be
/// stored ahead of it.
#[tokio::test]
async fn a_user_socket_send_whose_chat_could_not_be_read_holds_back_later_ones() {
    let (relay, app) = behind_relay("3").await;
    let (ann, _bob, chat) = app.pair().await;
    app.say(&ann, chat, "first").await;
    // Synced on no chat: delivery starts, and the socket has not met this one.
    let mut socket = WsClient::user_synced(&app, &ann.access, json!({})).await;
    let send = |id: &str| json!({"type": "message.send", "chat": chat, "content": id, "client_msg_id": id});

    relay.cut();
    let cut_at = tokio::time::Instant::now();
    // "a" needs the chat's membership read: it is asked for 3 s, then refused
    // (about 3.2 s in). "b" waits behind it in the socket, and without a hold
    // its own read would start then and find the database back at 4.5 s.
    socket.send_json(&send("a")).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    socket.send_json(&send("b")).await;
    tokio::time::sleep_until(cut_at + std::time::Duration::from_millis(4500)).await;
    relay.restore();
    let refused = socket.event().await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(refused["client_msg_id"], "a", "{refused}");
    let held = socket.event().await;
    assert_eq!(
        held["type"], "error",
        "b must not be stored ahead of a: {held}"
    );
    assert_eq!(held["code"], "unavailable", "{held}");
    assert_eq!(held["client_msg_id"], "b", "{held}");
    for id in ["a", "b"] {
        socket.send_json(&send(id)).await;
    }
    for id in ["a", "b"] {
        let message = socket.next_of("message").await;
        assert_eq!(message["data"]["client_msg_id"], id, "{message}");
    }
    assert_eq!(app.stored_contents(&ann, chat).await, ["first", "a", "b"]);
}

/// A refusal goes out as soon as its event is acted on, not after the next
/// event the client already sent, which may wait as long for the database.
#[tokio::test]
async fn an_error_goes_out_before_the_next_event_is_acted_on() {
    let (relay, app) = behind_relay("2").await;
    let (ann, _bob, chat) = app.pair().await;
    let cat = app.user("cat").await;
    let other = app.chat(&cat, &ann).await;
    let mut socket = WsClient::user_synced(&app, &ann.access, json!({})).await;

    relay.cut();
    let cut_at = std::time::Instant::now();
    // Each needs its chat's membership read: 2 s each while the database is away.
    let send = json!({"type": "message.send", "chat": chat, "content": "a", "client_msg_id": "a"});
    socket.send_json(&send).await;
    socket
        .send_json(&json!({"type": "typing", "chat": other}))
        .await;
    let refused = socket.event().await;
    let after = cut_at.elapsed();
    assert_eq!(refused["client_msg_id"], "a", "{refused}");
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert!(
        after < std::time::Duration::from_millis(3500),
        "the refusal waited for the typing event's lookup: {after:?}"
    );
    relay.restore();
}

/// A user socket whose `sync` the database cannot answer (it is away
/// longer than the server waits for it) is closed with 1013, try again
/// later, not dropped without a close code (1006 here); once the database is
/// back, the same `sync` on a new socket brings the message.
#[tokio::test]
async fn a_sync_the_database_cannot_answer_closes_with_try_again_later() {
    let (relay, app) = behind_relay("1").await;
    let (ann, bob, chat) = app.pair().await;
    app.say(&bob, chat, "waiting").await;
    let mut socket = WsClient::user(&app, &ann.access).await;
    assert_eq!(socket.event().await["type"], "ready");
    relay.cut();
    let cursors = json!({chat.to_string(): 0});
    socket
        .send_json(&json!({"type": "sync", "chats": cursors}))
        .await;
    assert_eq!(socket.closed().await, 1013, "try again later");
    relay.restore();
    let mut again = WsClient::user_synced(&app, &ann.access, cursors).await;
    assert_eq!(again.message().await["content"], "waiting");
}

/// A server on a fresh database reached through a [`Relay`] that a test can
/// cut and restore (the database goes away for this server only, while the
/// others' tests go on), waiting out the database for `retry_secs`
/// (`DB_RETRY_SECS`).
async fn behind_relay(retry_secs: &str) -> (Relay, crate::helpers::TestApp) {
    let relay = Relay::to(postgres_address()).await;
    let url = database_url(&relay, &crate::helpers::fresh_database());
    let overrides = [
        ("DATABASE_URL", url.as_str()),
        ("DB_RETRY_SECS", retry_secs),
    ];
    let app = crate::helpers::spawn_app_with(&overrides).await;
    (relay, app)
}

/// The test PostgreSQL's connection string for `database`, through `relay`.
fn database_url(relay: &Relay, database: &str) -> String {
    let base = crate::helpers::pg_base();
    let kept: Vec<&str> = base
        .split_whitespace()
        .filter(|pair| !pair.starts_with("host=") && !pair.starts_with("port="))
        .collect();
    format!(
        "{} host=127.0.0.1 port={} dbname={database}",
        kept.join(" "),
        relay.port
    )
}

/// Where the test PostgreSQL listens (`TEST_PG`'s host and port).
fn postgres_address() -> String {
    let base = crate::helpers::pg_base();
    let value = |key: &str| {
        base.split_whitespace()
            .find_map(|pair| pair.strip_prefix(key))
            .map(str::to_owned)
    };
    let host = value("host=").unwrap_or_else(|| "127.0.0.1".into());
    let port = value("port=").unwrap_or_else(|| "5432".into());
    format!("{host}:{port}")
}
