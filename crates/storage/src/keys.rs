//! Master keys and the keyring that seals secrets at rest.
//!
//! A [`MasterKey`] is 32 random bytes with a [`KeyId`] derived from it (a hash prefix, so the
//! id reveals nothing of the key). It comes from the environment
//! ([`MASTER_KEY_ENV`], base64) or from a key file in the data directory ([`KEY_FILE_NAME`]),
//! created with mode 0600 on first run. Every sealed value is stored with the id of the key
//! that sealed it, so a [`Keyring`] holding the current key and retired ones can open
//! everything while [`SecretStore::reseal_all`](switchboard_core::SecretStore::reseal_all)
//! moves it all onto the current key.
//!
//! Rotation with key files (`switchboard keys rotate`):
//! 1. [`Keyring::rotate_key_file`] keeps the old key in `retired-keys/<id>.key` and writes a
//!    new `master.key`;
//! 2. open the store with the returned keyring and call `reseal_all`;
//! 3. when [`SqlStore::sealed_key_usage`](crate::SqlStore::sealed_key_usage) shows no value
//!    under the old id, [`Keyring::remove_retired_key_file`] deletes it.
//!
//! With the environment: set the new key in [`MASTER_KEY_ENV`], the old one in
//! [`PREVIOUS_KEYS_ENV`], reseal, then drop the old one.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use switchboard_core::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

/// The environment variable holding the current master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "SWITCHBOARD_MASTER_KEY";
/// The environment variable holding retired master keys still needed to open old values
/// (base64, separated by commas or whitespace).
pub const PREVIOUS_KEYS_ENV: &str = "SWITCHBOARD_PREVIOUS_MASTER_KEYS";
/// The key file in the data directory.
pub const KEY_FILE_NAME: &str = "master.key";
/// The folder of retired key files in the data directory.
pub const RETIRED_KEYS_DIR: &str = "retired-keys";

/// The length of a master key in bytes.
pub const KEY_LEN: usize = 32;

/// The public identifier of a master key: 16 hex digits of a hash of the key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a stored id (16 lowercase hex digits).
    pub fn parse(s: &str) -> Result<KeyId> {
        if s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(Error::invalid(format!(
                "{s:?} is not a key id (16 lowercase hex digits)"
            )))
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// A 256-bit master key. `Debug` shows only its id; the bytes are zeroed on drop.
#[derive(Clone)]
pub struct MasterKey {
    id: KeyId,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for MasterKey {}

impl MasterKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> MasterKey {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        MasterKey::from_zeroizing(bytes)
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey::from_zeroizing(Zeroizing::new(bytes))
    }

    fn from_zeroizing(bytes: Zeroizing<[u8; KEY_LEN]>) -> MasterKey {
        let mut h = Sha256::new();
        h.update(b"switchboard master key id v1\0");
        h.update(bytes.as_ref());
        let id = KeyId(hex::encode(&h.finalize()[..8]));
        MasterKey { id, bytes }
    }

    /// Parses base64 (standard alphabet, padding optional) of exactly 32 bytes. The error
    /// never repeats the input.
    pub fn from_base64(text: &str) -> Result<MasterKey> {
        let trimmed = text.trim().trim_end_matches('=');
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(trimmed)
                .map_err(|_| Error::invalid("a master key must be base64 of 32 bytes"))?,
        );
        if decoded.len() != KEY_LEN {
            return Err(Error::invalid(format!(
                "a master key must be base64 of {KEY_LEN} bytes, not {} bytes",
                decoded.len()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(&decoded);
        Ok(MasterKey::from_zeroizing(bytes))
    }

    /// The key as base64, e.g. to put in [`MASTER_KEY_ENV`].
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.bytes.as_ref()))
    }

    /// Its id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// The key in [`MASTER_KEY_ENV`], if set.
    pub fn from_env() -> Result<Option<MasterKey>> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => MasterKey::from_base64(&v)
                .map(Some)
                .map_err(|e| Error::invalid(format!("{MASTER_KEY_ENV}: {}", e.message()))),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid(format!(
                "{MASTER_KEY_ENV} is not valid UTF-8"
            ))),
        }
    }

    /// Reads the key file `data_dir/master.key`, creating the directory (0700) and a new
    /// random key file (0600) on first run. Creation is atomic: two processes starting at
    /// once end up with the same key.
    pub fn load_or_create(data_dir: &Path) -> Result<MasterKey> {
        let path = data_dir.join(KEY_FILE_NAME);
        match read_key_file(&path)? {
            Some(k) => Ok(k),
            None => {
                create_dir_private(data_dir)?;
                let key = MasterKey::generate();
                match write_key_file_new(&path, &key) {
                    Ok(()) => Ok(key),
                    // Another process won the race: use its key.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        read_key_file(&path)?
                            .ok_or_else(|| key_file_error(&path, "disappeared while being created"))
                    }
                    Err(e) => Err(io_error(&path, "could not create the key file", e)),
                }
            }
        }
    }
}

