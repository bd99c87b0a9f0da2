//! The TLS files of one Redis: `sslrootcert`, `sslcert`, `sslkey` and
//! `sslpassword` in the query of a `rediss://` `REDIS_URL`, named and read as
//! for PostgreSQL ([`crate::tls_files`]).
//!
//! - `sslrootcert`: the CAs this Redis's certificate is checked against,
//!   instead of the system's (a private CA for this connection alone, where
//!   `SSL_CERT_FILE` changes what the whole process trusts).
//! - `sslcert` with `sslkey`: the client certificate that a Redis with
//!   `tls-auth-clients yes` asks for.
//!
//! A Redis Cluster's URLs (`REDIS_CLUSTER_URLS`) take the same settings: each
//! node the cluster names is reached like the configured node that named it,
//! with its files ([`super::sharded`] opens its own connection per primary).

use crate::tls_files::{self, TlsFiles};
use redis::{Client, ClientTlsConfig, TlsCertificates};

/// The client of the Redis at `url`, with the TLS files its query names;
/// the error names `setting` (`REDIS_URL`, `REDIS_CLUSTER_URLS`) and says
/// what is wrong.
pub(in crate::delivery::bus) fn client_for(setting: &str, url: &str) -> Result<Client, String> {
    let (rest, files) = split_tls_files(url);
    if !files.names_a_file() {
        return Client::open(rest).map_err(|e| format!("invalid {setting}: {e}"));
    }
    if !rest.starts_with("rediss://") {
        return Err(format!(
            "{setting}: sslrootcert, sslcert and sslkey need a rediss:// URL"
        ));
    }
    if files.sslrootcert.is_some() && rest.ends_with("#insecure") {
        return Err(format!(
            "{setting}: #insecure checks no certificate; drop it or sslrootcert"
        ));
    }
    let client_tls = files
        .client_certificate()
        .map_err(|e| format!("{setting}: {e}"))?;
    let certificates = TlsCertificates {
        client_tls: client_tls.map(|client| ClientTlsConfig {
            client_cert: client.certificate,
            client_key: client.pkcs8_key,
        }),
        root_cert: files.root_certificates()?,
    };
    Client::build_with_tls(rest, certificates).map_err(|e| format!("invalid {setting}: {e}"))
}

/// The URL without its TLS file settings, and those settings.
fn split_tls_files(url: &str) -> (String, TlsFiles) {
    let mut files = TlsFiles::default();
    let rest = tls_files::split_query(url, |key, value| files.take(key, value));
    (rest, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_files_come_out_of_the_query_and_the_rest_stays() {
        let (rest, files) = split_tls_files(
            "rediss://:pw@cache:6380/1?sslrootcert=%2Fetc%2Fca.pem&protocol=resp3\
             &sslcert=/c.pem&sslkey=/k.pem&sslpassword=s%26t#insecure",
        );
        assert_eq!(files.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(files.sslcert.as_deref(), Some("/c.pem"));
        assert_eq!(files.sslkey.as_deref(), Some("/k.pem"));
        assert_eq!(files.sslpassword.as_deref(), Some("s&t"));
        assert_eq!(rest, "rediss://:pw@cache:6380/1?protocol=resp3#insecure");
        for plain in ["rediss://cache:6380/", "redis://cache/#insecure"] {
            let (rest, files) = split_tls_files(plain);
            assert!(!files.names_a_file());
            assert_eq!(rest, plain);
        }
        let (rest, _) = split_tls_files("rediss://cache/?sslcert=/c.pem");
        assert_eq!(rest, "rediss://cache/");
    }

    #[test]
    fn files_need_tls_and_each_other() {
        let error = |url: &str| client_for("REDIS_URL", url).err().unwrap_or_default();
        assert!(error("redis://cache/?sslrootcert=/ca.pem").contains("rediss://"));
        assert!(error("rediss://cache/?sslcert=/c.pem").contains("together"));
        assert!(error("rediss://cache/?sslkey=/k.pem").contains("together"));
        assert!(error("rediss://cache/?sslrootcert=/ca.pem#insecure").contains("#insecure"));
        let missing = error("rediss://cache/?sslrootcert=/no/ca.pem");
        assert!(missing.contains("sslrootcert /no/ca.pem"), "{missing}");
        assert!(
            client_for("REDIS_URL", "rediss://cache:6380/").is_ok(),
            "no files"
        );
        let cluster = client_for("REDIS_CLUSTER_URLS", "redis://b:7000/?sslkey=/k");
        assert!(cluster
            .err()
            .unwrap_or_default()
            .starts_with("REDIS_CLUSTER_URLS: "));
    }
}
