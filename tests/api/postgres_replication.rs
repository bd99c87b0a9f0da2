//! A PostgreSQL primary with a streaming standby, started here from the
//! installed binaries (`initdb`, `pg_basebackup -R`): the primary killed
//! with -9 under a send storm and the standby promoted loses no acknowledged
//! message, and standby reads never show less than the primary had
//! committed when the read began.

use crate::faults::{pg_bin, run_as_postgres};
use crate::helpers::{free_port, mute_port, spawn_app_with, TestApp, TestUser};
use crate::hostile::metric;
use crate::relay::Relay;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// A primary and a standby streaming from it (synchronous: a commit returns
/// once the standby has flushed it), on free ports, in a scratch directory.
pub(crate) struct PgPair {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    pub primary: u16,
    pub standby: u16,
}

impl PgPair {
    pub(crate) fn start() -> Self {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!(
            "chat-pg-pair-{}",
            chat_server::digest::random_hex(6)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let [primary, standby] = [free_port(), free_port()];
        let pair = PgPair {
            dir,
            bin,
            primary,
            standby,
        };
        run_as_postgres(&["chown", "-R", "postgres", pair.path("").as_str()], true);
        pair.run(
            "initdb",
            &[
                "-D",
                &pair.path("primary"),
                "-U",
                "postgres",
                "--auth=trust",
            ],
        );
        let settings = "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n\
                        synchronous_standby_names = '*'\nsynchronous_commit = on\n";
        let conf = pair.dir.join("primary/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(settings);
        std::fs::write(&conf, text).unwrap();
        pair.pg_ctl("primary", primary, "start");
        let port = primary.to_string();
        pair.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &pair.path("standby"),
                "-R",
                "-X",
                "stream",
            ],
        );
        pair.pg_ctl("standby", standby, "start");
        pair.wait_until(
            primary,
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            "1",
        );
        pair
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut all = vec![program.to_str().unwrap()];
        all.extend_from_slice(args);
        run_as_postgres(&all, false);
    }