/// The current master key, which seals, and retired ones, which only open.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl From<MasterKey> for Keyring {
    fn from(key: MasterKey) -> Self {
        Keyring::new(key)
    }
}

impl Keyring {
    /// A keyring with only `current`.
    pub fn new(current: MasterKey) -> Keyring {
        Keyring {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds a retired key that can still open values sealed under it.
    pub fn with_previous(mut self, key: MasterKey) -> Keyring {
        if key != self.current && !self.previous.contains(&key) {
            self.previous.push(key);
        }
        self
    }

    /// The key new values are sealed with.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The retired keys.
    pub fn previous(&self) -> &[MasterKey] {
        &self.previous
    }

    /// The key with id `id`, current or retired.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id.as_str() == id)
    }

    /// The keyring from [`MASTER_KEY_ENV`] and [`PREVIOUS_KEYS_ENV`], if the first is set.
    pub fn from_env() -> Result<Option<Keyring>> {
        let Some(current) = MasterKey::from_env()? else {
            return Ok(None);
        };
        let mut ring = Keyring::new(current);
        if let Ok(list) = std::env::var(PREVIOUS_KEYS_ENV) {
            for (i, part) in list
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .enumerate()
            {
                let key = MasterKey::from_base64(part).map_err(|e| {
                    Error::invalid(format!(
                        "{PREVIOUS_KEYS_ENV}, key {}: {}",
                        i + 1,
                        e.message()
                    ))
                })?;
                ring = ring.with_previous(key);
            }
        }
        Ok(Some(ring))
    }

    /// The keyring of a deployment: from the environment when [`MASTER_KEY_ENV`] is set,
    /// else the key file of `data_dir` (created on first run) and its retired key files.
    pub fn load(data_dir: &Path) -> Result<Keyring> {
        if let Some(ring) = Keyring::from_env()? {
            return Ok(ring);
        }
        let mut ring = Keyring::new(MasterKey::load_or_create(data_dir)?);
        for key in read_retired(data_dir)? {
            ring = ring.with_previous(key);
        }
        Ok(ring)
    }

    /// Rotates the key file of `data_dir`: the current key is kept in
    /// `retired-keys/<id>.key` (0600) and a new random `master.key` replaces it atomically.
    /// Returns the new keyring (new current key, every retired key); reseal with it. Refused
    /// when the key comes from [`MASTER_KEY_ENV`], which only its owner can change.
    pub fn rotate_key_file(data_dir: &Path) -> Result<Keyring> {
        if MasterKey::from_env()?.is_some() {
            return Err(Error::invalid(format!(
                "the master key comes from {MASTER_KEY_ENV}: put a new key there and the old \
                 one in {PREVIOUS_KEYS_ENV}, then reseal"
            )));
        }
        let path = data_dir.join(KEY_FILE_NAME);
        let old = read_key_file(&path)?
            .ok_or_else(|| key_file_error(&path, "does not exist: there is nothing to rotate"))?;
        let retired_dir = data_dir.join(RETIRED_KEYS_DIR);
        create_dir_private(&retired_dir)?;
        let retired = retired_dir.join(format!("{}.key", old.id));
        match write_key_file_new(&retired, &old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(&retired, "could not keep the old key", e)),
        }
        let new = MasterKey::generate();
        let tmp = data_dir.join(format!(".{KEY_FILE_NAME}.{}.tmp", new.id));
        write_key_file_new(&tmp, &new)
            .map_err(|e| io_error(&tmp, "could not write the new key", e))?;
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, "could not replace the key", e))?;
        let mut ring = Keyring::new(new);
        for key in read_retired(data_dir)? {
            ring = ring.with_previous(key);
        }
        Ok(ring)
    }

    /// Deletes the retired key file of `id` (once nothing is sealed under it any more).
    /// Returns whether there was one.
    pub fn remove_retired_key_file(data_dir: &Path, id: &KeyId) -> Result<bool> {
        let path = data_dir.join(RETIRED_KEYS_DIR).join(format!("{id}.key"));
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&path, "could not remove the retired key", e)),
        }
    }
}

fn key_file_error(path: &Path, what: &str) -> Error {
    Error::new(
        ErrorKind::Storage,
        format!("key file {}: {what}", path.display()),
    )
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Storage,
        format!("{what} ({}): {e}", path.display()),
    )
    .with_source(e)
}

fn read_key_file(path: &Path) -> Result<Option<MasterKey>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, "could not read the key file", e)),
    };
    warn_if_readable_by_others(path);
    MasterKey::from_base64(&text)
        .map(Some)
        .map_err(|e| key_file_error(path, e.message()))
}

