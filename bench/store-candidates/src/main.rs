//! Measures the three candidate embedded stores for Wasmq's durable storage (issue 11)
//! behind the key-value interface the broker uses: `commit(ops, sync)` and `scan(prefix)`.
//!
//! - `kv.rs`: the interface, and one adapter per candidate (fjall, redb, SQLite via sqlx).
//! - `main.rs`: the workloads: in-flight QoS 1 append/delete (`bench`), restart with
//!   100,000 live records (`restart`), kill -9 (`kill`, `child`) and a torn tail (`torn`).
//!
//! Every figure is printed as one `key=value` line, so the README table is cut from stdout.

mod kv;

use anyhow::{Context, Result, bail};
use kv::{Op, Store};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// In-flight window: message k is put and message k - W deleted, as when a subscriber
/// acks promptly, so the live set stays at W per client.
const WINDOW: u64 = 32;
/// A 16-byte payload with topic, packet id, QoS, expiry and flags: about 120 bytes.
const VALUE_LEN: usize = 120;
/// Each bench cell stops at this many puts or this much time, whichever comes first.
const BENCH_PUTS_MAX: u64 = 200_000;
const BENCH_TIME_MAX: Duration = Duration::from_secs(8);
const RESTART_RECORDS: u64 = 100_000;

fn key(client: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 2 + client.len() + 8);
    k.push(b'q');
    k.extend_from_slice(&(client.len() as u16).to_be_bytes());
    k.extend_from_slice(client.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn value(seq: u64) -> Vec<u8> {
    let mut v = vec![0u8; VALUE_LEN];
    v[..8].copy_from_slice(&seq.to_be_bytes());
    v[8..8 + 14].copy_from_slice(b"sensors/k/temp");
    for (i, b) in v[32..].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8).wrapping_mul(31);
    }
    v
}

fn client_id(i: usize) -> String {
    format!("client-{i:04}")
}

/// Bytes allocated on disk (`du`, not the apparent length: fjall's journal is
/// preallocated, redb's file grows in regions).
fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return 0 };
    if meta.is_file() {
        return meta.blocks() * 512;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| disk_bytes(&e.path())).sum())
        .unwrap_or(0)
}

/// All files a store writes, for the byte counts: a directory for fjall, the database
/// file with its `-wal` and `-shm` for SQLite, one file for redb.
fn store_paths(store: Store, path: &Path) -> Vec<PathBuf> {
    match store {
        Store::Sqlite => ["", "-wal", "-shm"]
            .iter()
            .map(|s| PathBuf::from(format!("{}{s}", path.display())))
            .collect(),
        _ => vec![path.to_path_buf()],
    }
}

fn total_bytes(store: Store, path: &Path) -> u64 {
    store_paths(store, path).iter().map(|p| disk_bytes(p)).sum()
}

fn fresh(store: Store, name: &str) -> PathBuf {
    let path = PathBuf::from(format!("/tmp/store-candidates/{name}.{}", store.name()));
    for p in store_paths(store, &path) {
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
    }
    std::fs::create_dir_all("/tmp/store-candidates").unwrap();
    path
}

