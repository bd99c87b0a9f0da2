//! Password hashing, the only user of `argon2`. Hashing is deliberately slow, so it
//! runs on the blocking pool with a bound on how many run at once; the async workers
//! never stall on it. Unknown emails are checked against a dummy hash so login takes
//! the same time whether or not the account exists.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("the hashing pool is gone")]
    PoolClosed,
}

/// Argon2id hashing with bounded concurrency.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32, concurrency: usize) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| HashError::Params(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = hash_now(&argon2, "not a real password")?.into();
        Ok(PasswordHasher {
            argon2,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash,
        })
    }

    /// A PHC-format argon2id hash of the password.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let argon2 = self.argon2.clone();
        self.run_blocking(move || hash_now(&argon2, &password))
            .await?
    }

    /// Whether the password matches the stored hash. With no stored hash (unknown
    /// user) a dummy is checked, and the answer is always `false`.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self
            .run_blocking(move || verify_now(&password, &hash))
            .await?;
        Ok(known && matches)
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::PoolClosed)?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(job))
            .await
            .map_err(|_| HashError::PoolClosed)
    }
}

fn hash_now(argon2: &Argon2<'_>, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Hashing(e.to_string()))
}

/// Verifies a PHC hash; Django's `argon2$argon2id$...` form is accepted too, so
/// users imported from the Django backend keep their passwords.
fn verify_now(password: &str, stored: &str) -> bool {
    let phc = stored
        .strip_prefix("argon2")
        .filter(|rest| rest.starts_with("$argon2"));
    let Ok(parsed) = PasswordHash::new(phc.unwrap_or(stored)) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let hasher = PasswordHasher::new(1024, 1, 2).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher.verify("wrong".into(), Some(hash)).await.unwrap());
        assert!(!hasher.verify("correct horse".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn django_argon2_hashes_are_accepted() {
        let hasher = PasswordHasher::new(1024, 1, 1).unwrap();
        let hash = hasher.hash("pw".into()).await.unwrap();
        let django = format!("argon2{hash}");
        assert!(hasher.verify("pw".into(), Some(django)).await.unwrap());
    }
}