fn read_retired(data_dir: &Path) -> Result<Vec<MasterKey>> {
    let dir = data_dir.join(RETIRED_KEYS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&dir, "could not list retired keys", e)),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(&dir, "could not list retired keys", e))?;
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "key") {
            paths.push(p);
        }
    }
    paths.sort();
    let mut keys = Vec::new();
    for p in paths {
        if let Some(k) = read_key_file(&p)? {
            keys.push(k);
        }
    }
    Ok(keys)
}

fn create_dir_private(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| io_error(dir, "could not create the data directory", e))
}

/// Writes a key file that must not exist yet, with mode 0600 from the start (never
/// readable by others, not even briefly), and syncs it.
fn write_key_file_new(path: &Path, key: &MasterKey) -> std::io::Result<()> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    // Write to a private temporary name, then link it into place: a reader never sees a
    // half-written key, and an existing file is never replaced.
    let tmp = path.with_extension(format!("partial-{}", key.id));
    let result = (|| {
        let mut f = o.open(&tmp)?;
        let text = Zeroizing::new(format!("{}\n", key.to_base64().expose_secret()));
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the master key file is accessible to other users; run chmod 600 on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_clear_errors() {
        let k = MasterKey::generate();
        let b = k.to_base64();
        let back = MasterKey::from_base64(b.expose_secret()).unwrap();
        assert_eq!(back.id(), k.id());
        assert_eq!(back.bytes(), k.bytes());
        let short = MasterKey::from_base64("AAAA").unwrap_err();
        assert!(short.message().contains("32 bytes"), "{short}");
        let junk = MasterKey::from_base64("not base64 at all!!").unwrap_err();
        assert!(!junk.message().contains("not base64 at all"), "{junk}");
        assert_eq!(KeyId::parse(k.id().as_str()).unwrap(), *k.id());
        assert!(KeyId::parse("XYZ").is_err());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let k = MasterKey::from_bytes([7u8; 32]);
        let b64 = k.to_base64();
        let dbg = format!("{k:?} {:?}", Keyring::new(k.clone()));
        assert!(!dbg.contains(b64.expose_secret()), "{dbg}");
        assert!(!dbg.contains("7, 7"), "{dbg}");
        assert!(dbg.contains(k.id().as_str()));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = MasterKey::from_bytes([1u8; 32]);
        let b = MasterKey::from_bytes([1u8; 32]);
        let c = MasterKey::from_bytes([2u8; 32]);
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(a.id().as_str().len(), 16);
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let k1 = MasterKey::load_or_create(&data).unwrap();
        let k2 = MasterKey::load_or_create(&data).unwrap();
        assert_eq!(k1.id(), k2.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(data.join(KEY_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = fs::metadata(&data).unwrap().permissions().mode();
            assert_eq!(dmode & 0o077, 0);
        }
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE_NAME)]);
    }

    #[test]
    fn concurrent_first_runs_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let d = data.clone();
                std::thread::spawn(move || MasterKey::load_or_create(&d).unwrap())
            })
            .collect();
        let ids: std::collections::BTreeSet<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap().id().clone())
            .collect();
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn a_corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE_NAME), "garbage").unwrap();
        let e = MasterKey::load_or_create(dir.path()).unwrap_err();
        assert!(e.message().contains(KEY_FILE_NAME), "{e}");
        assert!(!e.message().contains("garbage"), "{e}");
    }

    #[test]
    fn rotation_keeps_the_old_key_as_retired() {
        let dir = tempfile::tempdir().unwrap();
        // The environment is not set in unit tests (nothing here sets it).
        if std::env::var(MASTER_KEY_ENV).is_ok() {
            return;
        }
        let old = Keyring::load(dir.path()).unwrap();
        let rotated = Keyring::rotate_key_file(dir.path()).unwrap();
        assert_ne!(rotated.current().id(), old.current().id());
        assert!(rotated.get(old.current().id().as_str()).is_some());
        let reloaded = Keyring::load(dir.path()).unwrap();
        assert_eq!(reloaded.current().id(), rotated.current().id());
        assert_eq!(reloaded.previous().len(), 1);
        assert!(Keyring::remove_retired_key_file(dir.path(), old.current().id()).unwrap());
        assert!(!Keyring::remove_retired_key_file(dir.path(), old.current().id()).unwrap());
        assert!(Keyring::load(dir.path()).unwrap().previous().is_empty());
    }

    #[test]
    fn keyring_finds_current_and_previous() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        let ring = Keyring::new(b.clone())
            .with_previous(a.clone())
            .with_previous(a.clone())
            .with_previous(b.clone());
        assert_eq!(ring.previous().len(), 1);
        assert_eq!(ring.get(a.id().as_str()), Some(&a));
        assert_eq!(ring.get(b.id().as_str()), Some(&b));
        assert!(ring.get("0000000000000000").is_none());
    }
}
