//! The files a connection's TLS settings name, and the settings themselves
//! as libpq names them (`sslrootcert`, `sslcert`, `sslkey`, `sslpassword`),
//! taken alike out of a PostgreSQL and a Redis URL; the only user of
//! `openssl`, the system's OpenSSL that `native-tls` runs on.
//!
//! A client key may be in any PEM form OpenSSL reads: PKCS#8 (`BEGIN PRIVATE
//! KEY`, what OpenSSL 3 writes), traditional RSA (PKCS#1) or EC (SEC1),
//! encrypted when `sslpassword` is given. It comes out as unencrypted PKCS#8,
//! the one form `native-tls` takes. An encrypted key without its password
//! is refused, never prompted for.

use std::fmt;

/// A connection's TLS file settings.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    /// The password of an encrypted `sslkey`.
    pub sslpassword: Option<String>,
}

/// A client certificate and its key, both PEM, the key unencrypted PKCS#8.
pub struct ClientCertificate {
    pub certificate: Vec<u8>,
    pub pkcs8_key: Vec<u8>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field(
                "sslpassword",
                &self.sslpassword.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl TlsFiles {
    /// Whether any file is named.
    pub fn names_a_file(&self) -> bool {
        self.sslrootcert.is_some() || self.sslcert.is_some() || self.sslkey.is_some()
    }

    /// Keeps `key`'s value when it is one of these settings; false for any
    /// other key.
    pub fn take(&mut self, key: &str, value: &str) -> bool {
        let slot = match key {
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            "sslpassword" => &mut self.sslpassword,
            _ => return false,
        };
        *slot = Some(value.to_owned());
        true
    }

    /// The PEM that `sslrootcert` names, if any.
    pub fn root_certificates(&self) -> Result<Option<Vec<u8>>, String> {
        let path = self.sslrootcert.as_deref();
        path.map(|path| read("sslrootcert", path)).transpose()
    }

    /// The client certificate that `sslcert` and `sslkey` name, if any.
    pub fn client_certificate(&self) -> Result<Option<ClientCertificate>, String> {
        let (cert, key) = match (self.sslcert.as_deref(), self.sslkey.as_deref()) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err("sslcert and sslkey must be given together".into()),
        };
        Ok(Some(ClientCertificate {
            certificate: read("sslcert", cert)?,
            pkcs8_key: pkcs8_key(key, self.sslpassword.as_deref())?,
        }))
    }
}

/// Takes the query keys that `take` keeps (decoded) out of a URL: the URL
/// without them, its other keys and its fragment kept.
pub fn split_query(url: &str, mut take: impl FnMut(&str, &str) -> bool) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (url, None),
    };
    let Some((base, query)) = before_fragment.split_once('?') else {
        return url.to_owned();
    };
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if !take(&key, &value) {
            kept.append_pair(&key, &value);
        }
    }
    let kept = kept.finish();
    let mut rest = base.to_owned();
    if !kept.is_empty() {
        rest = format!("{rest}?{kept}");
    }
    if let Some(fragment) = fragment {
        rest = format!("{rest}#{fragment}");
    }
    rest
}

/// The file at `path` that the setting `what` names; the error names both.
fn read(what: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {path}: {e}"))
}

/// The PEM key at `path` (`sslkey`), decrypted with `password` when one is
/// given, as unencrypted PKCS#8 PEM.
fn pkcs8_key(path: &str, password: Option<&str>) -> Result<Vec<u8>, String> {
    use openssl::pkey::PKey;
    let pem = read("sslkey", path)?;
    let key = match password {
        Some(password) => PKey::private_key_from_pem_passphrase(&pem, password.as_bytes())
            .map_err(|e| format!("sslkey {path}: not a PEM private key, or sslpassword is wrong ({e})")),
        // A callback that gives no password: an encrypted key fails here
        // rather than OpenSSL asking for its password on the terminal.
        None => PKey::private_key_from_pem_callback(&pem, |_: &mut [u8]| Ok(0)).map_err(|e| {
            format!("sslkey {path}: not an unencrypted PEM private key; an encrypted one needs sslpassword ({e})")
        }),
    }?;
    key.private_key_to_pem_pkcs8()
        .map_err(|e| format!("sslkey {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traditional_rsa_and_ec_keys_become_pkcs8() {
        use openssl::{ec, nid::Nid, pkey::PKey, rsa::Rsa};
        let dir = std::env::temp_dir().join(format!("tls-forms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rsa = Rsa::generate(2048).unwrap();
        let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = ec::EcKey::generate(&group).unwrap();
        let forms = [
            (
                "rsa.pem",
                rsa.private_key_to_pem().unwrap(),
                "BEGIN RSA PRIVATE KEY",
            ),
            (
                "ec.pem",
                ec.private_key_to_pem().unwrap(),
                "BEGIN EC PRIVATE KEY",
            ),
        ];
        for (file, pem, header) in forms {
            assert!(String::from_utf8_lossy(&pem).contains(header));
            let path = dir.join(file);
            std::fs::write(&path, &pem).unwrap();
            let pkcs8 = pkcs8_key(path.to_str().unwrap(), None).unwrap();
            assert!(pkcs8.starts_with(b"-----BEGIN PRIVATE KEY-----"), "{file}");
            let back = PKey::private_key_from_pem(&pkcs8).unwrap();
            let original = PKey::private_key_from_pem(&pem).unwrap();
            assert!(back.public_eq(&original), "{file}: the same key");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_encrypted_key_is_read_with_its_password_only() {
        use openssl::{pkey::PKey, rsa::Rsa, symm::Cipher};
        let dir = std::env::temp_dir().join(format!("tls-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let encrypted = key
            .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"s3cret")
            .unwrap();
        let path = dir.join("encrypted.pem");
        std::fs::write(&path, &encrypted).unwrap();
        let path = path.to_str().unwrap();
        let pkcs8 = pkcs8_key(path, Some("s3cret")).unwrap();
        let back = PKey::private_key_from_pem(&pkcs8).unwrap();
        assert!(back.public_eq(&key), "the same key, unencrypted");
        let wrong = pkcs8_key(path, Some("guess")).err().unwrap();
        assert!(wrong.contains("sslpassword is wrong"), "{wrong}");
        let without = pkcs8_key(path, None).err().unwrap();
        assert!(without.contains("needs sslpassword"), "{without}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn settings_come_out_of_a_query_and_the_rest_stays() {
        let mut files = TlsFiles::default();
        let rest = split_query(
            "postgres://u@db/chat?sslkey=%2Fk.pem&application_name=x&sslpassword=p#f",
            |key, value| files.take(key, value),
        );
        assert_eq!(rest, "postgres://u@db/chat?application_name=x#f");
        assert_eq!(files.sslkey.as_deref(), Some("/k.pem"));
        assert!(files.names_a_file());
        assert!(!format!("{files:?}").contains("\"p\""), "{files:?}");
        let untouched = "rediss://cache:6380/#insecure";
        assert_eq!(split_query(untouched, |_, _| true), untouched);
    }
}