    /// The standby runs with no synchronous standby of its own: promoted, it
    /// is a primary with none, and would otherwise wait forever on every commit.
    /// `action` is pg_ctl's action and its own options (`stop -m fast`).
    fn pg_ctl(&self, data: &str, port: u16, action: &str) {
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.path("")
        );
        if data == "standby" {
            options.push_str(" -c synchronous_standby_names=");
        }
        let (log, data) = (self.path(&format!("{data}.log")), self.path(data));
        let mut args = vec!["-D", &data, "-w", "-l", &log, "-o", &options];
        args.extend(action.split(' '));
        self.run("pg_ctl", &args);
    }

    /// The multi-host URL a node is given: the primary first, then the
    /// standby, and only a read-write server will do.
    pub(crate) fn url(&self) -> String {
        format!(
            "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=chat \
             target_session_attrs=read-write",
            self.primary, self.standby
        )
    }

    /// `DATABASE_READ_URLS`: the standby, as a URL.
    pub(crate) fn standby_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/chat", self.standby)
    }

    /// One value from `psql` on `port`.
    pub(crate) fn query(&self, port: u16, sql: &str) -> String {
        let output = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(["-d", "chat", "-Atqc", sql])
            .output()
            .expect("psql is installed");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn wait_until(&self, port: u16, sql: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = Command::new("psql")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .args(["-d", "postgres", "-Atqc", sql])
                .output()
                .expect("psql is installed");
            if String::from_utf8_lossy(&output.stdout).trim() == expected {
                return;
            }
            assert!(Instant::now() < deadline, "{sql} never gave {expected}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The primary's postmaster and every process it started, killed with -9,
    /// as when its machine dies.
    pub(crate) fn kill_primary(&self) {
        let pid_file = std::fs::read_to_string(self.dir.join("primary/postmaster.pid")).unwrap();
        let pid = pid_file.lines().next().unwrap().trim().to_owned();
        let _ = Command::new("pkill").args(["-9", "-P", &pid]).status();
        let _ = Command::new("kill").args(["-9", &pid]).status();
    }

    /// `pg_ctl promote` on the standby; waits (without blocking the
    /// runtime) until it takes writes.
    pub(crate) async fn promote(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let status = tokio::process::Command::new("runuser")
            .args(["-u", "postgres", "--", pg_ctl.to_str().unwrap()])
            .args(["-D", &self.path("standby"), "-w", "promote"])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "the standby was promoted");
    }

    /// The standby stopped at once (`pg_ctl stop -m immediate`): the
    /// primary's commits then wait for it.
    pub(crate) fn stop_standby(&self) {
        self.pg_ctl("standby", self.standby, "stop -m immediate");
    }

    /// The standby started again; returns once it is the primary's
    /// synchronous standby again.
    pub(crate) fn restart_standby(&self) {
        self.pg_ctl("standby", self.standby, "start");
        self.wait_until(
            self.primary,
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            "1",
        );
    }

    /// Stops (`true`) or resumes (`false`) the standby's replay of the WAL
    /// it receives, so that it lags the primary.
    pub(crate) fn pause_replay(&self, paused: bool) {
        let call = if paused {
            "pg_wal_replay_pause"
        } else {
            "pg_wal_replay_resume"
        };
        self.query(self.standby, &format!("SELECT {call}()"));
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for data in ["primary", "standby"] {
            let pg_ctl = self.bin.join("pg_ctl");
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--", pg_ctl.to_str().unwrap()])
                .args(["-D", &self.path(data), "-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one sender saw: its client ids acknowledged in order, and the 503s
/// (how many, when the first and the last came).
#[derive(Default)]
struct Sent {
    acknowledged: Vec<String>,
    unavailable: usize,
    without_retry_after: usize,
    first_unavailable: Option<Instant>,
    /// The longest time between two acknowledgements.
    longest_gap: Duration,
}

/// Sends `count` messages, each retried under its client id until it is
/// acknowledged; every request must be answered within 15 s.
async fn send_until_acknowledged(
    app: &TestApp,
    user: &TestUser,
    chat: i64,
    name: &str,
    count: usize,
) -> Sent {
    let path = format!("/api/chat/chats/{chat}/messages/");
    let mut sent = Sent::default();
    let mut previous = Instant::now();
    for i in 0..count {
        let client_id = format!("{name}-{i}");
        let body = json!({"content": client_id, "client_msg_id": client_id});
        loop {
            let reply = tokio::time::timeout(
                Duration::from_secs(15),
                app.post(&path, Some(&user.access), &body),
            )
            .await
            .expect("a request never hangs");
            match reply.status.as_u16() {
                200 | 201 => break,
                503 => {
                    sent.unavailable += 1;
                    sent.first_unavailable.get_or_insert_with(Instant::now);
                    if reply.headers.get("retry-after").is_none() {
                        sent.without_retry_after += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("unexpected {other}: {}", reply.text),
            }
        }
        sent.acknowledged.push(client_id);
        sent.longest_gap = sent.longest_gap.max(previous.elapsed());
        previous = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sent
}

#[tokio::test]
async fn the_primary_killed_under_a_send_storm_and_the_standby_promoted_loses_nothing() {
    let pair = PgPair::start();
    let url = pair.url();
    let app = spawn_app_with(&[("DATABASE_URL", url.as_str()), ("DB_RETRY_SECS", "1")]).await;
    let (ann, bob, chat) = app.pair().await;
    const EACH: usize = 250;
    let failover = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        pair.kill_primary();
        let killed = Instant::now();
        // No primary for a while: requests are answered 503, never hang.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        pair.promote().await;
        killed
    };
    let (killed, a, b) = tokio::join!(
        failover,
        send_until_acknowledged(&app, &ann, chat, "ann", EACH),
        send_until_acknowledged(&app, &bob, chat, "bob", EACH),
    );
    let first = [a.first_unavailable, b.first_unavailable]
        .into_iter()
        .flatten()
        .min();
    assert!(
        a.unavailable + b.unavailable > 0,
        "the sends met the failover"
    );
    assert_eq!(
        a.without_retry_after + b.without_retry_after,
        0,
        "every 503 says when to retry"
    );

    // On the promoted standby: every acknowledged message once, in one gap-free run.
    let stored: Vec<Value> = serde_json::from_str(&pair.query(
        pair.standby,
        &format!(
            "SELECT coalesce(json_agg(json_build_array(seq, client_msg_id) ORDER BY seq), '[]')
             FROM messages WHERE chat_id = {chat}"
        ),
    ))
    .unwrap();
    let seqs: Vec<i64> = stored.iter().map(|row| row[0].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=2 * EACH as i64).collect::<Vec<_>>(),
        "gap-free, no duplicate"
    );
    let mut stored_ids: Vec<&str> = stored.iter().map(|row| row[1].as_str().unwrap()).collect();
    stored_ids.sort_unstable();
    let mut acknowledged: Vec<&str> = a
        .acknowledged
        .iter()
        .chain(&b.acknowledged)
        .map(String::as_str)
        .collect();
    acknowledged.sort_unstable();
    assert_eq!(stored_ids, acknowledged, "every acknowledged message, once");
    // Each sender's messages keep their order.
    for name in ["ann", "bob"] {
        let mine: Vec<&str> = stored
            .iter()
            .map(|row| row[1].as_str().unwrap())
            .filter(|id| id.starts_with(name))
            .collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{name}-{i}")).collect();
        assert_eq!(mine, expected);
    }
    // The node serves from the new primary: reads and writes.
    let page = app
        .get(
            &format!("/api/chat/chats/{chat}/messages/?page_size=1"),
            Some(&ann.access),
        )
        .await;
    assert_eq!(page.expect(200)["results"][0]["seq"], 2 * EACH as i64);
    println!(
        "failover: acknowledged {}, stored {}, lost 0; {} requests answered 503 (Retry-After), \
         the first {:?} after the kill; longest wait for an acknowledgement {:?}",
        acknowledged.len(),
        stored_ids.len(),
        a.unavailable + b.unavailable,
        first.map(|first| first - killed),
        a.longest_gap.max(b.longest_gap),
    );
}

/// Reads from a standby: with its replay paused and resumed under a stream
/// of sends, every history page, `after_seq` read and chat list holds the
/// message acknowledged just before it, a user registered just before is
/// found; a caught-up standby serves reads, a lagging one leaves them to the
/// primary.
#[tokio::test]
async fn standby_reads_never_go_backwards() {
    let pair = PgPair::start();
    let (url, standby) = (pair.url(), pair.standby_url());
    let app = spawn_app_with(&[
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_READ_URLS", standby.as_str()),
    ])
    .await;
    let (ann, bob, chat) = app.pair().await;
    let history = format!("/api/chat/chats/{chat}/messages/");
    let (mut paused, mut missed_while_paused) = (false, 0.0);
    for i in 1..=60i64 {
        if i % 15 == 0 {
            paused = !paused;
            pair.pause_replay(paused);
        }
        let misses = metric(&app, "chat_db_standby_misses_total").await;
        let sent = app.say(&ann, chat, &format!("m{i}")).await;
        assert_eq!(sent["seq"], i);
        let page = app
            .get(&format!("{history}?page_size=5"), Some(&bob.access))
            .await;
        let newest = page.expect(200)["results"]
            .as_array()
            .and_then(|page| page.last())
            .map(|newest| newest["seq"].clone());
        assert_eq!(newest, Some(json!(i)), "the newest page ends with m{i}");
        let after = app
            .get(
                &format!("{history}?after_seq={}&limit=10", i - 1),
                Some(&bob.access),
            )
            .await;
        assert_eq!(
            after.expect(200)["results"][0]["seq"],
            i,
            "a cursor at m{i}"
        );
        let list = app.get("/api/chat/chats/", Some(&bob.access)).await;
        assert_eq!(
            list.expect(200)[0]["last_seq"],
            i,
            "the chat list knows m{i}"
        );
        if paused {
            missed_while_paused += metric(&app, "chat_db_standby_misses_total").await - misses;
        }
    }
    assert!(
        missed_while_paused >= 45.0,
        "a lagging standby answers nothing"
    );
    pair.pause_replay(false);
    let carol = app.user("carol").await;
    let found = app.get("/api/users/?q=carol", Some(&ann.access)).await;
    assert_eq!(
        found.expect(200)[0]["id"],
        carol.id,
        "a user registered just before"
    );
    // Caught up, the standby serves the reads. Replay resumes at once, but a
    // loaded machine may take a moment to apply what waited: until then the
    // reads go to the primary, as they should.
    let served = metric(&app, "chat_db_standby_reads_total").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric(&app, "chat_db_standby_reads_total").await < served + 10.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby, caught up, serves reads again"
        );
        app.get(&format!("{history}?page_size=5"), Some(&bob.access))
            .await
            .expect(200);
    }
}

/// A synchronous primary whose standby is gone takes a commit and never
/// answers it. A send is answered 503 (with `Retry-After`) once
/// `DB_RETRY_SECS` have passed, never left hanging, and reads go on being
/// served meanwhile; when the standby is back
/// the send, retried under its client id, is the one message it stored.
#[tokio::test]
async fn a_commit_the_primary_never_answers_is_a_503_and_the_retry_finds_it() {
    let pair = PgPair::start();
    let url = pair.url();
    let app = spawn_app_with(&[("DATABASE_URL", url.as_str()), ("DB_RETRY_SECS", "2")]).await;
    let (ann, _bob, chat) = app.pair().await;
    let path = format!("/api/chat/chats/{chat}/messages/");
    let send = |id: &str| json!({"content": id, "client_msg_id": id});
    assert_eq!(
        app.post(&path, Some(&ann.access), &send("before"))
            .await
            .status,
        201
    );

    pair.stop_standby();
    let asked = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        app.post(&path, Some(&ann.access), &send("waiting")),
    )
    .await
    .expect("the send is answered, not left hanging");
    let answered_after = asked.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert!(
        reply.headers.get("retry-after").is_some(),
        "it says when to retry"
    );
    assert!(
        answered_after >= Duration::from_secs(2) && answered_after < Duration::from_secs(6),
        "answered after DB_RETRY_SECS, not before and not much later: {answered_after:?}"
    );

    // Reads need no standby: they are served on fresh connections, not
    // queued behind the unanswered commit.
    let read = tokio::time::timeout(Duration::from_secs(5), app.get(&path, Some(&ann.access)))
        .await
        .expect("a read is answered while the commit waits");
    let page = read.expect(200)["results"].as_array().unwrap().clone();
    assert!(page.iter().any(|message| message["content"] == "before"));

    pair.restart_standby();
    let again = loop {
        let reply = app.post(&path, Some(&ann.access), &send("waiting")).await;
        if reply.status != 503 {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(matches!(again.status.as_u16(), 200 | 201), "{}", again.text);
    assert_eq!(
        app.post(&path, Some(&ann.access), &send("after"))
            .await
            .status,
        201
    );
    let stored = pair.query(
        pair.primary,
        &format!("SELECT string_agg(client_msg_id || ':' || seq, ',' ORDER BY seq) FROM messages WHERE chat_id = {chat}"),
    );
    assert_eq!(
        stored, "before:1,waiting:2,after:3",
        "the unanswered send was stored once, and nothing else was lost"
    );
}

/// A standby whose host takes connections and never answers (hung, or gone
/// behind a load balancer) costs the reads one connection attempt (a
/// second), then is passed over for a while: reads go to the primary.
#[tokio::test]
async fn a_standby_that_never_answers_is_passed_over() {
    let port = mute_port().await;
    let standby = format!("postgres://postgres@127.0.0.1:{port}/chat");
    let app = spawn_app_with(&[("DATABASE_READ_URLS", standby.as_str())]).await;
    let (ann, _bob, chat) = app.pair().await;
    app.say(&ann, chat, "on the primary").await;
    let history = format!("/api/chat/chats/{chat}/messages/");
    let started = Instant::now();
    for _ in 0..10 {
        let page = app.get(&history, Some(&ann.access)).await;
        assert_eq!(page.expect(200)["results"][0]["content"], "on the primary");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "ten reads took {took:?}");
    assert!(metric(&app, "chat_db_standby_misses_total").await >= 10.0);
}

/// A standby that stops answering on connections already open (its host
/// vanished) leaves each read to the primary within a couple of seconds,
/// never a 503, and is then passed over.
#[tokio::test]
async fn a_standby_gone_silent_mid_connection_leaves_reads_to_the_primary() {
    let pair = PgPair::start();
    let relay = Relay::to(format!("127.0.0.1:{}", pair.standby)).await;
    let standby = format!("postgres://postgres@127.0.0.1:{}/chat", relay.port);
    let url = pair.url();
    let app = spawn_app_with(&[
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_READ_URLS", standby.as_str()),
    ])
    .await;
    let (ann, _bob, chat) = app.pair().await;
    app.say(&ann, chat, "kept").await;
    let history = format!("/api/chat/chats/{chat}/messages/");
    let served = metric(&app, "chat_db_standby_reads_total").await;
    for _ in 0..3 {
        let page = app.get(&history, Some(&ann.access)).await;
        assert_eq!(page.expect(200)["results"][0]["content"], "kept");
    }
    assert!(metric(&app, "chat_db_standby_reads_total").await >= served + 3.0);
    relay.freeze();
    let started = Instant::now();
    for _ in 0..5 {
        let page = app.get(&history, Some(&ann.access)).await;
        assert_eq!(page.expect(200)["results"][0]["content"], "kept");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "five reads took {took:?}");
}
