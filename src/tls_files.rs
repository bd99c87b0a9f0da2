//! The PEM files that TLS settings name (a CA, a client certificate and its
//! key), read alike for PostgreSQL and Redis; the only user of `openssl`,
//! the system's OpenSSL that `native-tls` runs on.
//!
//! A client key may be in any unencrypted PEM form OpenSSL reads: PKCS#8
//! (`BEGIN PRIVATE KEY`, what OpenSSL 3 writes), traditional RSA (PKCS#1) or
//! EC (SEC1). It comes out as PKCS#8, the one form `native-tls` takes. An
//! encrypted key is refused, never prompted for.

/// The file at `path` that the setting `what` names; the error names both.
pub fn read(what: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {path}: {e}"))
}

/// The unencrypted PEM key at `path` (named by the setting `what`), as
/// PKCS#8 PEM.
pub fn pkcs8_key(what: &str, path: &str) -> Result<Vec<u8>, String> {
    let pem = read(what, path)?;
    // A callback that gives no password: an encrypted key fails here rather
    // than OpenSSL asking for its password on the terminal.
    let no_password = |_: &mut [u8]| Ok(0);
    let key = openssl::pkey::PKey::private_key_from_pem_callback(&pem, no_password)
        .map_err(|e| format!("{what} {path}: not an unencrypted PEM private key ({e})"))?;
    key.private_key_to_pem_pkcs8()
        .map_err(|e| format!("{what} {path}: {e}"))
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
            let pkcs8 = pkcs8_key("sslkey", path.to_str().unwrap()).unwrap();
            assert!(pkcs8.starts_with(b"-----BEGIN PRIVATE KEY-----"), "{file}");
            let back = PKey::private_key_from_pem(&pkcs8).unwrap();
            let original = PKey::private_key_from_pem(&pem).unwrap();
            assert!(back.public_eq(&original), "{file}: the same key");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