/// The in-flight QoS 1 pattern: `batch` messages per commit, each a put of message k and
/// a delete of k - W on the same client, `clients` interleaved.
fn bench(store: Store, batch: u64, sync: bool, clients: usize) -> Result<()> {
    let path = fresh(store, "bench");
    let ids: Vec<String> = (0..clients).map(client_id).collect();
    let mut db = kv::open(store, &path)?;
    let mut next_seq = vec![0u64; clients];
    let (mut puts, mut commits, mut msg) = (0u64, 0u64, 0usize);
    let started = Instant::now();
    let mut ops = Vec::with_capacity(2 * batch as usize);
    let mut dels = Vec::with_capacity(batch as usize);
    while puts < BENCH_PUTS_MAX && started.elapsed() < BENCH_TIME_MAX {
        ops.clear();
        for _ in 0..batch {
            let c = msg % clients;
            msg += 1;
            let seq = next_seq[c];
            next_seq[c] += 1;
            ops.push(Op::Put(key(&ids[c], seq), value(seq)));
            if seq >= WINDOW {
                dels.push(Op::Delete(key(&ids[c], seq - WINDOW)));
            }
        }
        // The puts of the new messages, then the deletes of the acked ones, as the
        // broker's group commit would gather them.
        ops.append(&mut dels);
        db.commit(&ops, sync)?;
        puts += batch;
        commits += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes_run = total_bytes(store, &path);
    drop(db);
    let mut db = kv::open(store, &path)?;
    let live = db.scan(b"q")?.0;
    drop(db);
    let bytes_reopen = total_bytes(store, &path);
    println!(
        "bench store={} batch={batch} sync={sync} clients={clients} puts={puts} secs={secs:.2} \
         puts_per_s={:.0} commits_per_s={:.0} bytes_after_run={bytes_run} \
         bytes_after_reopen={bytes_reopen} live={live}",
        store.name(),
        puts as f64 / secs,
        commits as f64 / secs,
    );
    Ok(())
}

/// 100,000 live 120-byte records over 1,000 clients, closed, then reopened and scanned.
fn restart(store: Store) -> Result<()> {
    let path = fresh(store, "restart");
    let mut db = kv::open(store, &path)?;
    let per_client = 100;
    let mut ops = Vec::new();
    for c in 0..(RESTART_RECORDS / per_client) as usize {
        let id = client_id(c);
        ops.extend((0..per_client).map(|s| Op::Put(key(&id, s), value(s))));
        if ops.len() >= 1000 {
            db.commit(&ops, false)?;
            ops.clear();
        }
    }
    db.commit(&ops, true)?;
    drop(db);
    let bytes = total_bytes(store, &path);
    let started = Instant::now();
    let mut db = kv::open(store, &path)?;
    let opened = started.elapsed();
    let (live, value_bytes) = db.scan(b"q")?;
    let scanned = started.elapsed();
    drop(db);
    println!(
        "restart store={} live={live} value_bytes={value_bytes} open_ms={:.1} open_scan_ms={:.1} \
         bytes_on_disk={bytes} bytes_per_record={:.1}",
        store.name(),
        opened.as_secs_f64() * 1e3,
        scanned.as_secs_f64() * 1e3,
        bytes as f64 / live as f64,
    );
    Ok(())
}

/// The child of `kill`: one message per commit on one client, each commit acknowledged
/// on stdout after it returns, until killed.
fn child(store: Store, path: &Path, sync: bool) -> Result<()> {
    let mut db = kv::open(store, path)?;
    let id = client_id(0);
    let mut out = std::io::stdout().lock();
    for seq in 0.. {
        db.commit(&[Op::Put(key(&id, seq), value(seq))], sync)?;
        writeln!(out, "{seq}")?;
        out.flush()?;
    }
    Ok(())
}

/// kill -9 a writer after about 1 s and check that every acknowledged message is there.
fn kill(store: Store, sync: bool) -> Result<()> {
    let path = fresh(store, &format!("kill-{sync}"));
    let exe = std::env::current_exe()?;
    let mut proc = Command::new(exe)
        .args(["child", store.name(), path.to_str().unwrap(), if sync { "sync" } else { "nosync" }])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut acked = None;
    while started.elapsed() < Duration::from_secs(1) {
        match lines.next() {
            Some(line) => acked = Some(line?.parse::<u64>()?),
            None => bail!("child ended"),
        }
    }
    proc.kill()?; // SIGKILL
    proc.wait()?;
    let acked = acked.map_or(0, |a| a + 1);
    let bytes = total_bytes(store, &path);
    LOG.lock().unwrap().clear();
    let reopen = Instant::now();
    let mut db = kv::open(store, &path)?;
    let (live, _) = db.scan(b"q")?;
    let reopen_ms = reopen.elapsed().as_secs_f64() * 1e3;
    drop(db);
    println!(
        "kill store={} sync={sync} acked={acked} after_reopen={live} lost_acked={} bytes={bytes} \
         reopen_scan_ms={reopen_ms:.1} log={:?}",
        store.name(),
        acked.saturating_sub(live),
        take_log(),
    );
    Ok(())
}

/// Truncate the last `cut` bytes of the file that a store appends to, reopen, and report
/// what the library says and how many records are left.
fn torn(store: Store, target: &str, cut: u64) -> Result<()> {
    let path = fresh(store, &format!("torn-{target}"));
    let n = 500u64;
    let id = client_id(0);
    {
        let mut db = kv::open(store, &path)?;
        for seq in 0..n {
            db.commit(&[Op::Put(key(&id, seq), value(seq))], true)?;
        }
        if target == "wal" {
            // Imitate kill -9: leave the WAL as it is, no checkpoint on close.
            std::mem::forget(db);
            std::fs::copy(format!("{}-wal", path.display()), format!("{}-wal.keep", path.display()))?;
        }
    }
    if target == "wal" {
        // The forgotten connection still holds the file; reopen from a copy made before
        // any checkpoint, as a killed process would leave it.
        let copy = PathBuf::from(format!("{}.copy", path.display()));
        std::fs::copy(&path, &copy)?;
        std::fs::copy(format!("{}-wal.keep", path.display()), format!("{}-wal", copy.display()))?;
        return torn_reopen(store, &copy, target, cut, n);
    }
    torn_reopen(store, &path, target, cut, n)
}

fn torn_reopen(store: Store, path: &Path, target: &str, cut: u64, n: u64) -> Result<()> {
    let file = match (store, target) {
        (Store::Fjall, _) => newest_journal(path)?,
        (Store::Sqlite, "wal") => PathBuf::from(format!("{}-wal", path.display())),
        _ => path.to_path_buf(),
    };
    // fjall preallocates its journal (64 MiB of zeros past the data): cut the end of the
    // data, not of the file.
    let file_len = std::fs::metadata(&file)?.len();
    let bytes = std::fs::read(&file)?;
    let before = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i as u64 + 1);
    let f = std::fs::OpenOptions::new().write(true).open(&file)?;
    f.set_len(before.saturating_sub(cut))?;
    drop(f);
    LOG.lock().unwrap().clear();
    let outcome = match kv::open(store, path) {
        // redb refuses a file shorter than its layout; the way out tried here: pad the
        // file back to its length with zeros and open again.
        Err(e) if matches!(store, Store::Redb) => {
            std::fs::OpenOptions::new().write(true).open(&file)?.set_len(file_len)?;
            match kv::open(store, path).and_then(|mut db| db.scan(b"q")) {
                Ok((live, _)) => format!("open_error={e:#} | padded_to={file_len} opened live={live} dropped={}", n - live),
                Err(e2) => format!("open_error={e:#} | padded_to={file_len} error={e2:#}"),
            }
        }
        Err(e) => format!("open_error={e:#}"),
        Ok(mut db) => match db.scan(b"q") {
            Ok((live, _)) => format!("opened live={live} dropped={}", n - live),
            Err(e) => format!("scan_error={e:#}"),
        },
    };
    println!(
        "torn store={} target={target} file={} data_len={before} cut={cut} {outcome} log={:?}",
        store.name(),
        file.file_name().unwrap().to_string_lossy(),
        take_log(),
    );
    Ok(())
}

