//! The broker's storage interface, as the lead engineer writes it against: a batch of
//! `Put` / `Delete` / `DeleteRange(prefix)` committed atomically, with or without fsync,
//! and a prefix scan at start-up. One adapter per candidate.

use anyhow::{Result, bail};
use std::path::Path;

pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    #[cfg_attr(not(test), expect(dead_code, reason = "in the interface; only the test drops a session"))]
    DeleteRange(Vec<u8>),
}

pub trait Kv {
    /// Applies `ops` atomically; with `sync`, durable against power loss when it returns.
    fn commit(&mut self, ops: &[Op], sync: bool) -> Result<()>;
    /// Every live record under `prefix`: (count, value bytes).
    fn scan(&mut self, prefix: &[u8]) -> Result<(u64, u64)>;
}

#[derive(Clone, Copy)]
pub enum Store {
    Fjall,
    Redb,
    Sqlite,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Fjall => "fjall",
            Store::Redb => "redb",
            Store::Sqlite => "sqlite",
        }
    }
}

impl std::str::FromStr for Store {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "fjall" => Store::Fjall,
            "redb" => Store::Redb,
            "sqlite" => Store::Sqlite,
            _ => bail!("unknown store {s:?}"),
        })
    }
}

pub fn open(store: Store, path: &Path) -> Result<Box<dyn Kv>> {
    Ok(match store {
        Store::Fjall => Box::new(fjall_kv::FjallKv::open(path)?),
        Store::Redb => Box::new(redb_kv::RedbKv::open(path)?),
        Store::Sqlite => Box::new(sqlite_kv::SqliteKv::open(path)?),
    })
}

/// The first key after every key that starts with `prefix` (None: no upper bound).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

mod fjall_kv {
    use super::{Kv, Op};
    use anyhow::Result;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
    use std::path::Path;

    pub struct FjallKv {
        db: Database,
        ks: Keyspace,
    }

    impl FjallKv {
        pub fn open(path: &Path) -> Result<Self> {
            let db = Database::builder(path).open()?;
            // FJALL_MEMTABLE_MB: a smaller memtable flushes sooner, so the journal it
            // covers is dropped sooner (the default, 64 MiB, keeps ~40 MB of journal here).
            let memtable_mb = std::env::var("FJALL_MEMTABLE_MB").ok().and_then(|v| v.parse::<u64>().ok());
            let ks = db.keyspace("q", || match memtable_mb {
                Some(mb) => KeyspaceCreateOptions::default().max_memtable_size(mb << 20),
                None => KeyspaceCreateOptions::default(),
            })?;
            Ok(Self { db, ks })
        }
    }

    impl Kv for FjallKv {
        fn commit(&mut self, ops: &[Op], sync: bool) -> Result<()> {
            // Without sync the batch still reaches the OS (journal write), so it survives
            // a process crash; `SyncData` is fdatasync on the journal.
            let mode = if sync { PersistMode::SyncData } else { PersistMode::Buffer };
            let mut batch = self.db.batch().durability(Some(mode));
            for op in ops {
                match op {
                    Op::Put(k, v) => batch.insert(&self.ks, k.as_slice(), v.as_slice()),
                    Op::Delete(k) => batch.remove(&self.ks, k.as_slice()),
                    // No range tombstone in fjall 3: read the prefix, delete each key.
                    Op::DeleteRange(p) => {
                        for kv in self.ks.prefix(p) {
                            batch.remove(&self.ks, kv.key()?);
                        }
                    }
                }
            }
            batch.commit()?;
            Ok(())
        }

        fn scan(&mut self, prefix: &[u8]) -> Result<(u64, u64)> {
            let (mut n, mut bytes) = (0, 0);
            for kv in self.ks.prefix(prefix) {
                let (_, v) = kv.into_inner()?;
                n += 1;
                bytes += v.len() as u64;
            }
            Ok((n, bytes))
        }
    }
}

mod redb_kv {
    use super::{Kv, Op, prefix_end};
    use anyhow::Result;
    use redb::{Database, Durability, ReadableDatabase, TableDefinition};
    use std::path::Path;

    const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("q");

    pub struct RedbKv {
        db: Database,
    }

    impl RedbKv {
        pub fn open(path: &Path) -> Result<Self> {
            let db = Database::builder()
                .set_repair_callback(|s| {
                    log::warn!(target: "redb-repair", "redb repair in progress: {:.0}%", s.progress() * 100.0)
                })
                .create(path)?;
            let txn = db.begin_write()?;
            txn.open_table(TABLE)?;
            txn.commit()?;
            Ok(Self { db })
        }
    }

    impl Kv for RedbKv {
        fn commit(&mut self, ops: &[Op], sync: bool) -> Result<()> {
            let mut txn = self.db.begin_write()?;
            // `None` is not written to the commit slot durably: a crash, even of the
            // process alone, rolls back to the last `Immediate` commit.
            txn.set_durability(if sync { Durability::Immediate } else { Durability::None })?;
            {
                let mut t = txn.open_table(TABLE)?;
                for op in ops {
                    match op {
                        Op::Put(k, v) => {
                            t.insert(k.as_slice(), v.as_slice())?;
                        }
                        Op::Delete(k) => {
                            t.remove(k.as_slice())?;
                        }
                        Op::DeleteRange(p) => match prefix_end(p) {
                            Some(end) => t.retain_in(p.as_slice()..end.as_slice(), |_, _| false)?,
                            None => t.retain_in(p.as_slice().., |_, _| false)?,
                        },
                    }
                }
            }
            txn.commit()?;
            Ok(())
        }

