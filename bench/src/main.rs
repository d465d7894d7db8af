//! `wasmq-bench`: a load generator for MQTT brokers, built on Wasmq's own codec.
//!
//! - `client`: a minimal MQTT 3.1.1 client (connect, subscribe, raw stream) over plain
//!   TCP, TLS or WebSocket (`Target`, `Stream`).
//! - `tls`: the run's CA and server certificate (rcgen), the clients' rustls config.
//! - `scenario`: the scenarios (pairs, fan-in, fan-out, shared fan-in, connection storm,
//!   idle connections) and their runners, which drive clients directly over tokio TCP,
//!   or over TLS or WebSocket for the tls and ws variants.
//! - `stats`: payload header, sequence tracking, latency histograms, `/proc` readings,
//!   the per-run result.
//! - `suite`: starts Wasmq and Mosquitto side by side, runs every scenario against both in
//!   alternation and writes `results.json` and `BENCHMARKS.md`.
//! - `plugins`: the plugin benchmarks (throughput with a transform or an authorization
//!   plugin, hot-reload time, start time with the compiled-component cache cold and warm)
//!   and BENCHMARKS.md's Plugins section.
//! - `acl`: the default auth/ACL plugin (decisions per second per database, cache hit and
//!   miss; publish throughput with it on and off) and its BENCHMARKS.md section.
//! - `overload`: open-loop overload (publishers at full speed, no window): deliveries,
//!   the slowest subscriber, acknowledged QoS 1 messages lost, an idle client's PINGRESP
//!   latency, the broker's memory; and its BENCHMARKS.md section.
//!
//! `wasmq-bench run` drives one scenario against any broker (for profiling), as does
//! `wasmq-bench overload --target`; `wasmq-bench suite`, `plugins`, `acl` and `overload`
//! are what `scripts/bench` calls.

mod acl;
mod client;
mod durable;
mod overload;
mod plugins;
mod rumqttd;
mod scenario;
mod stats;
mod suite;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::client::{Target, Transport};
use crate::stats::RunResult;

