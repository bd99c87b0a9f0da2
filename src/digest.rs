//! SHA-256, HMAC-SHA-256, PBKDF2 and lowercase hex, the one owner of `sha2`,
//! `hmac`, `pbkdf2` and `subtle`: a chat's pair key is the hex digest of its
//! two users' ids, random ids are hex, events between nodes carry a MAC under a
//! key derived from `SECRET_KEY`, and passwords imported from the Django
//! backend are PBKDF2-HMAC-SHA-256 hashes.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Bytes of a MAC.
pub const MAC_BYTES: usize = 32;

/// Signs and checks messages with HMAC-SHA-256 under one key. The key's inner
/// and outer pads are hashed once, when the signer is made: each message then
/// costs only its own bytes.
#[derive(Clone)]
pub struct Signer {
    keyed: Hmac<Sha256>,
}

impl Signer {
    /// A signer whose key is derived from `secret` for one `purpose` (HMAC
    /// of the purpose under the secret), so no two uses share a key and the
    /// secret itself never signs anything.
    pub fn derived(secret: &[u8], purpose: &str) -> Self {
        let key = Self::keyed(secret).mac(&[purpose.as_bytes()]);
        Self::keyed(&key)
    }

    fn keyed(key: &[u8]) -> Self {
        Signer {
            keyed: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length"),
        }
    }

    /// The MAC of the concatenated parts.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `message` (compared in constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }
}

/// The SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Whether PBKDF2-HMAC-SHA-256 of `password` with `salt` over `rounds`
/// rounds gives `expected` (compared in constant time; `expected` of any
/// length up to 64 bytes is derived to that length).
pub fn pbkdf2_sha256_matches(password: &[u8], salt: &[u8], rounds: u32, expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let mut derived = [0u8; 64];
    let Some(derived) = derived.get_mut(..expected.len()) else {
        return false;
    };
    if expected.is_empty() || rounds == 0 {
        return false;
    }
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, derived);
    derived.ct_eq(expected).into()
}

/// `bytes` as lowercase hex, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// `n` random bytes as lowercase hex (token ids, generated secrets).
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_7914_vector_and_nothing_else() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1.
        let expected = [
            0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f, 0xec, 0x16, 0x91, 0xc2, 0x25, 0x44,
            0xb6, 0x05, 0xf9, 0x41, 0x85, 0x21, 0x6d, 0xde, 0x04, 0x65, 0xe6, 0x8b, 0x9d, 0x57,
            0xc2, 0x0d, 0xac, 0xbc,
        ];
        assert!(pbkdf2_sha256_matches(b"passwd", b"salt", 1, &expected));
        assert!(!pbkdf2_sha256_matches(b"passwd", b"salt", 2, &expected));
        assert!(!pbkdf2_sha256_matches(b"passwe", b"salt", 1, &expected));
        assert!(!pbkdf2_sha256_matches(b"passwd", b"salt", 1, &[]));
        assert!(!pbkdf2_sha256_matches(b"passwd", b"salt", 0, &expected));
    }

    #[test]
    fn digests_and_hex_match_sha256sum() {
        // `printf abc | sha256sum`
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn macs_match_rfc_4231_and_keys_differ_by_purpose() {
        // RFC 4231, test case 2.
        let signer = Signer::keyed(b"Jefe");
        let tag = signer.mac(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(signer.verify(b"what do ya want for nothing?", &tag));
        assert!(!signer.verify(b"what do ya want for nothing!", &tag));
        let bus = Signer::derived(b"secret", "bus");
        let other = Signer::derived(b"secret", "other");
        let elsewhere = Signer::derived(b"another secret", "bus");
        let mac = bus.mac(&[b"event"]);
        assert!(bus.verify(b"event", &mac));
        assert!(!other.verify(b"event", &mac));
        assert!(!elsewhere.verify(b"event", &mac));
    }

    #[test]
    fn random_hex_is_two_lowercase_digits_per_byte_and_differs_per_call() {
        let (a, b) = (random_hex(8), random_hex(8));
        assert_eq!(a.len(), 16);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b, "64 random bits twice in a row");
        assert_eq!(random_hex(0), "");
    }
}
