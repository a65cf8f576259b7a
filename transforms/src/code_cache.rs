//! Compiled WebAssembly code kept on disk, so a restart loads a component without
//! compiling it: transforms (3-10 s of Cranelift each in a debug build) and the embedded jq
//! component (3.5 s of one core in a release build, about 7 s at the first delivery of
//! every `sluice serve` in a debug build; issue 17).
//!
//! A file is named by the SHA-256 of the component's bytes and of the engine's precompile
//! compatibility hash (wasmtime's version, its configuration, the CPU features compiled for),
//! written atomically, and checked before it is loaded.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::host::{read_regular_file, ReadError, COMPONENT_BYTES_MAX};

/// First bytes of a compiled-code cache file, then the SHA-256 of key and code, then the code.
const CACHE_MAGIC: &[u8; 8] = b"SLUICEC1";

/// Largest compiled-code cache file written or read back, bytes: 256 MiB, eight times
/// the largest component a host loads (compiled code is a few times the component's size);
/// larger code is not cached.
const CACHED_BYTES_MAX: u64 = 8 * COMPONENT_BYTES_MAX;

/// SHA-256 of some bytes.
pub(crate) type Digest = [u8; 32];

/// Feeds what a [`std::hash::Hash`] writes into SHA-256.
struct DigestHasher<'a>(&'a mut Sha256);

impl std::hash::Hasher for DigestHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Never asked for: the digest is read from the `Sha256` itself.
        0
    }
}

/// A folder of compiled code for one engine.
#[derive(Debug)]
pub(crate) struct CodeCache {
    dir: PathBuf,
    /// SHA-256 of the engine's precompile compatibility hash.
    compatibility: Digest,
}

impl CodeCache {
    /// The cache in `dir` (created; temporaries a crash left are removed) for `engine`.
    pub fn new(engine: &Engine, dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        remove_stale_temporaries(&dir);
        let compatibility = {
            use std::hash::Hash;
            let mut h = Sha256::new();
            h.update(b"wasmtime precompile compatibility\0");
            engine.precompile_compatibility_hash().hash(&mut DigestHasher(&mut h));
            h.finalize().into()
        };
        Ok(Self { dir, compatibility })
    }

    /// The component of `bytes` (whose SHA-256 is `content`) for `engine`: loaded from the
    /// cache, or compiled and then written to it (a failure to write is logged, not returned).
    ///
    /// Errors: the bytes are not a component wasmtime can compile.
    pub fn component(&self, engine: &Engine, content: &Digest, bytes: &[u8]) -> wasmtime::Result<Component> {
        let key = self.cache_key(content);
        let file = self.dir.join(format!("{}.cwasm", hex(&key)));
        if let Some(c) = self.read_cached(engine, &file, &key) {
            return Ok(c);
        }
        let c = Component::new(engine, bytes)?;
        let written =
            c.serialize().and_then(|code| write_cached(&self.dir, &file, &key, &code).map_err(wasmtime::Error::from));
        if let Err(e) = written {
            tracing::warn!(file = %file.display(), error = %e, "cannot cache compiled code");
        }
        Ok(c)
    }

    /// The cache key of a component whose bytes have SHA-256 `content`: SHA-256 of that and
    /// of the engine's compatibility hash.
    fn cache_key(&self, content: &Digest) -> Digest {
        let mut h = Sha256::new();
        h.update(b"sluice transform cache v1\0");
        h.update(self.compatibility);
        h.update(content);
        h.finalize().into()
    }

    /// The component cached in `file` for `key`, if the file is a regular file (not a
    /// link) holding our header and code whose SHA-256 (with the key) matches; `None` makes
    /// the caller compile afresh and rewrite the file.
    fn read_cached(&self, engine: &Engine, file: &Path, key: &Digest) -> Option<Component> {
        let data = match read_regular_file(file, CACHED_BYTES_MAX) {
            Ok(Some(d)) => d,
            Ok(None) => {
                tracing::warn!(file = %file.display(), "compiled code cache file is too large; compiling afresh");
                return None;
            }
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot read compiled code; compiling afresh");
                return None;
            }
        };
        let code = data
            .strip_prefix(CACHE_MAGIC.as_slice())
            .and_then(|rest| rest.split_at_checked(32))
            .filter(|(sum, code)| *sum == cache_checksum(key, code).as_slice())
            .map(|(_, code)| code);
        let Some(code) = code else {
            tracing::warn!(file = %file.display(), "compiled code cache file is damaged; compiling afresh");
            return None;
        };
        // SAFETY: `Component::deserialize` requires bytes produced by `Component::serialize`
        // (or `Engine::precompile_component`), unmodified; wasmtime itself rejects, safely,
        // code of another wasmtime version or an incompatible configuration. These bytes are
        // exactly what `write_cached` stored: they were read into memory in full from a
        // regular file (opened without following links) named by `key` in this cache's own
        // cache folder, and their SHA-256 together with `key` matches the checksum written
        // beside them, so a truncated or damaged file, or another component's file copied
        // under this name, is refused above. `key` binds the component's contents and the
        // engine's compatibility hash, so the code is of these bytes for this engine.
        // (`deserialize_file` would map the file and require it never to change while the
        // component lives, which Sluice cannot promise for a file on disk; `deserialize`
        // copies the checked bytes.) Whoever can write the cache folder can also write the
        // data directory and the binary, so the checksum guards against damage, not an
        // attacker with that access.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cached compiled code is unusable; compiling afresh");
                None
            }
        }
    }
}

/// SHA-256 of a cache entry's key and code: binds the code to the file's name.
fn cache_checksum(key: &Digest, code: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(key);
    h.update(code);
    h.finalize().into()
}

/// Suffix of cache files being written.
const TEMPORARY_SUFFIX: &str = ".cwasm.tmp";

/// Writes `code` to `file` in `dir` atomically: a uniquely named temporary file in `dir`,
/// synced, renamed over `file`, and the folder synced.
fn write_cached(dir: &Path, file: &Path, key: &Digest, code: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if (CACHE_MAGIC.len() + 32 + code.len()) as u64 > CACHED_BYTES_MAX {
        return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "compiled code over the cache's cap"));
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = dir.join(format!(".{}.{}.{n}{TEMPORARY_SUFFIX}", hex(key), std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&temporary)?;
        f.write_all(CACHE_MAGIC)?;
        f.write_all(&cache_checksum(key, code))?;
        f.write_all(code)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&temporary, file)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Removes temporary cache files a crash left behind (the data directory's lock keeps
/// other processes out). Those of this process are left alone: the transform host and jq
/// share the folder, and one's cache may be opened while the other writes a file.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let this_process = format!(".{}.", std::process::id());
    for e in entries.flatten() {
        let name = e.file_name();
        let stale = name
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.ends_with(TEMPORARY_SUFFIX) && !n.contains(&this_process));
        if stale && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
