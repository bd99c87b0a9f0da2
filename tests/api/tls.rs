//! TLS to PostgreSQL and Redis, each started here from the installed
//! binaries with a certificate made by `openssl` for `localhost` and taking
//! TLS connections only, so a node that works at all works over TLS.
//! PostgreSQL's `sslmode` and `sslrootcert` are read as libpq reads them;
//! Redis, one server or a cluster, is reached at `rediss://` URLs.

use crate::cluster::{bus_ready, bus_state, OwnRedis};
use crate::faults::{pg_bin, run_as_postgres};
use crate::helpers::{
    free_port, fresh_database, spawn_app_on, spawn_app_with, spawn_process_on, start_failure,
};
use crate::redis_cluster::{a_primary_killed_mid_stream, nodes_on, OwnRedisCluster};
use crate::ws_client::WsClient;
use std::path::{Path, PathBuf};

/// A PostgreSQL that takes TLS connections only, on a free port.
struct TlsPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl TlsPostgres {
    /// Trusting every TLS connection.
    fn start() -> Self {
        Self::start_with(unique_dir("chat-pg-tls"), "trust", "")
    }

    /// Admitting only clients that present a certificate for the user
    /// `postgres` (self-signed: its own CA); the server and the client
    /// certificate with its key.
    fn start_asking_for_client_certificates() -> (Self, (String, String)) {
        let dir = unique_dir("chat-pg-tls");
        let client = certificate(&dir, "client", "postgres");
        let ca = format!("ssl_ca_file = '{}'\n", client.0);
        (Self::start_with(dir, "cert", &ca), client)
    }

