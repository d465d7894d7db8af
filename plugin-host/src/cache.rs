//! The compiled-component cache: `Component::serialize` output on disk, keyed
//! by the SHA-256 of the `.wasm` bytes and by the engine (wasmtime version
//! and compilation settings), so a restart does not recompile and an upgrade
//! never loads stale machine code.
//!
//! File layout: `<dir>/<wasm sha256>-<engine key>.cwasm`, holding the SHA-256
//! of the serialized artifact followed by the artifact itself. Writes go to a
//! temporary file renamed into place, so a reader never sees half a file.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// What the cache did since the host started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components loaded from the cache.
    pub hits: u64,
    /// Components compiled because the cache did not have them.
    pub misses: u64,
    /// Cache files that were unusable (corrupt, or refused by the engine) and removed.
    pub rejected: u64,
}

pub(crate) struct Cache {
    dir: PathBuf,
    engine_key: String,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
}

const DIGEST_LEN: usize = 32;

impl Cache {
    pub fn open(dir: &Path, engine: &Engine) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut hasher = DefaultHasher::new();
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        wasmtime_version().hash(&mut hasher);
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Cache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    pub fn get_or_compile(&self, engine: &Engine, wasm: &[u8]) -> Result<Component, LoadError> {
        let path = self.dir.join(format!(
            "{}-{}.cwasm",
            hex(&Sha256::digest(wasm)),
            self.engine_key
        ));
        if let Some(component) = self.read(engine, &path) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let component = Component::new(engine, wasm).map_err(|e| LoadError::compile(&e))?;
        match component.serialize() {
            Ok(bytes) => {
                if let Err(e) = self.write(&path, &bytes) {
                    tracing::warn!(path = %path.display(), error = %e, "could not write the plugin cache");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize a compiled plugin"),
        }
        Ok(component)
    }

    fn read(&self, engine: &Engine, path: &Path) -> Option<Component> {
        let file = fs::read(path).ok()?;
        if file.len() < DIGEST_LEN || Sha256::digest(&file[DIGEST_LEN..])[..] != file[..DIGEST_LEN]
        {
            self.reject(path, "checksum mismatch");
            return None;
        }
        match deserialize(engine, &file[DIGEST_LEN..]) {
            Ok(component) => Some(component),
            Err(e) => {
                self.reject(path, &e.to_string());
                None
            }
        }
    }

    fn reject(&self, path: &Path, why: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %path.display(), why, "discarding an unusable plugin cache file");
        let _ = fs::remove_file(path);
    }

    fn write(&self, path: &Path, artifact: &[u8]) -> io::Result<()> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&Sha256::digest(artifact))?;
        file.write_all(artifact)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    }
}

#[expect(
    unsafe_code,
    reason = "Component::deserialize loads native code. It is sound here because the bytes \
              come only from files this cache wrote itself (Component::serialize output, in \
              the cache directory the operator gave us), whose SHA-256 was checked against \
              the digest written beside them just before, and wasmtime itself checks that \
              the artifact was built by a compatible engine"
)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: see the `expect` reason above: only artifacts that we
    // serialized, verified by digest, are passed here.
    unsafe { Component::deserialize(engine, artifact) }
}

fn wasmtime_version() -> &'static str {
    // The engine's compatibility hash already covers the wasmtime version in
    // practice; naming the crate's pinned major here keeps the key honest if
    // that ever changes.
    "wasmtime-48"
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
