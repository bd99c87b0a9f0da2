//! Test harness: `spawn_app()` starts the real server on 127.0.0.1:0 against a fresh
//! PostgreSQL database (created by the server itself on first connect), and gives
//! tests a real HTTP client plus helpers to register users and start chats.
//!
//! PostgreSQL is found through `TEST_PG` (a tokio-postgres key/value string without
//! `dbname`), default `host=127.0.0.1 port=5432 user=postgres`.

use chat_server::{Application, Config};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;

pub const PASSWORD: &str = "correct horse battery";
pub const SECRET: &str = "integration-test-secret-key-0123456789";

/// A running server and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub database: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// Set when the server is the real binary in its own process.
    pub process: Option<tokio::process::Child>,
    /// That process's log lines, as they arrive.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

/// The connection string for the test cluster, without a database name.
pub fn pg_base() -> String {
    std::env::var("TEST_PG").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".into())
}

fn random_suffix() -> String {
    chat_server::digest::random_hex(8)
}

/// Starts a server with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts a server; `overrides` are extra environment variables.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on(&fresh_database(), overrides).await
}

/// Starts a server on a given database (several servers can share one).
pub async fn spawn_app_on(database: &str, overrides: &[(&str, &str)]) -> TestApp {
    let (database, vars) = test_vars(database, overrides);
    start_in_process(vars, database).await
}

/// Starts a server on the embedded store (a fresh data directory) and the
/// in-process bus: no DATABASE_URL, no REDIS_URL.
pub async fn spawn_embedded(overrides: &[(&str, &str)]) -> TestApp {
    let (_, mut vars) = test_vars("unused", overrides);
    vars.remove("DATABASE_URL");
    let dir = std::env::temp_dir().join(format!("chat-test-{}", random_suffix()));
    vars.insert("DATA_DIR".into(), dir.display().to_string());
    start_in_process(vars, String::new()).await
}

/// Starts a server on the embedded store in `dir` (which may hold data).
pub async fn spawn_embedded_in(dir: &std::path::Path, overrides: &[(&str, &str)]) -> TestApp {
    let (_, mut vars) = test_vars("unused", overrides);
    vars.remove("DATABASE_URL");
    vars.insert("DATA_DIR".into(), dir.display().to_string());
    start_in_process(vars, String::new()).await
}

/// Runs a server in this process on `vars`.
async fn start_in_process(vars: HashMap<String, String>, database: String) -> TestApp {
    let config = Config::from_vars(vars).expect("test configuration is valid");
    let app = Application::build(config).await.expect("server starts");
    let addr = app.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stop_rx.await;
    }));
    TestApp {
        addr,
        client: client(),
        database,
        stop: Some(stop_tx),
        server: Some(server),
        process: None,
        log: Default::default(),
    }
}

/// Why a server with the test configuration and `overrides` does not start.
pub async fn start_failure(overrides: &[(&str, &str)]) -> String {
    start_failure_on(&fresh_database(), overrides).await
}

/// Why a server on `database` refuses to start.
pub async fn start_failure_on(database: &str, overrides: &[(&str, &str)]) -> String {
    let (_, vars) = test_vars(database, overrides);
    let config = Config::from_vars(vars).expect("test configuration is valid");
    match Application::build(config).await {
        Ok(_) => panic!("the server started"),
        Err(error) => error.to_string(),
    }
}

/// Starts the `chat-server` binary in its own process (to measure it from outside).
pub async fn spawn_process(overrides: &[(&str, &str)]) -> TestApp {
    spawn_process_on(&fresh_database(), overrides).await
}

/// The binary in its own process, on a given database.
pub async fn spawn_process_on(database: &str, overrides: &[(&str, &str)]) -> TestApp {
    let (database, vars) = test_vars(database, overrides);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"));
    command.env_clear().envs(vars);
    start_binary(command, database).await
}

