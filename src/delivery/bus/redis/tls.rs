//! The TLS files of one Redis: `sslrootcert`, `sslcert` and `sslkey` in the
//! query of a `rediss://` `REDIS_URL`, named and read as for PostgreSQL.
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

use crate::tls_files;
use redis::{Client, ClientTlsConfig, TlsCertificates};

/// The TLS files a URL names, and the URL without them.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsFiles {
    rest: String,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

impl TlsFiles {
    fn any(&self) -> bool {
        self.sslrootcert.is_some() || self.sslcert.is_some() || self.sslkey.is_some()
    }

    /// Keeps `key`'s value when it names a TLS file; false for any other key.
    fn take(&mut self, key: &str, value: &str) -> bool {
        let slot = match key {
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            _ => return false,
        };
        *slot = Some(value.to_owned());
        true
    }
}

/// The client of the one Redis at `url` (`REDIS_URL`), with the TLS files
/// its query names; the error says what is wrong.
pub(in crate::delivery::bus) fn client_for(url: &str) -> Result<Client, String> {
    let files = split_tls_files(url);
    if !files.any() {
        return Client::open(url).map_err(|e| format!("invalid REDIS_URL: {e}"));
    }
    if !files.rest.starts_with("rediss://") {
        return Err("REDIS_URL: sslrootcert, sslcert and sslkey need a rediss:// URL".into());
    }
    if files.sslrootcert.is_some() && files.rest.ends_with("#insecure") {
        return Err("REDIS_URL: #insecure checks no certificate; drop it or sslrootcert".into());
    }
    let certificates = TlsCertificates {
        client_tls: client_certificate(&files)?,
        root_cert: files
            .sslrootcert
            .as_deref()
            .map(|path| tls_files::read("sslrootcert", path))
            .transpose()?,
    };
    Client::build_with_tls(files.rest.as_str(), certificates)
        .map_err(|e| format!("invalid REDIS_URL: {e}"))
}

/// Refuses cluster URLs that name TLS files (see the module note).
pub(in crate::delivery::bus) fn refuse_files_in_cluster(urls: &[String]) -> Result<(), String> {
    match urls.iter().any(|url| split_tls_files(url).any()) {
        true => Err(
            "REDIS_CLUSTER_URLS: sslrootcert, sslcert and sslkey work with REDIS_URL \
                     (one Redis) only; a cluster trusts the system's CAs and SSL_CERT_FILE"
                .into(),
        ),
        false => Ok(()),
    }
}

/// The client certificate that `sslcert` and `sslkey` name, if any.
fn client_certificate(files: &TlsFiles) -> Result<Option<ClientTlsConfig>, String> {
    match (files.sslcert.as_deref(), files.sslkey.as_deref()) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(ClientTlsConfig {
            client_cert: tls_files::read("sslcert", cert)?,
            client_key: tls_files::pkcs8_key("sslkey", key)?,
        })),
        _ => Err("REDIS_URL: sslcert and sslkey must be given together".into()),
    }
}

/// Takes the TLS files out of a URL's query (decoded); the rest of the query
/// and the fragment (`#insecure`) stay.
fn split_tls_files(url: &str) -> TlsFiles {
    let mut files = TlsFiles::default();
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (url, None),
    };
    let Some((base, query)) = before_fragment.split_once('?') else {
        files.rest = url.to_owned();
        return files;
    };
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if !files.take(&key, &value) {
            kept.append_pair(&key, &value);
        }
    }
    let kept = kept.finish();
    files.rest = base.to_owned();
    if !kept.is_empty() {
        files.rest = format!("{}?{kept}", files.rest);
    }
    if let Some(fragment) = fragment {
        files.rest = format!("{}#{fragment}", files.rest);
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_files_come_out_of_the_query_and_the_rest_stays() {
        let files = split_tls_files(
            "rediss://:pw@cache:6380/1?sslrootcert=%2Fetc%2Fca.pem&protocol=resp3\
             &sslcert=/c.pem&sslkey=/k.pem#insecure",
        );
        assert_eq!(files.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(files.sslcert.as_deref(), Some("/c.pem"));
        assert_eq!(files.sslkey.as_deref(), Some("/k.pem"));
        assert_eq!(
            files.rest,
            "rediss://:pw@cache:6380/1?protocol=resp3#insecure"
        );
        for plain in ["rediss://cache:6380/", "redis://cache/#insecure"] {
            let files = split_tls_files(plain);
            assert!(!files.any());
            assert_eq!(files.rest, plain);
        }
        assert_eq!(
            split_tls_files("rediss://cache/?sslcert=/c.pem").rest,
            "rediss://cache/"
        );
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
