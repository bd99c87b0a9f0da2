//! TLS to PostgreSQL, the only user of `native-tls` (the files it names are
//! read by [`crate::tls_files`]): what a database URL's `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey` ask for, read the way libpq reads
//! them, so a Django deployment's URL works as it is.
//!
//! - `disable`: plain TCP.
//! - `prefer` (the default, as in libpq): TLS when the server offers it,
//!   else plain; the certificate is not checked.
//! - `require`: TLS or nothing; the certificate is not checked, unless
//!   `sslrootcert` names a CA, which then must have signed it.
//! - `verify-ca`: the certificate must be signed by `sslrootcert`'s CA (or
//!   one the system trusts); `verify-full`: and name the host connected to.
//! - `sslcert` and `sslkey` (together): the client certificate presented in
//!   any mode but `disable`, for servers that authenticate by certificate;
//!   the key in any PEM form libpq reads, `sslpassword` for an encrypted one
//!   (see [`crate::tls_files`]). With `disable` no file is read (as libpq).
//!   A file that is missing refuses the start, where libpq would connect
//!   without a certificate: the typo shows at start, not as the server's
//!   refusal.
//!
//! tokio-postgres knows only the first three modes and none of the file
//! keys, so they are taken out of the URL here and the rest is left to it.

use crate::tls_files::{self, TlsFiles};
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::SslMode;

/// A database URL made ready to connect: its settings and the TLS connector
/// its `sslmode` asks for.
pub struct Connectable {
    pub config: tokio_postgres::Config,
    pub tls: MakeTlsConnector,
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Ca,
    CaAndHost,
}

/// The TLS keys of a URL, and the URL without them.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsKeys {
    rest: String,
    sslmode: Option<String>,
    files: TlsFiles,
}

/// Reads `url` (a `postgres://` URL or `key=value` words) and builds the
/// connector it asks for; the error names what is wrong.
pub fn connectable(url: &str) -> Result<Connectable, String> {
    let keys = split_tls_keys(url);
    let (mode, check) = match keys.sslmode.as_deref() {
        None | Some("prefer") => (SslMode::Prefer, Check::Nothing),
        Some("disable") => (SslMode::Disable, Check::Nothing),
        Some("require") if keys.files.sslrootcert.is_some() => (SslMode::Require, Check::Ca),
        Some("require") => (SslMode::Require, Check::Nothing),
        Some("verify-ca") => (SslMode::Require, Check::Ca),
        Some("verify-full") => (SslMode::Require, Check::CaAndHost),
        Some(other) => {
            return Err(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ))
        }
    };
    let mut config: tokio_postgres::Config = keys.rest.parse().map_err(|e| format!("{e}"))?;
    config.ssl_mode(mode);
    // Plain TCP reads no file, as libpq ignores the file keys then.
    let files = if mode == SslMode::Disable {
        TlsFiles::default()
    } else {
        keys.files
    };
    let tls = connector(check, &files)?;
    Ok(Connectable { config, tls })
}

fn connector(check: Check, files: &TlsFiles) -> Result<MakeTlsConnector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    builder
        .danger_accept_invalid_certs(check == Check::Nothing)
        .danger_accept_invalid_hostnames(check != Check::CaAndHost);
    if check != Check::Nothing {
        if let Some(pem) = files.root_certificates()? {
            let ca = native_tls::Certificate::from_pem(&pem)
                .map_err(|e| format!("sslrootcert {}: {e}", named(&files.sslrootcert)))?;
            builder.add_root_certificate(ca);
        }
    }
    if let Some(client) = files.client_certificate()? {
        let identity = native_tls::Identity::from_pkcs8(&client.certificate, &client.pkcs8_key)
            .map_err(|e| format!("sslcert {}: {e}", named(&files.sslcert)))?;
        builder.identity(identity);
    }
    let connector = builder.build().map_err(|e| format!("TLS: {e}"))?;
    Ok(MakeTlsConnector::new(connector))
}

