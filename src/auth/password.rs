//! Password hashing, the only user of `argon2` and `base64`. Hashing is
//! deliberately slow, so it runs on the blocking pool with a bound on how many
//! run at once; the async workers never stall on it. Unknown emails are checked
//! against a dummy hash so login takes the same time whether or not the account
//! exists.
//!
//! New hashes are argon2id in PHC form. Hashes imported from the Django backend
//! verify too: Django's `argon2$argon2id$...` and its default
//! `pbkdf2_sha256$<rounds>$<salt>$<base64>`; a match on either asks the caller
//! to store an argon2id hash instead, as Django rehashes with its current
//! hasher. A Django hash starting with `!` is an unusable password: nothing
//! matches it. Any other format fails like a wrong password.

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
    /// user) a dummy is checked, and the answer is always `Wrong`.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verdict, HashError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let verdict = self
            .run_blocking(move || verify_now(&password, &hash))
            .await?;
        Ok(if known { verdict } else { Verdict::Wrong })
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

/// What a password check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password matches a hash of ours.
    Matches,
    /// The password matches a hash of another format (the Django backend's):
    /// store an argon2id hash of it in its place.
    MatchesRehash,
    /// A wrong password, an unusable one, or a format this server does not verify.
    Wrong,
}

impl Verdict {
    pub fn matches(self) -> bool {
        self != Verdict::Wrong
    }
}

/// How a stored hash is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// A PHC-format argon2 hash (ours: argon2id).
    Argon2,
    /// Django's `argon2$` prefix before a PHC argon2 hash.
    DjangoArgon2,
    /// Django's `pbkdf2_sha256$<rounds>$<salt>$<base64 hash>`.
    DjangoPbkdf2,
    /// Django's unusable password (`!` and random text): matches nothing, by design.
    Unusable,
    /// Anything else (bcrypt, md5, scrypt, ...): matches nothing.
    Unknown,
}

/// PBKDF2 rounds beyond which a hash is refused rather than computed: Django
/// 5.2 uses 1,000,000, and a stored hash must not pin a thread for minutes.
pub const PBKDF2_MAX_ROUNDS: u32 = 20_000_000;

impl HashFormat {
    /// The format of a stored hash, as far as its text shows.
    pub fn of(stored: &str) -> HashFormat {
        if stored.starts_with('!') {
            HashFormat::Unusable
        } else if stored.starts_with("$argon2") {
            HashFormat::Argon2
        } else if stored.starts_with("argon2$argon2") {
            HashFormat::DjangoArgon2
        } else if DjangoPbkdf2::parse(stored).is_some() {
            HashFormat::DjangoPbkdf2
        } else {
            HashFormat::Unknown
        }
    }

    /// Whether a password can ever match a hash of this format here.
    pub fn is_verifiable(self) -> bool {
        !matches!(self, HashFormat::Unusable | HashFormat::Unknown)
    }
}

/// The parts of a Django `pbkdf2_sha256` hash.
struct DjangoPbkdf2<'a> {
    rounds: u32,
    salt: &'a str,
    hash: Vec<u8>,
}

impl<'a> DjangoPbkdf2<'a> {
    fn parse(stored: &'a str) -> Option<Self> {
        use base64::Engine as _;
        let mut parts = stored.split('$');
        let (Some("pbkdf2_sha256"), Some(rounds), Some(salt), Some(hash), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let rounds = rounds
            .parse()
            .ok()
            .filter(|r| (1..=PBKDF2_MAX_ROUNDS).contains(r))?;
        let hash = base64::engine::general_purpose::STANDARD
            .decode(hash)
            .ok()?;
        (!hash.is_empty() && hash.len() <= 64).then_some(DjangoPbkdf2 { rounds, salt, hash })
    }

    fn matches(&self, password: &str) -> bool {
        let (password, salt) = (password.as_bytes(), self.salt.as_bytes());
        crate::digest::pbkdf2_sha256_matches(password, salt, self.rounds, &self.hash)
    }
}

/// Checks a password against a stored hash of any format [`HashFormat`] knows.
fn verify_now(password: &str, stored: &str) -> Verdict {
    let (matches, ours) = match HashFormat::of(stored) {
        HashFormat::Argon2 => (argon2_matches(password, stored), true),
        HashFormat::DjangoArgon2 => (argon2_matches(password, &stored["argon2".len()..]), false),
        HashFormat::DjangoPbkdf2 => {
            let matches = DjangoPbkdf2::parse(stored).is_some_and(|h| h.matches(password));
            (matches, false)
        }
        HashFormat::Unusable | HashFormat::Unknown => (false, true),
    };
    match (matches, ours) {
        (false, _) => Verdict::Wrong,
        (true, true) => Verdict::Matches,
        (true, false) => Verdict::MatchesRehash,
    }
}

fn argon2_matches(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
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
        let verify = |password: &str, hash: Option<&str>| {
            hasher.verify(password.into(), hash.map(str::to_owned))
        };
        assert_eq!(
            verify("correct horse", Some(&hash)).await.unwrap(),
            Verdict::Matches
        );
        assert_eq!(verify("wrong", Some(&hash)).await.unwrap(), Verdict::Wrong);
        assert_eq!(verify("correct horse", None).await.unwrap(), Verdict::Wrong);
    }