/// The binary in its own process, started (through `sh`'s `ulimit`) with a
/// `soft` and a `hard` limit on open files.
pub async fn spawn_process_with_open_files(
    soft: u64,
    hard: u64,
    overrides: &[(&str, &str)],
) -> TestApp {
    let (database, vars) = test_vars(&fresh_database(), overrides);
    let script = format!(r#"ulimit -S -n {soft} && ulimit -H -n {hard} && exec "$0""#);
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_chat-server"));
    command.env_clear().envs(vars);
    start_binary(command, database).await
}

/// Starts the binary in `dir` with an empty environment but for a free port and
/// JSON logs (so the test can read where it listens): zero configuration.
pub async fn spawn_bare_process(dir: &std::path::Path) -> TestApp {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"));
    command
        .current_dir(dir)
        .env_clear()
        .env("BIND", "127.0.0.1:0");
    start_binary(command, String::new()).await
}

/// Runs the prepared command with JSON logs and waits until it listens.
async fn start_binary(mut command: tokio::process::Command, database: String) -> TestApp {
    let mut child = command
        .env("LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server binary starts");
    let log = std::sync::Arc::default();
    let addr = listening_addr(child.stdout.take().unwrap(), &log).await;
    TestApp {
        addr,
        client: client(),
        database,
        stop: None,
        server: None,
        process: Some(child),
        log,
    }
}

/// Reads the server's JSON log until it says where it listens.
async fn listening_addr(
    stdout: tokio::process::ChildStdout,
    log: &std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> SocketAddr {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(addr) = entry["fields"]["addr"].as_str() {
                return addr.parse().unwrap();
            }
        }
        panic!("the server exited before listening");
    };
    let addr = tokio::time::timeout(std::time::Duration::from_secs(20), find)
        .await
        .expect("server listens in time");
    let log = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap().push(line);
        }
    });
    addr
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A port nothing listens on now, for a server a test starts (and may stop
/// and start again on it): outside the kernel's range for connections' own
/// ports (below it, or above it when it starts low), so no connection takes
/// it while that server is down, and never handed out twice in this process.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ports = ports_outside_the_ephemeral_range();
    let mut handed_out = HANDED_OUT.lock().unwrap();
    for _ in 0..10_000 {
        let port = rand::random_range(ports.clone());
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free && !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free port in {ports:?} after 10,000 tries");
}

/// Ports from 10,000 up to the kernel's ephemeral range, or above its end
/// when fewer than 1,000 lie below it.
fn ports_outside_the_ephemeral_range() -> std::ops::Range<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let bounds: Vec<u16> = range
        .map(|r| {
            r.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let (low, high) = match bounds[..] {
        [low, high] => (low, high),
        _ => (32768, 60999),
    };
    if low >= 11_000 {
        return 10_000..low;
    }
    assert!(
        high <= 64_535,
        "ip_local_port_range {low}-{high} leaves no 1,000 ports for test servers"
    );
    high + 1..u16::MAX
}

/// A name for a database no test has used (the server creates it).
pub fn fresh_database() -> String {
    format!("chat_test_{}", random_suffix())
}

/// The environment for a test server on `database`.
fn test_vars(database: &str, overrides: &[(&str, &str)]) -> (String, HashMap<String, String>) {
    let database = database.to_owned();
    let mut vars: HashMap<String, String> = [
        ("DEBUG", "1"),
        ("SECRET_KEY", SECRET),
        ("BIND", "127.0.0.1:0"),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
        ("DB_POOL_SIZE", "8"),
        // Tests fire requests as fast as they can; limits have their own tests.
        ("RATE_LIMIT_SENDS_PER_SEC", "0"),
        ("RATE_LIMIT_AUTH_PER_MIN", "0"),
        ("RATE_LIMIT_LOGIN_FAILURES_PER_EMAIL_PER_MIN", "0"),
        ("RATE_LIMIT_SYNC_PER_MIN", "0"),
        ("RATE_LIMIT_NEW_CHATS_PER_MIN", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.insert(
        "DATABASE_URL".into(),
        format!("{} dbname={database}", pg_base()),
    );
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    (database, vars)
}

/// A response, decoded.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Asserts the status, printing the body on failure.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
    }

    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Any request: raw body bytes, optional bearer token, extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, None, &[]).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(Method::POST, path, token, Some(bytes), &[]).await
    }

    /// Registers and logs in a user whose email starts with `name`.
    pub async fn user(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.com");
        let registered = self
            .post(
                "/auth/register/",
                None,
                &json!({"email": email, "password": PASSWORD, "full_name": format!("{name} Tester")}),
            )
            .await;
        let id = registered.expect(201)["id"].as_i64().unwrap();
        let tokens = self
            .post(
                "/auth/login/",
                None,
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        let tokens = tokens.expect(200);
        TestUser {
            id,
            email,
            access: tokens["access"].as_str().unwrap().to_owned(),
            refresh: tokens["refresh"].as_str().unwrap().to_owned(),
        }
    }

    /// Starts (or finds) the chat of `a` and `b`; returns its id.
    pub async fn chat(&self, a: &TestUser, b: &TestUser) -> i64 {
        let reply = self
            .post(
                "/api/chat/start/",
                Some(&a.access),
                &json!({"user_id": b.id}),
            )
            .await;
        assert!(reply.status.is_success(), "start chat: {}", reply.text);
        reply.body["id"].as_i64().unwrap()
    }

    /// Sends a message over REST; returns the stored message.
    pub async fn say(&self, from: &TestUser, chat: i64, content: &str) -> Value {
        let path = format!("/api/chat/chats/{chat}/messages/");
        self.post(&path, Some(&from.access), &json!({"content": content}))
            .await
            .expect(201)
            .clone()
    }

    /// Two users, `ann` and `bob`, and their chat.
    pub async fn pair(&self) -> (TestUser, TestUser, i64) {
        let (ann, bob) = (self.user("ann").await, self.user("bob").await);
        let chat = self.chat(&ann, &bob).await;
        (ann, bob, chat)
    }

    /// Sends `count` messages over REST, 50 at a time; client ids `{tag}{n}`.
    pub async fn say_many(
        &self,
        from: &TestUser,
        chat: i64,
        count: usize,
        tag: &str,
        content: &str,
    ) {
        let path = format!("/api/chat/chats/{chat}/messages/");
        for start in (0..count).step_by(50) {
            let sends = (start..count.min(start + 50)).map(|n| {
                let body = json!({"content": content, "client_msg_id": format!("{tag}{n}")});
                let path = &path;
                async move {
                    self.post(path, Some(&from.access), &body).await.expect(201);
                }
            });
            futures_util::future::join_all(sends).await;
        }
    }

    /// A chat's stored messages' contents in `seq` order (up to 100), read by
    /// `user` through the API.
    pub async fn stored_contents(&self, user: &TestUser, chat: i64) -> Vec<String> {
        let path = format!("/api/chat/chats/{chat}/messages/?after_seq=0&limit=100");
        let page = self.get(&path, Some(&user.access)).await;
        page.expect(200)["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    }

    /// How many messages the database holds.
    pub async fn stored_message_count(&self) -> i64 {
        let db = self.db().await;
        let row = db
            .query_one("SELECT count(*) FROM messages", &[])
            .await
            .unwrap();
        row.get(0)
    }

    /// A direct connection to this test's database, to check what was stored.
    pub async fn db(&self) -> tokio_postgres::Client {
        let url = format!("{} dbname={}", pg_base(), self.database);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("test database reachable");
        tokio::spawn(connection);
        client
    }

    /// The user's read marker, as stored (one chat per user in these tests).
    pub async fn read_marker(&self, user_id: i64) -> i64 {
        self.db()
            .await
            .query_one(
                "SELECT CASE WHEN user_low = $1 THEN low_read_seq ELSE high_read_seq END
                 FROM chats WHERE $1 IN (user_low, user_high)",
                &[&user_id],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// A WebSocket upgrade request made with a plain HTTP client: the status
    /// tells whether the handshake was refused (and why) before the upgrade.
    pub async fn upgrade_request(&self, path: &str) -> Reply {
        let headers = [
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        self.send(Method::GET, path, None, None, &headers).await
    }

    /// Everything the server process has logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Resident memory of a server running as its own process.
    pub fn server_rss_bytes(&self) -> u64 {
        let pid = self
            .process
            .as_ref()
            .and_then(|p| p.id())
            .expect("a server process");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        kib * 1024
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task ends cleanly");
        }
    }
}

/// A port on loopback that takes connections and holds them, never reading
/// or answering: a server that hangs, or a host gone behind a load balancer.
pub async fn mute_port() -> u16 {
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = mute.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = mute.accept().await {
            held.push(connection);
        }
    });
    port
}