#[derive(Parser)]
#[command(about = "Load generator for MQTT brokers on Wasmq's codec")]
struct Cli {
    /// Worker threads of the generator's runtime (1 = a single-threaded runtime).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the scenarios of the suite.
    List {
        #[arg(long)]
        quick: bool,
    },
    /// Runs scenarios (by name substring) against one broker and prints JSON lines.
    Run {
        /// Broker address (loopback).
        #[arg(long)]
        target: SocketAddr,
        /// Broker pid, to read its CPU time and memory.
        #[arg(long)]
        pid: Option<u32>,
        /// Scenario name substring.
        #[arg(long)]
        scenario: String,
        #[arg(long)]
        quick: bool,
        /// Overrides each scenario's duration, milliseconds.
        #[arg(long)]
        duration_ms: Option<u64>,
        /// Label for the broker in the output.
        #[arg(long, default_value = "broker")]
        name: String,
        /// The CA that signed the broker's certificate: `--target` is then its TLS
        /// listener, for the tls scenarios (`--scenario tls`). A ws scenario takes
        /// `--target` as a WebSocket listener serving `/mqtt`.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Clients connect with a persistent session of this expiry, seconds (v3.1.1:
        /// `clean_session = 0`), as `durable` does; profiles the durable store.
        #[arg(long)]
        session_expiry: Option<u32>,
    },
    /// Starts Wasmq and Mosquitto, runs every scenario against both, writes the report.
    Suite {
        #[arg(long, default_value = "target/release/wasmq")]
        wasmq: PathBuf,
        #[arg(long, default_value = "/usr/sbin/mosquitto")]
        mosquitto: PathBuf,
        /// rumqttd's binary: run beside Mosquitto (its own table in the report).
        #[arg(long)]
        rumqttd: Option<PathBuf>,
        /// Directory for results.json, broker configs and logs.
        #[arg(long, default_value = "bench/results")]
        out_dir: PathBuf,
        /// Markdown report whose generated section is rewritten.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Seconds in total, tiny counts: a smoke run.
        #[arg(long)]
        quick: bool,
        /// Only scenarios whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// The command line to quote in the report.
        #[arg(long, default_value = "scripts/bench")]
        command: String,
    },
    /// The durable store: QoS 1 on persistent sessions under each fsync policy, and the
    /// restart time with many retained messages and offline sessions, Mosquitto with
    /// persistence beside it. Prints the Markdown tables (also in OUT_DIR/durable/).
    Durable {
        #[arg(long, default_value = "target/release/wasmq")]
        wasmq: PathBuf,
        #[arg(long, default_value = "/usr/sbin/mosquitto")]
        mosquitto: PathBuf,
        #[arg(long, default_value = "bench/results")]
        out_dir: PathBuf,
        /// Rounds of the throughput part (the median is quoted).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Retained messages of the restart part.
        #[arg(long, default_value_t = 100_000)]
        retained: u32,
        /// Offline persistent sessions of the restart part.
        #[arg(long, default_value_t = 10_000)]
        sessions: u32,
        /// A smoke run: one second per throughput run.
        #[arg(long)]
        quick: bool,
        /// Rewrite this report's Durable store section.
        #[arg(long)]
        report: Option<PathBuf>,
        /// The command line to quote in the report.
        #[arg(long, default_value = "wasmq-bench durable")]
        command: String,
    },
    /// Runs the plugin benchmarks, writes plugins.json and the report's Plugins section.
    Plugins {
        #[arg(long, default_value = "target/release/wasmq")]
        wasmq: PathBuf,
        #[arg(long, default_value = "/usr/sbin/mosquitto")]
        mosquitto: PathBuf,
        /// Where the example plugins were built for wasm32-wasip2.
        #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
        wasm_dir: PathBuf,
        /// Directory for plugins.json, broker configs, plugin folders and logs.
        #[arg(long, default_value = "bench/results")]
        out_dir: PathBuf,
        /// Markdown report whose Plugins section is rewritten.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Saved output of `cargo bench -p wasmq-plugin-host --bench warm_call`, quoted.
        #[arg(long)]
        warm_call: Option<PathBuf>,
        /// One run of each: a smoke run.
        #[arg(long)]
        quick: bool,
        /// The command line to quote in the report.
        #[arg(long, default_value = "scripts/bench")]
        command: String,
    },
    /// The default auth/ACL plugin: decisions per second on each database, cache hit and
    /// miss, and publish throughput with it on and off; writes acl.json and its section.
    Acl {
        #[arg(long, default_value = "target/release/wasmq")]
        wasmq: PathBuf,
        #[arg(long, default_value = "/usr/sbin/mosquitto")]
        mosquitto: PathBuf,
        #[arg(long, default_value = "bench/results")]
        out_dir: PathBuf,
        #[arg(long)]
        report: Option<PathBuf>,
        /// Tiny counts, one run of each: a smoke run.
        #[arg(long)]
        quick: bool,
        /// Databases for the decisions (sqlite, mariadb, postgres), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,mariadb,postgres")]
        databases: Vec<String>,
        /// Decisions only, no end-to-end throughput.
        #[arg(long)]
        no_e2e: bool,
        /// Only the delivery-ACL row (fan-out through a wildcard, the check on and off).
        #[arg(long)]
        delivery_only: bool,
        #[arg(long, default_value = "scripts/bench")]
        command: String,
    },
    /// Open-loop overload: publishers at full speed with no window, against a fresh Wasmq
    /// and a fresh Mosquitto per run (or `--target`); writes overload.json and its section.
    Overload {
        #[arg(long, default_value = "target/release/wasmq")]
        wasmq: PathBuf,
        #[arg(long, default_value = "/usr/sbin/mosquitto")]
        mosquitto: PathBuf,
        #[arg(long, default_value = "bench/results")]
        out_dir: PathBuf,
        /// Markdown report whose overload section is rewritten.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Tiny durations, one run of each: a smoke run.
        #[arg(long)]
        quick: bool,
        /// Only scenarios whose name contains this ("q0", "q1", "overload").
        #[arg(long)]
        only: Option<String>,
        /// Runs of each scenario against each broker (default 3, 1 with --quick).
        #[arg(long)]
        repeats: Option<u32>,
        /// Flooding before the measured window, milliseconds.
        #[arg(long)]
        warmup_ms: Option<u64>,
        /// The measured window, milliseconds.
        #[arg(long)]
        window_ms: Option<u64>,
        /// A broker already running (loopback): run against it alone and print JSON
        /// lines; no broker is started and no report written.
        #[arg(long)]
        target: Option<SocketAddr>,
        /// That broker's pid, to read its CPU time and memory.
        #[arg(long, requires = "target")]
        pid: Option<u32>,
        /// Label for that broker in the output.
        #[arg(long, default_value = "broker")]
        name: String,
        #[arg(long, default_value = "scripts/bench")]
        command: String,
    },
}