        fn scan(&mut self, prefix: &[u8]) -> Result<(u64, u64)> {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(TABLE)?;
            let (mut n, mut bytes) = (0, 0);
            let iter = match prefix_end(prefix) {
                Some(end) => t.range(prefix..end.as_slice())?,
                None => t.range(prefix..)?,
            };
            for kv in iter {
                let (_, v) = kv?;
                n += 1;
                bytes += v.value().len() as u64;
            }
            Ok((n, bytes))
        }
    }
}

mod sqlite_kv {
    use super::{Kv, Op, prefix_end};
    use anyhow::Result;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
    use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
    use std::path::Path;

    pub struct SqliteKv {
        rt: tokio::runtime::Runtime,
        conn: Option<SqliteConnection>,
        /// The `synchronous` pragma in force: FULL for synced commits, OFF otherwise.
        full: bool,
    }

    impl SqliteKv {
        pub fn open(path: &Path) -> Result<Self> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .disable_statement_logging();
            let conn = rt.block_on(async {
                let mut c = opts.connect().await?;
                sqlx::query("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
                    .execute(&mut c)
                    .await?;
                Ok::<_, sqlx::Error>(c)
            })?;
            Ok(Self { rt, conn: Some(conn), full: true })
        }
    }

    impl Drop for SqliteKv {
        fn drop(&mut self) {
            if let Some(c) = self.conn.take() {
                let _ = self.rt.block_on(c.close());
            }
        }
    }

    impl Kv for SqliteKv {
        fn commit(&mut self, ops: &[Op], sync: bool) -> Result<()> {
            let conn = self.conn.as_mut().unwrap();
            let full = &mut self.full;
            self.rt.block_on(async {
                if *full != sync {
                    let pragma = if sync { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = OFF" };
                    sqlx::query(pragma).execute(&mut *conn).await?;
                    *full = sync;
                }
                let mut tx = conn.begin().await?;
                // One statement per run of puts or of deletes (sqlx sends each statement
                // to its worker thread: one round trip per op would cost more than SQLite).
                let mut i = 0;
                while i < ops.len() {
                    let run = ops[i..]
                        .iter()
                        .take_while(|o| std::mem::discriminant(*o) == std::mem::discriminant(&ops[i]))
                        .count()
                        .min(256);
                    let group = &ops[i..i + run];
                    i += run;
                    match &group[0] {
                        Op::Put(..) => {
                            let mut q = QueryBuilder::<Sqlite>::new("INSERT OR REPLACE INTO kv (k, v) ");
                            q.push_values(group, |mut b, op| {
                                if let Op::Put(k, v) = op {
                                    b.push_bind(k.clone()).push_bind(v.clone());
                                }
                            });
                            q.build().execute(&mut *tx).await?;
                        }
                        Op::Delete(_) => {
                            let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM kv WHERE k IN (");
                            let mut sep = q.separated(", ");
                            for op in group {
                                if let Op::Delete(k) = op {
                                    sep.push_bind(k.clone());
                                }
                            }
                            q.push(")");
                            q.build().execute(&mut *tx).await?;
                        }
                        Op::DeleteRange(_) => {
                            for op in group {
                                if let Op::DeleteRange(p) = op {
                                    let end = prefix_end(p).unwrap_or_else(|| vec![0xff; 65536]);
                                    sqlx::query("DELETE FROM kv WHERE k >= ? AND k < ?")
                                        .bind(p.clone())
                                        .bind(end)
                                        .execute(&mut *tx)
                                        .await?;
                                }
                            }
                        }
                    }
                }
                tx.commit().await?;
                anyhow::Ok(())
            })
        }

        fn scan(&mut self, prefix: &[u8]) -> Result<(u64, u64)> {
            let conn = self.conn.as_mut().unwrap();
            let end = prefix_end(prefix).unwrap_or_else(|| vec![0xff; 65536]);
            self.rt.block_on(async {
                let rows = sqlx::query("SELECT v FROM kv WHERE k >= ? AND k < ? ORDER BY k")
                    .bind(prefix.to_vec())
                    .bind(end)
                    .fetch_all(&mut *conn)
                    .await?;
                let bytes = rows.iter().map(|r| r.get::<Vec<u8>, _>(0).len() as u64).sum();
                anyhow::Ok((rows.len() as u64, bytes))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same batch on each store: range delete of one client, point delete, put.
    #[test]
    fn put_delete_range_scan() {
        for store in [Store::Fjall, Store::Redb, Store::Sqlite] {
            let dir = format!("/tmp/store-candidates/test.{}", store.name());
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(&dir);
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{dir}{suffix}"));
            }
            std::fs::create_dir_all("/tmp/store-candidates").unwrap();
            let mut db = open(store, Path::new(&dir)).unwrap();
            let k = |c: &[u8], s: u8| [b"q", c, &[s]].concat();
            let puts: Vec<Op> = [b"a", b"b"]
                .iter()
                .flat_map(|c| (0..3).map(move |s| Op::Put(k(*c, s), vec![s; 4])))
                .collect();
            db.commit(&puts, true).unwrap();
            assert_eq!(db.scan(b"q").unwrap(), (6, 24), "{}", store.name());
            db.commit(&[Op::DeleteRange(b"qa".to_vec()), Op::Delete(k(b"b", 0)), Op::Put(k(b"c", 0), vec![1])], false)
                .unwrap();
            assert_eq!(db.scan(b"q").unwrap(), (3, 9), "{}", store.name());
            assert_eq!(db.scan(b"qb").unwrap(), (2, 8), "{}", store.name());
            drop(db);
            let mut db = open(store, Path::new(&dir)).unwrap();
            assert_eq!(db.scan(b"q").unwrap(), (3, 9), "{} after reopen", store.name());
        }
    }
}
