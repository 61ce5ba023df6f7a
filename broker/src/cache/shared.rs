//! The second cache level, in the Redis every replica shares: a credential one replica
//! obtained is a hit on the others, and a lock makes concurrent misses on different
//! replicas one upstream call.
//!
//! Values are credentials, so they are sealed (AES-256-GCM, a fresh random nonce each)
//! with a key kept in the signing-key directory the replicas already share
//! (`credential-cache.key`), and bound to their Redis key as associated data so a value
//! cannot be replayed under another key. Redis sees only ciphertext; an entry expires in
//! Redis when it stops being fresh.

use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use tessera_adapters::target::PlatformCredentials;
use tessera_adapters::{IssuedCredential, Secret};

use super::{Entry, Key, Owner, revoked_by};
use crate::redis::{RedisError, SharedRedis, hex};
use crate::revocation::Revocation;

/// The key file's name in the signing-key directory.
pub const KEY_FILE: &str = "credential-cache.key";

/// Releases the lock only if it is still ours (it may have expired and been taken).
const UNLOCK: &str =
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// What is sealed into Redis. `issued_token_type` is not stored: it is the target's.
#[derive(Serialize, Deserialize)]
struct Stored {
    access_token: String,
    token_type: String,
    expires_at: i64,
    fresh_until: i64,
    /// `aws_credentials` or `postgres_credentials`, when the credential has either.
    #[serde(flatten)]
    platform_credentials: Option<PlatformCredentials>,
    /// Whom it was issued to, for revocations to purge by; absent in entries written by
    /// an older broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<Owner>,
}

/// Keys one SCAN step asks Redis for.
const SCAN_COUNT: usize = 500;

impl Stored {
    fn credential(&self, issued_token_type: &'static str, token_type: &'static str) -> IssuedCredential {
        IssuedCredential {
            access_token: Secret::new(self.access_token.clone()),
            issued_token_type,
            token_type,
            expires_at: self.expires_at,
            platform_credentials: self.platform_credentials.clone(),
        }
    }
}

/// See the module documentation.
pub struct SharedCache {
    redis: SharedRedis,
    seal: LessSafeKey,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache").field("redis", &self.redis).finish_non_exhaustive()
    }
}

/// A held lock: its value, to release it only while still ours.
#[derive(Debug)]
pub struct Lock(String);

