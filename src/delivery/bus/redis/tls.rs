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
//! redis-rs takes such files for one Redis only (its cluster client takes
//! them only when built on rustls), so cluster URLs that name them are
//! refused at start rather than connected without them.

use crate::tls_files::{self, TlsFiles};
use redis::{Client, ClientTlsConfig, TlsCertificates};

/// The client of the one Redis at `url` (`REDIS_URL`), with the TLS files
/// its query names; the error says what is wrong.
pub(in crate::delivery::bus) fn client_for(url: &str) -> Result<Client, String> {
    let (rest, files) = split_tls_files(url);
    if !files.names_a_file() {
        return Client::open(rest).map_err(|e| format!("invalid REDIS_URL: {e}"));
    }
    if !rest.starts_with("rediss://") {
        return Err("REDIS_URL: sslrootcert, sslcert and sslkey need a rediss:// URL".into());
    }
    if files.sslrootcert.is_some() && rest.ends_with("#insecure") {
        return Err("REDIS_URL: #insecure checks no certificate; drop it or sslrootcert".into());
    }
    let client_tls = files
        .client_certificate()
        .map_err(|e| format!("REDIS_URL: {e}"))?;
    let certificates = TlsCertificates {
        client_tls: client_tls.map(|client| ClientTlsConfig {
            client_cert: client.certificate,
            client_key: client.pkcs8_key,
        }),
        root_cert: files.root_certificates()?,
    };
    Client::build_with_tls(rest, certificates).map_err(|e| format!("invalid REDIS_URL: {e}"))
}

/// Refuses cluster URLs that name TLS files (see the module note).
pub(in crate::delivery::bus) fn refuse_files_in_cluster(urls: &[String]) -> Result<(), String> {
    match urls.iter().any(|url| split_tls_files(url).1.names_a_file()) {
        true => Err(
            "REDIS_CLUSTER_URLS: sslrootcert, sslcert and sslkey work with REDIS_URL \
                     (one Redis) only; a cluster trusts the system's CAs and SSL_CERT_FILE"
                .into(),
        ),
        false => Ok(()),
    }
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
    fn files_need_tls_each_other_and_one_redis() {
        let error = |url: &str| client_for(url).err().unwrap_or_default();
        assert!(error("redis://cache/?sslrootcert=/ca.pem").contains("rediss://"));
        assert!(error("rediss://cache/?sslcert=/c.pem").contains("together"));
        assert!(error("rediss://cache/?sslkey=/k.pem").contains("together"));
        assert!(error("rediss://cache/?sslrootcert=/ca.pem#insecure").contains("#insecure"));
        let missing = error("rediss://cache/?sslrootcert=/no/ca.pem");
        assert!(missing.contains("sslrootcert /no/ca.pem"), "{missing}");
        assert!(client_for("rediss://cache:6380/").is_ok(), "no files");
        let cluster = [
            "redis://a:7000".to_owned(),
            "rediss://b:7000/?sslkey=/k".to_owned(),
        ];
        assert!(refuse_files_in_cluster(&cluster).is_err());
        assert!(refuse_files_in_cluster(&cluster[..1]).is_ok());
    }
}
