//! TLS to PostgreSQL and Redis, each started here from the installed
//! binaries with a certificate made by `openssl` for `localhost` and taking
//! TLS connections only, so a node that works at all works over TLS.
//! PostgreSQL's `sslmode` and `sslrootcert` are read as libpq reads them;
//! Redis, one server or a cluster, is reached at `rediss://` URLs.

use crate::cluster::{bus_ready, OwnRedis};
use crate::faults::{pg_bin, run_as_postgres};
use crate::helpers::{free_port, fresh_database, spawn_app_on, spawn_app_with, start_failure};
use crate::redis_cluster::{nodes_on, OwnRedisCluster};
use crate::ws_client::WsClient;
use std::path::{Path, PathBuf};

/// A PostgreSQL that takes TLS connections only, on a free port.
struct TlsPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl TlsPostgres {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "chat-pg-tls-{}",
            chat_server::digest::random_hex(6)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let server = TlsPostgres {
            port: free_port(),
            bin: pg_bin(),
            dir,
        };
        let data = server.path("data");
        let (cert, key) = self_signed(&server.dir);
        run_as_postgres(&["chmod", "600", &key], true);
        run_as_postgres(&["chown", "-R", "postgres", &server.path("")], true);
        let initdb = server.bin.join("initdb");
        let initdb = initdb.to_str().unwrap();
        run_as_postgres(
            &[initdb, "-D", &data, "-U", "postgres", "--auth=trust"],
            false,
        );
        let conf = format!("ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n");
        append(&server.dir.join("data/postgresql.conf"), &conf);
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n\
                   hostnossl all all 127.0.0.1/32 reject\n";
        std::fs::write(server.dir.join("data/pg_hba.conf"), hba).unwrap();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            server.port,
            server.path("")
        );
        let log = server.path("pg.log");
        let pg_ctl = server.bin.join("pg_ctl");
        let pg_ctl = pg_ctl.to_str().unwrap();
        run_as_postgres(
            &[
                pg_ctl, "-D", &data, "-w", "-l", &log, "-o", &options, "start",
            ],
            false,
        );
        server
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// The server's certificate, its own CA.
    fn cert(&self) -> String {
        self.path("cert.pem")
    }

    /// A `DATABASE_URL` on `host` with `options` (a query string).
    fn url(&self, host: &str, options: &str) -> String {
        let database = fresh_database();
        format!(
            "postgres://postgres@{host}:{}/{database}?{options}",
            self.port
        )
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", pg_ctl.to_str().unwrap()])
            .args(["-D", &self.path("data"), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn append(path: &Path, text: &str) {
    let mut all = std::fs::read_to_string(path).unwrap();
    all.push_str(text);
    std::fs::write(path, all).unwrap();
}

/// A certificate for `localhost` (its own CA) and its key, in `dir`.
fn self_signed(dir: &Path) -> (String, String) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (cert, key) = (path("cert.pem"), path("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .args(["-keyout", &key, "-out", &cert])
        .output()
        .expect("openssl is installed");
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

/// A node on `url` stores and serves a message.
async fn works_on(url: &str) {
    let app = spawn_app_with(&[("DATABASE_URL", url)]).await;
    let (ann, _bob, chat) = app.pair().await;
    app.say(&ann, chat, "over TLS").await;
    assert_eq!(app.stored_contents(&ann, chat).await, ["over TLS"]);
}

#[tokio::test]
async fn a_node_reaches_a_tls_only_database_with_require_and_by_default() {
    let postgres = TlsPostgres::start();
    works_on(&postgres.url("127.0.0.1", "sslmode=require")).await;
    // libpq's default, prefer: TLS when the server offers it.
    works_on(&postgres.url("127.0.0.1", "application_name=chat")).await;
    let refused = start_failure(&[(
        "DATABASE_URL",
        &postgres.url("127.0.0.1", "sslmode=disable"),
    )])
    .await;
    assert!(refused.contains("no encryption"), "{refused}");
}

#[tokio::test]
async fn verify_full_checks_the_certificate_against_sslrootcert_and_the_host() {
    let postgres = TlsPostgres::start();
    let root = format!("sslrootcert={}", postgres.cert());
    works_on(&postgres.url("localhost", &format!("sslmode=verify-full&{root}"))).await;
    // verify-ca checks who signed it, not the name.
    works_on(&postgres.url("127.0.0.1", &format!("sslmode=verify-ca&{root}"))).await;
    let wrong_host = format!("sslmode=verify-full&{root}");
    let refused = start_failure(&[("DATABASE_URL", &postgres.url("127.0.0.1", &wrong_host))]).await;
    assert!(refused.contains("TLS"), "{refused}");
    // Without the CA, the self-made certificate is not trusted.
    let unknown_ca = postgres.url("localhost", "sslmode=verify-full");
    let refused = start_failure(&[("DATABASE_URL", &unknown_ca)]).await;
    assert!(refused.contains("TLS"), "{refused}");
}

#[tokio::test]
async fn nodes_exchange_events_through_a_tls_only_redis() {
    let dir = std::env::temp_dir().join(format!(
        "chat-redis-tls-{}",
        chat_server::digest::random_hex(6)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed(&dir);
    let redis = OwnRedis::start_tls(&cert, &key);
    let (database, url) = (fresh_database(), redis.tls_url());
    let overrides = [("REDIS_URL", url.as_str())];
    let nodes = [
        spawn_app_on(&database, &overrides).await,
        spawn_app_on(&database, &overrides).await,
    ];
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut bobs = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    nodes[0].say(&ann, chat, "through rediss://").await;
    assert_eq!(bobs.message().await["content"], "through rediss://");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn nodes_exchange_events_through_a_tls_only_redis_cluster() {
    let cluster = OwnRedisCluster::start_tls(self_signed);
    let (nodes, _) = nodes_on(&cluster, 2).await;
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut bobs = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    nodes[0].say(&ann, chat, "through a cluster over TLS").await;
    assert_eq!(
        bobs.message().await["content"],
        "through a cluster over TLS"
    );
}