    /// In `dir`, with `auth` as the `hostssl` method and `conf` added to the
    /// settings.
    fn start_with(dir: PathBuf, auth: &str, conf: &str) -> Self {
        let server = TlsPostgres {
            dir,
            port: free_port(),
            bin: pg_bin(),
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
        let conf = format!("ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n{conf}");
        append(&server.dir.join("data/postgresql.conf"), &conf);
        let hba = format!(
            "local all all trust\nhostssl all all 127.0.0.1/32 {auth}\n\
             hostnossl all all 127.0.0.1/32 reject\n"
        );
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

/// A fresh directory under the system's temporary one.
fn unique_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", chat_server::digest::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A certificate for `localhost` (its own CA) and its key, in `dir`.
fn self_signed(dir: &Path) -> (String, String) {
    certificate(dir, "", "localhost")
}

/// A self-signed certificate (its own CA) for `name`, and its key, in `dir`
/// as `{stem}cert.pem` and `{stem}key.pem`.
fn certificate(dir: &Path, stem: &str, name: &str) -> (String, String) {
    certificate_for(dir, stem, name, &format!("DNS:{name}"))
}

/// A certificate for `localhost` and `127.0.0.1` (the address a cluster
/// announces its nodes at), its own CA, and its key, in `dir`.
fn self_signed_for_the_loopback_address(dir: &Path) -> (String, String) {
    certificate_for(dir, "", "localhost", "DNS:localhost,IP:127.0.0.1")
}

/// A self-signed certificate for `name` and the subject alternative names
/// `names`, as [`certificate`].
fn certificate_for(dir: &Path, stem: &str, name: &str, names: &str) -> (String, String) {
    let path = |file: &str| {
        dir.join(format!("{stem}{file}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let (cert, key) = (path("cert.pem"), path("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName={names}"),
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
    assert!(refused.contains("certificate verify failed"), "{refused}");
    assert!(refused.contains("mismatch"), "{refused}");
    // Without the CA, the self-made certificate is not trusted.
    let unknown_ca = postgres.url("localhost", "sslmode=verify-full");
    let refused = start_failure(&[("DATABASE_URL", &unknown_ca)]).await;
    assert!(refused.contains("certificate verify failed"), "{refused}");
    assert!(refused.contains("self-signed"), "{refused}");
}

#[tokio::test]
async fn nodes_check_a_tls_only_redis_against_the_ca_in_ssl_cert_file() {
    let dir = unique_dir("chat-redis-tls");
    let (cert, key) = self_signed(&dir);
    let redis = OwnRedis::start_tls(&cert, &key);
    let (database, url) = (fresh_database(), redis.tls_url());
    let trusting = [
        ("REDIS_URL", url.as_str()),
        ("SSL_CERT_FILE", cert.as_str()),
    ];
    let nodes = [
        spawn_process_on(&database, &trusting).await,
        spawn_process_on(&database, &trusting).await,
    ];
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut bobs = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    nodes[0].say(&ann, chat, "through rediss://").await;
    assert_eq!(bobs.message().await["content"], "through rediss://");
    // Without the CA, the self-made certificate is refused: no bus.
    let doubting = spawn_process_on(&database, &[("REDIS_URL", url.as_str())]).await;
    let reply = bus_state(&doubting, "ok").await;
    assert_eq!(reply.body["bus"], "disconnected", "{}", reply.text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `sslrootcert`, `sslcert` and `sslkey` in `REDIS_URL`'s query, a node
/// checks the Redis's certificate against that CA alone (no `SSL_CERT_FILE`:
/// these nodes run in the test's process) and presents its certificate to a
/// Redis that asks for one, its key in either PEM form. Without the
/// certificate, or without the CA, a node gets no bus; a file that is not
/// there stops the start.
#[tokio::test]
async fn a_redis_asking_for_client_certificates_gets_the_one_in_sslcert_and_sslkey() {
    let dir = unique_dir("chat-redis-mtls");
    let (ca, server_key) = self_signed(&dir);
    let (cert, key) = certificate(&dir, "client", "chat-node");
    let redis = OwnRedis::start_tls_asking_for_client_certificates(&ca, &server_key, &cert);
    let url = |query: String| format!("{}?{query}", redis.tls_url());
    let database = fresh_database();
    let mut nodes = Vec::new();
    for key in [key.clone(), traditional_rsa(&key)] {
        let files = url(format!("sslrootcert={ca}&sslcert={cert}&sslkey={key}"));
        nodes.push(spawn_app_on(&database, &[("REDIS_URL", &files)]).await);
    }
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut bobs = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    nodes[0].say(&ann, chat, "with a client certificate").await;
    assert_eq!(bobs.message().await["content"], "with a client certificate");
    let without_certificate = url(format!("sslrootcert={ca}"));
    let without_ca = url(format!("sslcert={cert}&sslkey={key}"));
    get_no_bus(&database, "REDIS_URL", [without_certificate, without_ca]).await;
    let missing = url(format!(
        "sslrootcert={ca}&sslcert={cert}&sslkey=/no/key.pem"
    ));
    let error = start_failure(&[("REDIS_URL", &missing)]).await;
    assert!(error.contains("sslkey /no/key.pem"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Nodes on `database` with `setting` set to each of `refused` get no bus.
async fn get_no_bus(database: &str, setting: &str, refused: [String; 2]) {
    for value in refused {
        let node = spawn_app_on(database, &[(setting, &value)]).await;
        let reply = bus_state(&node, "ok").await;
        assert_eq!(reply.body["bus"], "disconnected", "{value}: {}", reply.text);
    }
}

/// `key` (PKCS#8 PEM, as OpenSSL 3 writes it) converted to the traditional
/// RSA form (PKCS#1) that older tools write: the new file's path.
fn traditional_rsa(key: &str) -> String {
    let traditional = format!("{key}.rsa");
    let converted = std::process::Command::new("openssl")
        .args(["rsa", "-traditional", "-in", key, "-out", &traditional])
        .output()
        .expect("openssl is installed");
    assert!(converted.status.success(), "{converted:?}");
    let pem = std::fs::read_to_string(&traditional).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
    traditional
}

/// With its key as OpenSSL 3 writes it (PKCS#8) or in the traditional RSA
/// form (PKCS#1) that older tools write and libpq reads too, or encrypted
/// with its `sslpassword`; without a certificate, or with an encrypted key
/// and no or the wrong password, the node does not start.
#[tokio::test]
async fn a_client_certificate_from_sslcert_and_sslkey_is_presented() {
    let (postgres, (cert, key)) = TlsPostgres::start_asking_for_client_certificates();
    let traditional = traditional_rsa(&key);
    for key in [&key, &traditional] {
        let files = format!("sslcert={cert}&sslkey={key}");
        works_on(&postgres.url("127.0.0.1", &format!("sslmode=require&{files}"))).await;
    }
    let without = postgres.url("127.0.0.1", "sslmode=require");
    let refused = start_failure(&[("DATABASE_URL", &without)]).await;
    assert!(refused.contains("valid client certificate"), "{refused}");
    // An encrypted key without its password is refused, not prompted for.
    let encrypted = format!("{key}.enc");
    let made = std::process::Command::new("openssl")
        .args([
            "pkey",
            "-aes256",
            "-passout",
            "pass:secret",
            "-in",
            &key,
            "-out",
            &encrypted,
        ])
        .output()
        .expect("openssl is installed");
    assert!(made.status.success(), "{made:?}");
    let files = format!("sslmode=require&sslcert={cert}&sslkey={encrypted}");
    let refused = start_failure(&[("DATABASE_URL", &postgres.url("127.0.0.1", &files))]).await;
    assert!(refused.contains("needs sslpassword"), "{refused}");
    works_on(&postgres.url("127.0.0.1", &format!("{files}&sslpassword=secret"))).await;
    let wrong = postgres.url("127.0.0.1", &format!("{files}&sslpassword=guess"));
    let refused = start_failure(&[("DATABASE_URL", &wrong)]).await;
    assert!(refused.contains("sslpassword is wrong"), "{refused}");
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

/// A failover over TLS (clients, replication and the cluster bus) loses,
/// duplicates and reorders nothing either.
#[tokio::test]
async fn a_primary_killed_mid_stream_of_a_tls_only_cluster_loses_nothing() {
    a_primary_killed_mid_stream(OwnRedisCluster::start_tls(self_signed)).await;
}

/// `REDIS_CLUSTER_URLS` takes the TLS files of `REDIS_URL`: a node checks
/// every primary of a cluster that asks for client certificates against the
/// CA in `sslrootcert` (the nodes it learns of from the cluster, not only
/// those configured) and presents the certificate in `sslcert`. Without the
/// certificate, or without the CA, a node gets no bus.
#[tokio::test]
async fn a_redis_cluster_asking_for_client_certificates_gets_the_one_in_sslcert_and_sslkey() {
    let dir = unique_dir("chat-redis-cluster-mtls");
    let (ca, server_key) = self_signed_for_the_loopback_address(&dir);
    let (cert, key) = certificate(&dir, "client", "chat-node");
    let cluster =
        OwnRedisCluster::start_tls_asking_for_client_certificates(&ca, &server_key, &cert);
    let urls = |query: String| {
        let all = cluster.urls_ending(&format!("?{query}"));
        // One configured node: the others are learnt from the cluster.
        all.split(',').next().unwrap().to_owned()
    };
    let database = fresh_database();
    let files = urls(format!("sslrootcert={ca}&sslcert={cert}&sslkey={key}"));
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(spawn_app_on(&database, &[("REDIS_CLUSTER_URLS", &files)]).await);
    }
    bus_ready(&[&nodes[0], &nodes[1]]).await;
    let (ann, bob, chat) = nodes[0].pair().await;
    let mut bobs = WsClient::connect(&nodes[1], chat, &bob.access, None).await;
    nodes[0]
        .say(&ann, chat, "through a cluster, certified")
        .await;
    assert_eq!(
        bobs.message().await["content"],
        "through a cluster, certified"
    );
    let without_certificate = urls(format!("sslrootcert={ca}"));
    let without_ca = urls(format!("sslcert={cert}&sslkey={key}"));
    let refused = [without_certificate, without_ca];
    get_no_bus(&database, "REDIS_CLUSTER_URLS", refused).await;
    let _ = std::fs::remove_dir_all(&dir);
}