/// One human-readable line per run.
pub(crate) fn table_row(r: &RunResult) -> String {
    let mut line = format!(
        "{:<22} {:<10} {:>11.0}/s  {:>8.2} MB/s  p50 {:>9.1}µs  p99 {:>9.1}µs  sent {:>8} lost {:>6} dup {:>4} reord {:>4}  gen {:.2} cores ({:.2} user)",
        r.scenario,
        r.broker,
        r.throughput,
        r.throughput_mb_s,
        r.latency.p50_us,
        r.latency.p99_us,
        r.sent,
        r.lost,
        r.duplicates,
        r.reordered,
        r.generator_cores,
        r.generator_user_cores,
    );
    if let Some(cpu) = r.broker_cpu_s {
        line += &format!(" broker {cpu:.2} cpu-s");
    }
    if let Some(b) = r.bytes_per_item {
        line += &format!(" {b:.0} B/item");
    }
    if let Some(n) = r.connections {
        line += &format!(" conns {n} errors {}", r.errors);
    }
    line
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Thousands of connections: raise the soft descriptor limit to the hard one.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the file descriptor limit: {e}");
    }
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async {
        match cli.command {
            Cmd::List { quick } => {
                for s in suite::scenarios(quick) {
                    println!("{}", serde_json::to_string(&s)?);
                }
            }
            Cmd::Run {
                target,
                pid,
                scenario,
                quick,
                duration_ms,
                name,
                ca_file,
                session_expiry,
            } => {
                let chosen: Vec<_> = suite::scenarios(quick)
                    .into_iter()
                    .filter(|s| s.name.contains(&scenario))
                    .collect();
                anyhow::ensure!(!chosen.is_empty(), "no scenario matches {scenario:?}");
                let tls_config = ca_file
                    .as_deref()
                    .map(tls::client_config_from)
                    .transpose()?;
                for mut s in chosen {
                    if let Some(ms) = duration_ms {
                        s.duration_ms = ms;
                    }
                    if let Some(expiry) = session_expiry {
                        s.session_expiry = expiry;
                    }
                    let target = match s.transport {
                        Transport::Tcp => target.into(),
                        Transport::Tls => Target::tls(
                            target,
                            tls_config
                                .clone()
                                .context("a tls scenario needs --ca-file")?,
                        ),
                        Transport::Ws => Target::ws(target),
                    };
                    let result = scenario::run(&s, &name, &target, pid).await?;
                    eprintln!("{}", table_row(&result));
                    println!("{}", serde_json::to_string(&result)?);
                }
            }
            Cmd::Suite {
                wasmq,
                mosquitto,
                rumqttd,
                out_dir,
                report,
                quick,
                only,
                command,
            } => {
                suite::run_suite(suite::SuiteOptions {
                    wasmq,
                    mosquitto,
                    rumqttd,
                    out_dir,
                    report,
                    quick,
                    command,
                    threads: cli.threads,
                    only,
                })
                .await?;
            }
            Cmd::Durable {
                wasmq,
                mosquitto,
                out_dir,
                rounds,
                retained,
                sessions,
                quick,
                report,
                command,
            } => {
                let report = durable::run(durable::DurableOptions {
                    wasmq,
                    mosquitto,
                    out_dir,
                    rounds,
                    retained,
                    sessions,
                    quick,
                    report,
                    command,
                })
                .await?;
                println!("{report}");
            }
            Cmd::Plugins {
                wasmq,
                mosquitto,
                wasm_dir,
                out_dir,
                report,
                warm_call,
                quick,
                command,
            } => {
                plugins::run_plugins(plugins::PluginOptions {
                    wasmq,
                    mosquitto,
                    wasm_dir,
                    out_dir,
                    report,
                    warm_call,
                    quick,
                    command,
                    threads: cli.threads,
                })
                .await?;
            }
            Cmd::Acl {
                wasmq,
                mosquitto,
                out_dir,
                report,
                quick,
                databases,
                no_e2e,
                delivery_only,
                command,
            } => {
                acl::run_acl(acl::AclOptions {
                    wasmq,
                    mosquitto,
                    out_dir,
                    report,
                    quick,
                    command,
                    threads: cli.threads,
                    databases,
                    no_e2e,
                    delivery_only,
                })
                .await?;
            }
            Cmd::Overload {
                wasmq,
                mosquitto,
                out_dir,
                report,
                quick,
                only,
                repeats,
                warmup_ms,
                window_ms,
                target,
                pid,
                name,
                command,
            } => {
                overload::run_overload(overload::OverloadOptions {
                    wasmq,
                    mosquitto,
                    out_dir,
                    report,
                    quick,
                    command,
                    threads: cli.threads,
                    only,
                    repeats,
                    warmup_ms,
                    window_ms,
                    target,
                    pid,
                    name,
                })
                .await?;
            }
        }
        anyhow::Ok(())
    })
}
