//! The embedded key-value store under the journal: fjall 3, an LSM tree with a
//! write-ahead journal. Chosen by measurement over redb 4 and SQLite (WAL) for the
//! append-then-delete pattern of QoS 1 traffic (`bench/store-candidates/README.md`):
//! the most commits per fsync; an unsynced batch already reaches the operating system, so
//! kill -9 loses nothing under any policy (redb loses every unsynced commit); and a torn
//! last batch is cut off at open, keeping the rest (redb refuses a cut file, SQLite
//! fails reads on a damaged main file).

use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tracing::warn;

use super::journal::Batch;

/// What the journal needs of a store.
pub trait Backend: Send {
    /// Writes a batch atomically. When it returns, the batch has reached the operating
    /// system (it survives the broker's crash, not yet a power loss).
    fn apply(&mut self, batch: &Batch) -> io::Result<()>;
    /// Syncs everything written to the disk.
    fn sync(&mut self) -> io::Result<()>;
    /// Calls `f` with every key and value, in key order.
    fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> anyhow::Result<()>;
    /// The store's size on disk, bytes.
    fn disk_bytes(&self) -> u64;
}

struct Fjall {
    db: Database,
    kv: Keyspace,
}

/// Opens (or creates) the store in `dir`. A last batch cut short by a crash is dropped
/// by fjall as it opens; the operator is told how much went.
pub fn open(dir: &Path) -> anyhow::Result<Box<dyn Backend>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the store folder {}", dir.display()))?;
    let before = journal_bytes(dir);
    let db = Database::builder(dir).open().with_context(|| {
        format!(
            "cannot open the store in {} (another wasmq using it? if it is damaged, move it \
             aside to start with an empty store)",
            dir.display()
        )
    })?;
    let kv = db
        .keyspace("wasmq", KeyspaceCreateOptions::default)
        .context("cannot open the store's keyspace")?;
    let after = journal_bytes(dir);
    if after < before {
        // fjall cuts the journal back to its last whole batch: the bytes after it were a
        // write the crash interrupted, never acknowledged under `fsync = "always"`.
        warn!(
            dir = %dir.display(),
            dropped_bytes = before - after,
            "store: the journal ended in an incomplete write (a crash or power loss); \
             the valid part is kept, the cut-off batch was dropped"
        );
    }
    Ok(Box::new(Fjall { db, kv }))
}

/// The size of fjall's journal files: shrinks at open when a torn tail is cut off.
fn journal_bytes(dir: &Path) -> u64 {
    fn walk(path: PathBuf, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(&path) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => walk(path, total),
                Ok(m) if path.extension().is_some_and(|e| e == "jnl") => *total += m.len(),
                _ => {}
            }
        }
    }
    let mut total = 0;
    walk(dir.to_path_buf(), &mut total);
    total
}

impl Backend for Fjall {
    fn apply(&mut self, batch: &Batch) -> io::Result<()> {
        let mut write = self.db.batch().durability(Some(PersistMode::Buffer));
        for prefix in &batch.prefixes {
            // fjall has no range delete: every key under the prefix, as committed before
            // this batch (what this batch wrote under it was folded away already).
            for entry in self.kv.prefix(prefix) {
                write.remove(&self.kv, entry.key().map_err(io::Error::other)?);
            }
        }
        for (key, value) in &batch.writes {
            match value {
                Some(value) => write.insert(&self.kv, key.as_slice(), value.as_slice()),
                None => write.remove(&self.kv, key.as_slice()),
            }
        }
        write.commit().map_err(io::Error::other)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(io::Error::other)
    }

    fn scan(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> anyhow::Result<()> {
        for entry in self.kv.iter() {
            let (key, value) = entry.into_inner().context("cannot read the store")?;
            f(&key, &value);
        }
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}