impl SharedCache {
    pub fn new(redis: SharedRedis, key: &[u8; 32]) -> Result<Self, io::Error> {
        let unbound = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "credential cache key rejected"))?;
        Ok(Self { redis, seal: LessSafeKey::new(unbound) })
    }

    fn entry_key(&self, key: &Key) -> String {
        self.redis.key("credential", &hex(key))
    }

    fn lock_key(&self, key: &Key) -> String {
        self.redis.key("credential-lock", &hex(key))
    }

    /// The entry for `key`, if another replica (or this one) stored a fresh one.
    /// `issued_token_type` is the asking target's. A value that does not open (another
    /// deployment's key, tampering) is treated as absent.
    pub(super) async fn get(
        &self,
        key: &Key,
        issued_token_type: &'static str,
        now: i64,
    ) -> Result<Option<Entry>, RedisError> {
        let name = self.entry_key(key);
        let mut conn = self.redis.conn();
        let sealed: Option<Vec<u8>> = self.redis.timed("get credential", conn.get(&name)).await?;
        let Some(mut sealed) = sealed else { return Ok(None) };
        let Some(stored) = self.open(&name, &mut sealed) else {
            tracing::warn!(reason = "TS-CACHE-UNSEALABLE", "a shared cache entry did not open; ignored");
            return Ok(None);
        };
        let token_type = match stored.token_type.as_str() {
            "Bearer" => "Bearer",
            "N_A" => "N_A",
            _ => return Ok(None),
        };
        if now >= stored.fresh_until {
            return Ok(None);
        }
        Ok(Some(Entry {
            credential: stored.credential(issued_token_type, token_type),
            fresh_until: stored.fresh_until,
            owner: stored.owner.map(std::sync::Arc::new),
        }))
    }

    /// Store `entry` until it stops being fresh.
    pub(super) async fn put(&self, key: &Key, entry: &Entry, now: i64) -> Result<(), RedisError> {
        let millis = (entry.fresh_until - now).saturating_mul(1000);
        let Ok(millis) = u64::try_from(millis) else { return Ok(()) };
        if millis == 0 {
            return Ok(());
        }
        let name = self.entry_key(key);
        let c = &entry.credential;
        let stored = Stored {
            access_token: c.access_token.expose().clone(),
            token_type: c.token_type.to_string(),
            expires_at: c.expires_at,
            fresh_until: entry.fresh_until,
            platform_credentials: c.platform_credentials.clone(),
            owner: entry.owner.as_deref().cloned(),
        };
        let sealed = self.seal(&name, &stored)?;
        let mut conn = self.redis.conn();
        self.redis.timed("set credential", conn.pset_ex::<_, _, ()>(&name, sealed, millis)).await
    }

    /// Delete every shared entry `revocation` names, whichever replica wrote it: every
    /// credential key is scanned and opened. Returns how many were deleted.
    pub(super) async fn purge(&self, revocation: &Revocation) -> Result<usize, RedisError> {
        let pattern = self.redis.key("credential", "*");
        let mut conn = self.redis.conn();
        let mut names: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .to_owned();
            let (next, batch): (u64, Vec<String>) =
                self.redis.timed("scan credentials", scan.query_async(&mut conn)).await?;
            names.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut purged = 0;
        for name in names {
            let sealed: Option<Vec<u8>> = self.redis.timed("get credential", conn.get(&name)).await?;
            let Some(mut sealed) = sealed else { continue };
            // One that does not open is served to no one (see `get`); it is left to expire.
            let Some(stored) = self.open(&name, &mut sealed) else { continue };
            let credential = stored.credential("", "");
            if revoked_by(revocation, stored.owner.as_ref(), &credential) {
                purged += self.redis.timed("delete credential", conn.del::<_, usize>(&name)).await?;
            }
        }
        Ok(purged)
    }

    /// Take the lock on `key` for `ttl_ms`, unless another replica holds it.
    pub(super) async fn lock(&self, key: &Key, ttl_ms: u64) -> Result<Option<Lock>, RedisError> {
        let mut token = [0u8; 16];
        aws_lc_rs::rand::fill(&mut token).map_err(|_| RedisError::unexpected("lock", "no randomness"))?;
        let token = hex(&token);
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(ttl_ms));
        let mut conn = self.redis.conn();
        let set: Option<String> = self
            .redis
            .timed("lock credential", conn.set_options(self.lock_key(key), &token, options))
            .await?;
        Ok(set.map(|_| Lock(token)))
    }

    /// Release a lock taken by [`SharedCache::lock`]; an expired one is left alone.
    pub(super) async fn unlock(&self, key: &Key, lock: Lock) -> Result<(), RedisError> {
        let script = redis::Script::new(UNLOCK);
        let mut invocation = script.key(self.lock_key(key));
        invocation.arg(lock.0);
        let mut conn = self.redis.conn();
        self.redis.timed("unlock credential", invocation.invoke_async::<i64>(&mut conn)).await.map(|_| ())
    }

    fn seal(&self, name: &str, stored: &Stored) -> Result<Vec<u8>, RedisError> {
        let mut plain =
            serde_json::to_vec(stored).map_err(|_| RedisError::unexpected("seal", "cannot encode"))?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| RedisError::unexpected("seal", "no randomness"))?;
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut plain,
            )
            .map_err(|_| RedisError::unexpected("seal", "encryption failed"))?;
        let mut out = nonce.to_vec();
        out.append(&mut plain);
        Ok(out)
    }

    fn open(&self, name: &str, sealed: &mut [u8]) -> Option<Stored> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self.seal.open_in_place(nonce, Aad::from(name.as_bytes()), body).ok()?;
        serde_json::from_slice(plain).ok()
    }
}

/// The cache key in `dir`, made on first use. Replicas sharing the directory race safely:
/// the file is written whole under a temporary name and linked into place, so the first
/// link wins and everyone reads the winner. A read-only directory (a mounted secret)
/// must already hold it.
pub fn load_or_create_key(dir: &Path) -> io::Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    match read_key(&path) {
        Ok(key) => return Ok(key),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| io::Error::other("no randomness"))?;
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| io::Error::other("no randomness"))?;
    let tmp = dir.join(format!(".{KEY_FILE}.{}", hex(&suffix)));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(URL_SAFE_NO_PAD.encode(key).as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    written?;
    read_key(&path)
}

/// The key file, refused like a signing key when others could read it or its group could
/// write it (see [`check_key_file_mode`](crate::issuer::check_key_file_mode)).
/// Read the cache key in `dir` as [`load_or_create_key`] does (mode and shape checked),
/// making nothing; for `tessera doctor`.
pub fn check_key(dir: &Path) -> io::Result<()> {
    read_key(&dir.join(KEY_FILE)).map(|_| ())
}