/// The file a setting names, for an error.
fn named(setting: &Option<String>) -> &str {
    setting.as_deref().unwrap_or_default()
}

/// Takes the TLS keys out of a URL's query string (decoded)
/// or out of `key=value` words.
fn split_tls_keys(url: &str) -> TlsKeys {
    let mut keys = TlsKeys::default();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_url {
        keys.rest = tls_files::split_query(url, |key, value| keys.take(key, value));
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|word| match word.split_once('=') {
                Some((key, value)) => !keys.take(key.trim(), value.trim()),
                None => true,
            })
            .collect();
        keys.rest = kept.join(" ");
    }
    keys
}

impl TlsKeys {
    /// Keeps `key`'s value when it is a TLS key; false for any other key.
    fn take(&mut self, key: &str, value: &str) -> bool {
        match key {
            "sslmode" => self.sslmode = Some(value.to_owned()),
            _ => return self.files.take(key, value),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_keys_come_out_of_a_url_and_the_rest_stays() {
        let keys = split_tls_keys(
            "postgres://u:p@db:5432/chat?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(keys.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(keys.files.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(keys.rest, "postgres://u:p@db:5432/chat?application_name=x");
        let plain = split_tls_keys("postgres://db/chat?sslmode=require");
        assert_eq!(plain.rest, "postgres://db/chat");
        assert_eq!(
            split_tls_keys("postgres://db/chat").rest,
            "postgres://db/chat"
        );
    }

    #[test]
    fn the_tls_keys_come_out_of_key_value_words() {
        let keys = split_tls_keys(
            "host=db user=u sslmode=require sslcert=/c.pem dbname=chat sslkey=/k.pem",
        );
        assert_eq!(keys.sslmode.as_deref(), Some("require"));
        assert_eq!(keys.files.sslrootcert, None);
        assert_eq!(keys.files.sslcert.as_deref(), Some("/c.pem"));
        assert_eq!(keys.files.sslkey.as_deref(), Some("/k.pem"));
        assert_eq!(keys.rest, "host=db user=u dbname=chat");
    }

    #[test]
    fn a_client_certificate_needs_its_key_in_pem() {
        let dir = std::env::temp_dir().join(format!("tls-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
        let url = |query: &str| format!("postgres://db/x?sslmode=require&{query}");
        let error = |query: &str| connectable(&url(query)).err().unwrap_or_default();
        let (cert, key) = (cert.display(), key.display());
        assert!(error(&format!("sslcert={cert}")).contains("together"));
        assert!(error(&format!("sslkey={key}")).contains("together"));
        let broken = error(&format!("sslcert={cert}&sslkey={key}"));
        assert!(
            broken.contains("not an unencrypted PEM private key"),
            "{broken}"
        );
        let missing = error(&format!("sslcert={cert}&sslkey=/no/key.pem"));
        assert!(missing.contains("sslkey /no/key.pem"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn each_mode_sets_what_tokio_postgres_negotiates() {
        let mode = |url: &str| connectable(url).map(|c| c.config.get_ssl_mode());
        assert_eq!(
            mode("postgres://db/x"),
            Ok(SslMode::Prefer),
            "libpq's default"
        );
        assert_eq!(
            mode("postgres://db/x?sslmode=disable"),
            Ok(SslMode::Disable)
        );
        assert_eq!(mode("host=db sslmode=verify-ca"), Ok(SslMode::Require));
        assert!(mode("postgres://db/x?sslmode=sometimes").is_err());
        let plain = "postgres://db/x?sslmode=disable&sslrootcert=/no/ca.pem\
                     &sslcert=/no/c.pem&sslkey=/no/k.pem";
        assert_eq!(mode(plain), Ok(SslMode::Disable), "no file read");
        let missing = connectable("postgres://db/x?sslmode=verify-full&sslrootcert=/no/such.pem");
        assert!(missing.is_err_and(|e| e.contains("/no/such.pem")));
    }
}
