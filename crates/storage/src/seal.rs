//! Sealing: XChaCha20-Poly1305 under the keyring's current key, with associated data that
//! binds each ciphertext to its place (purpose, organization, row key), so a sealed value
//! copied into another row or organization does not open.
//!
//! Layout of a sealed value: `0x01` (format version) ‖ 24-byte random nonce ‖ ciphertext
//! with its 16-byte tag. The key id is stored beside it in its own column.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use switchboard_core::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

use crate::keys::Keyring;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// What a sealed value is, for its associated data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// A connection's credentials (row key: the connection id).
    Credentials,
    /// A named secret (row key: its name).
    Secret,
    /// A subscription's `clientState` (row key: the subscription id).
    ClientState,
    /// An end user's linked-account credentials (row key: `<platform>/<user id>`).
    UserCredentials,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Credentials => "credentials",
            Purpose::Secret => "secret",
            Purpose::ClientState => "client_state",
            Purpose::UserCredentials => "user_credentials",
        }
    }
}

fn aad(purpose: Purpose, org: &str, row: &str) -> Vec<u8> {
    // Lengths first, so no two (org, row) pairs produce the same bytes.
    format!(
        "switchboard/v1/{}/{}:{org}/{}:{row}",
        purpose.label(),
        org.len(),
        row.len()
    )
    .into_bytes()
}

/// A sealed value and the id of the key that sealed it.
pub(crate) struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// Seals `plaintext` under the current key.
pub(crate) fn seal(
    ring: &Keyring,
    purpose: Purpose,
    org: &str,
    row: &str,
    plaintext: &[u8],
) -> Result<Sealed> {
    let key = ring.current();
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.bytes()));
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = aad(purpose, org, row);
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| Error::new(ErrorKind::Storage, "sealing failed"))?;
    let mut bytes = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    bytes.push(VERSION);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&ct);
    Ok(Sealed {
        key_id: key.id().as_str().to_owned(),
        bytes,
    })
}

/// Opens a sealed value. Errors name the place and the key id, never the content.
pub(crate) fn open(
    ring: &Keyring,
    purpose: Purpose,
    org: &str,
    row: &str,
    key_id: &str,
    bytes: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let what = || format!("the sealed {} {row:?}", purpose.label());
    let key = ring.get(key_id).ok_or_else(|| {
        Error::new(
            ErrorKind::Storage,
            format!(
                "{} was sealed with master key {key_id}, which is not in the keyring (current key: {}); \
                 add the old key as a previous key",
                what(),
                ring.current().id()
            ),
        )
    })?;
    if bytes.len() < 1 + NONCE_LEN + 16 || bytes[0] != VERSION {
        return Err(Error::new(
            ErrorKind::Storage,
            format!("{} is malformed or of an unknown format", what()),
        ));
    }
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.bytes()));
    let nonce = XNonce::from_slice(&bytes[1..1 + NONCE_LEN]);
    let aad = aad(purpose, org, row);
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: &bytes[1 + NONCE_LEN..],
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| {
            Error::new(
                ErrorKind::Storage,
                format!(
                    "{} failed authentication: it was altered, moved from another row, or the key is wrong",
                    what()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    #[test]
    fn round_trip_and_no_plaintext_in_ciphertext() {
        let ring = Keyring::new(MasterKey::generate());
        let secret = b"xoxb-super-secret-token";
        let s = seal(&ring, Purpose::Secret, "org", "slack.bot", secret).unwrap();
        assert_eq!(s.key_id, ring.current().id().as_str());
        assert!(!s.bytes.windows(secret.len()).any(|w| w == secret));
        let back = open(
            &ring,
            Purpose::Secret,
            "org",
            "slack.bot",
            &s.key_id,
            &s.bytes,
        )
        .unwrap();
        assert_eq!(&back[..], secret);
        // Fresh nonce every time.
        let s2 = seal(&ring, Purpose::Secret, "org", "slack.bot", secret).unwrap();
        assert_ne!(s.bytes, s2.bytes);
    }

    #[test]
    fn ciphertext_is_bound_to_its_place_and_detects_tampering() {
        let ring = Keyring::new(MasterKey::generate());
        let s = seal(&ring, Purpose::Credentials, "orgA", "c1", b"tok").unwrap();
        for (p, org, row) in [
            (Purpose::Credentials, "orgB", "c1"),
            (Purpose::Credentials, "orgA", "c2"),
            (Purpose::Secret, "orgA", "c1"),
        ] {
            let e = open(&ring, p, org, row, &s.key_id, &s.bytes).unwrap_err();
            assert!(e.message().contains("authentication"), "{e}");
        }
        let mut bad = s.bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(open(&ring, Purpose::Credentials, "orgA", "c1", &s.key_id, &bad).is_err());
        assert!(
            open(
                &ring,
                Purpose::Credentials,
                "orgA",
                "c1",
                &s.key_id,
                &[1, 2]
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let old = Keyring::new(MasterKey::generate());
        let s = seal(&old, Purpose::Secret, "o", "n", b"v").unwrap();
        let new = Keyring::new(MasterKey::generate());
        let e = open(&new, Purpose::Secret, "o", "n", &s.key_id, &s.bytes).unwrap_err();
        assert!(e.message().contains(&s.key_id), "{e}");
        let both = new.with_previous(old.current().clone());
        assert_eq!(
            &open(&both, Purpose::Secret, "o", "n", &s.key_id, &s.bytes).unwrap()[..],
            b"v"
        );
    }
}