fn read_key(path: &Path) -> io::Result<[u8; 32]> {
    let file = std::fs::File::open(path)?;
    crate::issuer::check_key_file_mode(path, &file.metadata()?)
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
    let mut text = String::new();
    // 32 bytes take 43 characters of base64url; a bigger file is not a key.
    file.take(256).read_to_string(&mut text)?;
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} is not base64url", path.display()))
    })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{} must hold 32 bytes", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RedisConfig, SecretUrl};

    fn cache(key: [u8; 32]) -> SharedCache {
        let config = RedisConfig {
            url: SecretUrl::new("redis://127.0.0.1:1"),
            key_prefix: Some("t:".into()),
            timeout: std::time::Duration::from_millis(50),
        };
        SharedCache::new(SharedRedis::connect(&config, "https://tessera.test").unwrap(), &key).unwrap()
    }

    fn stored() -> Stored {
        Stored {
            access_token: "session-token".into(),
            token_type: "N_A".into(),
            expires_at: 2000,
            fresh_until: 1800,
            platform_credentials: None,
            owner: None,
        }
    }

    #[tokio::test]
    async fn sealed_values_open_only_under_their_own_key_name_and_cache_key() {
        let cache = cache([7; 32]);
        let mut sealed = cache.seal("t:credential:aa", &stored()).unwrap();
        assert!(!sealed.windows(13).any(|w| w == b"session-token"), "the token is not readable");
        let opened = cache.open("t:credential:aa", &mut sealed.clone()).unwrap();
        assert_eq!(opened.access_token, "session-token");
        assert!(cache.open("t:credential:bb", &mut sealed.clone()).is_none(), "bound to its name");
        assert!(
            super::SharedCache::open(&self::cache([8; 32]), "t:credential:aa", &mut sealed.clone()).is_none()
        );
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(cache.open("t:credential:aa", &mut sealed).is_none(), "tampering is detected");
        assert!(cache.open("t:credential:aa", &mut [1, 2, 3]).is_none());
    }

    /// Entries keep the members other replicas (and older brokers) write and read:
    /// `aws_credentials` or `postgres_credentials`, or neither.
    #[test]
    fn stored_platform_credentials_keep_their_member_names() {
        let aws = r#"{"access_token":"s","token_type":"N_A","expires_at":2000,"fresh_until":1800,"aws_credentials":{"AccessKeyId":"ASIA","SecretAccessKey":"k","SessionToken":"s","Expiration":"2026-01-01T00:00:00Z"}}"#;
        let read: Stored = serde_json::from_str(aws).unwrap();
        let Some(PlatformCredentials::Aws(c)) = &read.platform_credentials else {
            panic!("no AWS credentials")
        };
        assert_eq!(c.access_key_id, "ASIA");
        assert_eq!(serde_json::to_string(&read).unwrap(), aws, "written back as it was read");
        let login = r#"{"access_token":"p","token_type":"N_A","expires_at":2000,"fresh_until":1800,"postgres_credentials":{"username":"u","password":"p","expires_at":"2026-01-01T00:00:00Z","port":5432}}"#;
        let read: Stored = serde_json::from_str(login).unwrap();
        assert!(
            matches!(&read.platform_credentials, Some(PlatformCredentials::Postgres(c)) if c.port == Some(5432))
        );
        assert_eq!(serde_json::to_string(&read).unwrap(), login);
        let plain: Stored = serde_json::from_str(&serde_json::to_string(&stored()).unwrap()).unwrap();
        assert!(plain.platform_credentials.is_none());
        assert!(!serde_json::to_string(&stored()).unwrap().contains("credentials"));
    }

    #[test]
    fn the_cache_key_is_made_once_and_read_back_by_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key(dir.path()).unwrap();
        let second = load_or_create_key(dir.path()).unwrap();
        assert_eq!(first, second);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE)], "no temporary file left behind");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(dir.path().join(KEY_FILE), "short\n").unwrap();
        assert!(load_or_create_key(dir.path()).is_err(), "a damaged key is an error, never replaced");
    }

    #[test]
    fn the_cache_key_file_is_held_to_the_signing_keys_modes() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        for ok in [0o600, 0o400, 0o640, 0o440] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(ok)).unwrap();
            assert_eq!(load_or_create_key(dir.path()).unwrap(), first, "mode {ok:o}: group read is allowed");
        }
        for bad in [0o644, 0o604, 0o660, 0o620, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let err = load_or_create_key(dir.path()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "mode {bad:o}");
            assert!(
                err.to_string()
                    .contains(&format!("(mode {bad:04o}); make it 0600 (0440 for a Secret volume)")),
                "{err}"
            );
            let names: Vec<_> =
                std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(
                names,
                vec![std::ffi::OsString::from(KEY_FILE)],
                "never replaced, nothing left behind"
            );
        }
    }
}