/// The journal fjall appends to: the newest file under the database folder whose name
/// is a number (`<db>/journals/<n>` or similar; found, not assumed).
fn newest_journal(dir: &Path) -> Result<PathBuf> {
    let mut found = Vec::new();
    walk(dir, &mut found);
    found
        .into_iter()
        .filter(|p| {
            p.components().any(|c| c.as_os_str().to_string_lossy().contains("journal"))
                || p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".jnl"))
        })
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .context("no journal file found")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { walk(&p, out) } else { out.push(p) }
    }
}

/// Log lines from the libraries at `debug` and above (fjall reports a truncated
/// journal only at `debug`/`trace`), kept so each crash case prints what was said.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;
impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Debug
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let line = format!("{} {}: {}", r.level(), r.target(), r.args());
            let interesting = r.level() <= log::Level::Warn
                || ["trunc", "corrupt", "invalid", "repair"]
                    .iter()
                    .any(|w| line.to_lowercase().contains(w));
            if interesting {
                LOG.lock().unwrap().push(line);
            }
        }
    }
    fn flush(&self) {}
}

fn take_log() -> Vec<String> {
    std::mem::take(&mut *LOG.lock().unwrap())
}

fn main() -> Result<()> {
    log::set_boxed_logger(Box::new(Capture)).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["bench", s, b, sync, clients] => {
            bench(s.parse()?, b.parse()?, *sync == "sync", clients.parse()?)
        }
        ["restart", s] => restart(s.parse()?),
        ["kill", s, sync] => kill(s.parse()?, *sync == "sync"),
        ["child", s, path, sync] => child(s.parse()?, Path::new(path), *sync == "sync"),
        ["torn", s, target, cut] => torn(s.parse()?, target, cut.parse()?),
        _ => bail!(
            "usage: bench STORE B sync|nosync CLIENTS | restart STORE | kill STORE sync|nosync \
             | torn STORE main|wal CUT_BYTES   (STORE: fjall, redb, sqlite)"
        ),
    }
}
