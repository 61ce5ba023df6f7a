//! The key directory: one `<kid>.json` file per key, shared by every replica.
//!
//! Files are written atomically (a 0600 temp file in the same directory, fsync, rename,
//! fsync of the directory), so a reader sees a whole old file or a whole new one. Creation
//! and rotation hold an exclusive `flock` on `.lock`; readers take it shared when they
//! can, so they never see a rotation half done. A read-only directory (a mounted secret)
//! is read without the lock: nothing can change it from here.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_adapters::target::SigningAlgorithm;

use super::IssuerError;
use super::keys::{KeyFile, KeyMaterial, KeyState, StoredKey};

const LOCK_FILE: &str = ".lock";

/// Key files are small; anything larger is not one of ours.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Refuse a secret key file (a signing key, the credential cache key) that others could
/// read or its group could write. The group may read: Kubernetes gives Secret files group
/// read when the pod sets `fsGroup`, so the non-root broker can read them.
pub(crate) fn check_key_file_mode(path: &Path, meta: &fs::Metadata) -> Result<(), IssuerError> {
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o037 != 0 {
        return Err(IssuerError::InsecurePermissions { path: path.to_path_buf(), mode });
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub(crate) struct KeyDir {
    path: PathBuf,
}

/// Held while the directory is locked; dropping it closes the file, which releases the lock.
#[derive(Debug)]
pub(crate) struct DirLock(#[allow(dead_code)] File);

impl KeyDir {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Create the directory (mode 0700) if it is missing.
    pub(crate) fn create(&self) -> Result<(), IssuerError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|e| IssuerError::io("create key directory", &self.path, e))?;
        let meta =
            fs::metadata(&self.path).map_err(|e| IssuerError::io("read key directory", &self.path, e))?;
        if !meta.is_dir() {
            return Err(IssuerError::io(
                "use key directory",
                &self.path,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %self.path.display(),
                mode = format!("{mode:04o}"),
                "key directory is accessible by group or others; 0700 is expected"
            );
        }
        Ok(())
    }

    /// Take the exclusive lock, waiting for other replicas to finish.
    pub(crate) fn lock_exclusive(&self) -> Result<DirLock, IssuerError> {
        let path = self.path.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| IssuerError::io("open lock file", &path, e))?;
        // `File::lock` is stable since 1.89, past the workspace's declared rust-version.
        file.lock().map_err(|e| IssuerError::io("lock", &path, e))?;
        Ok(DirLock(file))
    }

    /// Take the shared lock if the lock file exists and can be opened. `None` when it
    /// cannot: a directory no one has written to yet, or a read-only one.
    pub(crate) fn lock_shared(&self) -> Result<Option<DirLock>, IssuerError> {
        let path = self.path.join(LOCK_FILE);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied) => {
                return Ok(None);
            }
            Err(e) => return Err(IssuerError::io("open lock file", &path, e)),
        };
        file.lock_shared().map_err(|e| IssuerError::io("lock", &path, e))?;
        Ok(Some(DirLock(file)))
    }

    /// Every key in the directory, under the shared lock when there is one.
    pub(crate) fn read(
        &self,
        cache: &HashMap<String, Arc<KeyMaterial>>,
    ) -> Result<Vec<StoredKey>, IssuerError> {
        let _lock = self.lock_shared()?;
        self.load(cache)
    }

    /// Every key in the directory. The caller holds whatever lock it needs. `cache` maps
    /// kids to material already parsed, so unchanged keys are not parsed again.
    pub(crate) fn load(
        &self,
        cache: &HashMap<String, Arc<KeyMaterial>>,
    ) -> Result<Vec<StoredKey>, IssuerError> {
        let entries =
            fs::read_dir(&self.path).map_err(|e| IssuerError::io("read key directory", &self.path, e))?;
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IssuerError::io("read key directory", &self.path, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Dot files are the lock, temp files mid-write and a mounted secret's
            // `..data` links; none is a key.
            let Some(stem) = name.strip_suffix(".json").filter(|_| !name.starts_with('.')) else {
                continue;
            };
            if let Some(key) = self.load_file(&entry.path(), stem, cache)? {
                keys.push(key);
            }
        }
        sort(&mut keys);
        Ok(keys)
    }

    fn load_file(
        &self,
        path: &Path,
        stem: &str,
        cache: &HashMap<String, Arc<KeyMaterial>>,
    ) -> Result<Option<StoredKey>, IssuerError> {
        let invalid = |reason: String| IssuerError::InvalidKeyFile { path: path.to_path_buf(), reason };
        let mut file = match File::open(path) {
            Ok(file) => file,
            // Deleted by a rotation between listing and opening: it was past its time.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IssuerError::io("open key file", path, e)),
        };
        let meta = file.metadata().map_err(|e| IssuerError::io("read key file", path, e))?;
        if !meta.is_file() {
            return Ok(None);
        }
        check_key_file_mode(path, &meta)?;
        if meta.len() > MAX_KEY_FILE_BYTES {
            return Err(invalid(format!("larger than {MAX_KEY_FILE_BYTES} bytes")));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| IssuerError::io("read key file", path, e))?;
        // serde_json's message names a position, never the text it read.
        let parsed: KeyFile = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let key = parsed.into_key(cache.get(stem)).map_err(invalid)?;
        if key.info.kid != stem {
            return Err(invalid(format!("holds kid `{}`; the file must be named after it", key.info.kid)));
        }
        Ok(Some(key))
    }

    /// Write `key` to `<kid>.json` atomically, replacing any earlier version.
    pub(crate) fn write(&self, key: &StoredKey) -> Result<(), IssuerError> {
        let path = self.path.join(format!("{}.json", key.info.kid));
        let tmp = self.path.join(format!(".{}.{}.tmp", key.info.kid, uuid::Uuid::new_v4().simple()));
        let mut bytes = serde_json::to_vec_pretty(&KeyFile::from_key(key)).map_err(|e| {
            IssuerError::io("encode key file", &path, io::Error::new(io::ErrorKind::InvalidData, e))
        })?;
        bytes.push(b'\n');
        let written = write_new_file(&tmp, &bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| IssuerError::io("write key file", &path, e));
        // Best effort: `bytes` held the private key, and the temp file may be half there.
        bytes.fill(0);
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        self.sync()
    }

    /// Delete `<kid>.json`.
    pub(crate) fn remove(&self, kid: &str) -> Result<(), IssuerError> {
        let path = self.path.join(format!("{kid}.json"));
        match fs::remove_file(&path) {
            Ok(()) => self.sync(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IssuerError::io("delete key file", &path, e)),
        }
    }

    /// Make renames and deletions durable.
    fn sync(&self) -> Result<(), IssuerError> {
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| IssuerError::io("sync key directory", &self.path, e))
    }
}

fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The one order keys are kept in, so two reads of the same files compare equal.
pub(crate) fn sort(keys: &mut [StoredKey]) {
    keys.sort_by(|a, b| {
        let key = |k: &StoredKey| (k.info.alg, k.info.state, k.info.created_at, k.info.kid.clone());
        key(a).cmp(&key(b))
    });
}

/// Whether `keys` has an active and a next key for every algorithm.
pub(crate) fn complete(keys: &[StoredKey], algorithms: &[SigningAlgorithm]) -> bool {
    algorithms.iter().all(|&alg| has(keys, alg, KeyState::Active) && has(keys, alg, KeyState::Next))
}

fn has(keys: &[StoredKey], alg: SigningAlgorithm, state: KeyState) -> bool {
    keys.iter().any(|k| k.info.alg == alg && k.info.state == state)
}

/// Create, under the exclusive lock, whatever active and next keys are missing. Re-reads
/// after taking the lock: another replica may have created them while this one waited.
pub(crate) fn ensure_keys(
    dir: &KeyDir,
    algorithms: &[SigningAlgorithm],
    now: i64,
    cache: &HashMap<String, Arc<KeyMaterial>>,
) -> Result<Vec<StoredKey>, IssuerError> {
    let _lock = dir.lock_exclusive()?;
    let mut keys = dir.load(cache)?;
    create_missing(dir, algorithms, now, &mut keys)?;
    Ok(keys)
}

/// With the exclusive lock held: create a key for each missing (algorithm, state) pair.
/// Returns the kids created.
pub(crate) fn create_missing(
    dir: &KeyDir,
    algorithms: &[SigningAlgorithm],
    now: i64,
    keys: &mut Vec<StoredKey>,
) -> Result<Vec<String>, IssuerError> {
    let mut created = Vec::new();
    for &alg in algorithms {
        for state in [KeyState::Active, KeyState::Next] {
            if !has(keys, alg, state) {
                let key = StoredKey::new(KeyMaterial::generate(alg)?, state, now);
                dir.write(&key)?;
                tracing::info!(kid = %key.info.kid, alg = alg.as_str(), state = %state, "created signing key");
                created.push(key.info.kid.clone());
                keys.push(key);
            }
        }
    }
    Ok(created)
}
