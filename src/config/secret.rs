//! The signing secret: a production server refuses a missing, well-known or
//! short one; a debug server generates one once and keeps it in the data
//! directory (mode 0600), so tokens survive restarts.

use super::ConfigError;

/// Secrets that ship in examples and must never reach production.
const KNOWN_DEFAULT_SECRETS: &[&str] = &[
    "",
    "changeme",
    "change-me",
    "secret",
    "your-production-secret-key",
    "django-insecure-change-me",
];

/// Production needs a real secret. In debug mode a missing one is generated once and
/// kept in the data directory, so tokens survive restarts.
pub fn resolve_secret(
    given: Option<&str>,
    debug: bool,
    data_dir: &std::path::Path,
) -> Result<String, ConfigError> {
    match given {
        Some(secret) if !debug => {
            if KNOWN_DEFAULT_SECRETS.contains(&secret.trim().to_lowercase().as_str()) {
                Err(ConfigError::DefaultSecret)
            } else if secret.len() < 32 {
                Err(ConfigError::ShortSecret(secret.len()))
            } else {
                Ok(secret.to_owned())
            }
        }
        Some(secret) => Ok(secret.to_owned()),
        None if !debug => Err(ConfigError::MissingSecret),
        None => generated_secret(data_dir),
    }
}

fn generated_secret(data_dir: &std::path::Path) -> Result<String, ConfigError> {
    let path = data_dir.join("secret_key");
    let wrap = |source| ConfigError::SecretFile {
        path: path.clone(),
        source,
    };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if !existing.trim().is_empty() {
            return Ok(existing.trim().to_owned());
        }
    }
    std::fs::create_dir_all(data_dir).map_err(wrap)?;
    let secret = crate::digest::random_hex(32);
    write_private(&path, &secret).map_err(wrap)?;
    Ok(secret)
}

/// Writes a file only its owner can read or write (mode 0600 from its
/// creation, so it is never readable by others, even for a moment).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
