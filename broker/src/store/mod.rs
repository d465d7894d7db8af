//! The durable store: persistent sessions and retained messages on disk, so that they
//! survive a restart, a crash and kill -9 (`docs/durability.md` says what each fsync
//! policy can lose).
//!
//! Memory stays the broker's working copy; the store follows it. Every change of a
//! persistent session (a message queued, sent, acknowledged; a subscription; the will;
//! a QoS 2 id awaiting PUBREL) and of the retained messages is submitted to the
//! [`Journal`] (`journal.rs`) as it happens, and written by one thread in batches. At
//! start-up, before any listener opens, [`open`] reads the whole store back
//! (`recover.rs`) into the snapshots and retained messages the broker starts from.
//!
//! - `record.rs`: keys and values.
//! - `keeper.rs`: what a session writes as it changes.
//! - `journal.rs`: batching, folding and the fsync policy.
//! - `backend.rs`: the embedded key-value store underneath.

mod backend;
mod journal;
mod keeper;
mod record;
mod recover;

use std::sync::Arc;

pub use journal::Journal;
pub use keeper::SessionKeeper;
pub(crate) use keeper::{retained_removed, retained_set};

use crate::config::StorageConfig;
use crate::storage::{MemoryRetainStore, SessionSnapshot, SessionStore, Storage};

/// The version of the store's layout. A store written by a newer broker is refused.
pub const FORMAT: u32 = 1;

/// Opens the store in `config.dir` (creating it), reads it back and starts its writer.
/// Fails, with what to do, when the store is of a newer format or cannot be opened.
pub fn open(config: &StorageConfig, max_topic_levels: usize) -> anyhow::Result<Storage> {
    let backend = backend::open(&config.dir)?;
    let recovered = recover::recover(backend.as_ref(), max_topic_levels, &config.dir)?;
    let journal = Journal::start(backend, config, recovered.next_delivery);
    for op in recovered.cleanup {
        journal.submit(op);
    }
    let retained = MemoryRetainStore::journaled(journal.clone(), recovered.retained);
    Ok(Storage {
        retained: Arc::new(retained),
        sessions: Arc::new(DurableSessionStore {
            journal: journal.clone(),
            recovered: parking_lot::Mutex::new(recovered.sessions),
        }),
        journal: Some(journal),
    })
}

/// Sessions on disk. Their contents are journaled as they change (`keeper.rs`), so
/// `save` has only the expiry and the time of disconnection left to write.
struct DurableSessionStore {
    journal: Arc<Journal>,
    /// What `open` read, handed out once.
    recovered: parking_lot::Mutex<Vec<SessionSnapshot>>,
}

impl SessionStore for DurableSessionStore {
    fn save(&self, snapshot: SessionSnapshot) {
        let keeper = SessionKeeper::new(self.journal.clone(), snapshot.client_id);
        keeper.meta(snapshot.expiry_interval, Some(snapshot.disconnected_at));
    }

    fn remove(&self, client_id: &str) {
        SessionKeeper::new(self.journal.clone(), client_id.into()).ended();
    }

    fn load_all(&self) -> Vec<SessionSnapshot> {
        std::mem::take(&mut *self.recovered.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::journal::{Batch, Op};
    use super::*;

    #[test]
    fn a_store_of_a_newer_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            dir: dir.path().join("store"),
            ..StorageConfig::default()
        };
        let mut backend = backend::open(&config.dir).unwrap();
        let newer = (FORMAT + 1).to_be_bytes().to_vec();
        let batch = Batch::fold(vec![Op::Put {
            key: record::meta_key("format"),
            value: newer,
            fresh: false,
        }]);
        backend.apply(&batch).unwrap();
        drop(backend);
        let error = open(&config, 16).expect_err("refused").to_string();
        assert!(error.contains("newer than this broker's"), "{error}");
        assert!(error.contains("move the folder aside"), "{error}");
    }
}