    #[tokio::test]
    async fn django_argon2_hashes_match_and_ask_for_a_rehash() {
        let hasher = PasswordHasher::new(1024, 1, 1).unwrap();
        let hash = hasher.hash("pw".into()).await.unwrap();
        let django = format!("argon2{hash}");
        assert_eq!(HashFormat::of(&django), HashFormat::DjangoArgon2);
        let verdict = hasher.verify("pw".into(), Some(django.clone())).await;
        assert_eq!(verdict.unwrap(), Verdict::MatchesRehash);
        let verdict = hasher.verify("pW".into(), Some(django)).await;
        assert_eq!(verdict.unwrap(), Verdict::Wrong);
    }

    /// Made by Django 5.2: `PBKDF2PasswordHasher().encode("correct horse",
    /// "pepperpepper12", 1000)`, the rounds lowered to 1,000 (the format is
    /// the same at any count; tests/django checks the real hasher end to end).
    const DJANGO_PBKDF2: &str =
        "pbkdf2_sha256$1000$pepperpepper12$gmOJXqKrGk/VeTzQos7TbUSoYrYQmlV/xLiHrPxLfko=";

    #[tokio::test]
    async fn django_pbkdf2_hashes_match_and_ask_for_a_rehash() {
        let hasher = PasswordHasher::new(1024, 1, 1).unwrap();
        let verify =
            |password: &str, hash: &str| hasher.verify(password.into(), Some(hash.to_owned()));
        assert_eq!(HashFormat::of(DJANGO_PBKDF2), HashFormat::DjangoPbkdf2);
        let verdict = verify("correct horse", DJANGO_PBKDF2).await.unwrap();
        assert_eq!(verdict, Verdict::MatchesRehash);
        assert_eq!(
            verify("correct horsE", DJANGO_PBKDF2).await.unwrap(),
            Verdict::Wrong
        );
        let other_rounds = DJANGO_PBKDF2.replace("$1000$", "$1001$");
        assert_eq!(
            verify("correct horse", &other_rounds).await.unwrap(),
            Verdict::Wrong
        );
    }

    #[tokio::test]
    async fn unusable_and_unknown_hashes_never_match() {
        let hasher = PasswordHasher::new(1024, 1, 1).unwrap();
        for (stored, format) in [
            ("!Xk3Y9s0p2Qw", HashFormat::Unusable),
            ("!", HashFormat::Unusable),
            ("", HashFormat::Unknown),
            ("bcrypt_sha256$$2b$12$abc", HashFormat::Unknown),
            (
                "md5$salt$5f4dcc3b5aa765d61d8327deb882cf99",
                HashFormat::Unknown,
            ),
            (
                "pbkdf2_sha256$0$salt$q7NzDY61tk4FAt/bbVWKmk08pi6+BhchcbzW0uEfsjM=",
                HashFormat::Unknown,
            ),
            (
                "pbkdf2_sha256$99999999999$s$q7NzDY61tk4FAt/bbVWKmk08pi6+BhchcbzW0uEfsjM=",
                HashFormat::Unknown,
            ),
            ("pbkdf2_sha256$1000$salt$not base64!", HashFormat::Unknown),
            (
                "pbkdf2_sha1$1000$salt$q7NzDY61tk4FAt/bbVWKmk08pi6+BhchcbzW0uEfsjM=",
                HashFormat::Unknown,
            ),
        ] {
            assert_eq!(HashFormat::of(stored), format, "{stored:?}");
            assert!(!format.is_verifiable());
            let verdict = hasher
                .verify(stored.into(), Some(stored.into()))
                .await
                .unwrap();
            assert_eq!(verdict, Verdict::Wrong, "{stored:?}");
        }
    }
}
