//! The `wasmq` command: runs the broker, prints its default configuration, writes,
//! builds, tests and checks plugins (`wasmq::plugin_tools`), and manages the default
//! plugin's users and rules.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use wasmq::Server;
use wasmq::admin::{self, AdminSocket, Reply};
use wasmq::config::{Config, DEFAULT_CONFIG};
use wasmq::http;
use wasmq::manage::{self, Access, Rule};
use wasmq::plugins::Plugins;
use wasmq_plugin_host::Database;

/// An MQTT 3.1.1 and 5.0 broker whose policy lives in WebAssembly plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); built-in defaults when absent.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Plain TCP listener address, overriding the configuration (e.g. 0.0.0.0:1883):
    /// `listen`, or with `[[listener]]` tables the first tcp one (added if none).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the broker (the default).
    Run,
    /// Prints the default configuration, every key commented.
    PrintConfig,
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Users of the default auth plugin (`mqtt_user` in the configured database).
    #[command(subcommand)]
    User(UserCommand),
    /// Rules of the default ACL plugin (`mqtt_acl` in the configured database). Changes
    /// apply to a running broker at once (its caches are purged through the admin socket).
    #[command(subcommand)]
    Acl(AclCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Adds a user; the password is hashed as the plugin's `password_hash` says.
    Add {
        username: String,
        /// The password; read from the first line of stdin when absent.
        #[arg(long)]
        password: Option<String>,
        /// The user skips the ACL.
        #[arg(long)]
        superuser: bool,
        /// A SCRAM-SHA-256 user (MQTT 5 enhanced authentication, the scram-sha256
        /// plugin) in `mqtt_scram_user`, instead of a password user in `mqtt_user`.
        #[arg(long)]
        scram: bool,
        /// The SCRAM iteration count (with --scram).
        #[arg(long, default_value_t = manage::SCRAM_ITERATIONS, requires = "scram")]
        iterations: u32,
    },
    /// Sets a user's password.
    Passwd {
        username: String,
        /// The password; read from the first line of stdin when absent.
        #[arg(long)]
        password: Option<String>,
    },
    /// Removes a user.
    Rm { username: String },
    /// Lists the users.
    List,
}

#[derive(Subcommand)]
enum AclCommand {
    /// Adds a rule (it is checked before every older rule).
    /// Example: wasmq acl add --deny --username alice --access pub --topic 'factory/#'
    Add {
        /// An allow rule.
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        allow: bool,
        /// A deny rule.
        #[arg(long)]
        deny: bool,
        /// For this user name.
        #[arg(long, conflicts_with = "all")]
        username: Option<String>,
        /// For every client (username `$all`).
        #[arg(long)]
        all: bool,
        /// For this client id.
        #[arg(long)]
        clientid: Option<String>,
        /// For this client address or CIDR (v4 or v6).
        #[arg(long)]
        ipaddr: Option<String>,
        /// sub, pub or pubsub.
        #[arg(long)]
        access: Access,
        /// Topic filter: `+`/`#` wildcards, `%c`/`%u` levels, `eq ` for a literal topic.
        #[arg(long)]
        topic: String,
    },
    /// Removes rule ID.
    Rm { id: i64 },
    /// Lists the rules, in the order they are checked (highest id first).
    List,
    /// Makes a running broker forget its cached decisions, after direct SQL edits.
    Reload,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Reports which hooks a component exports and which capabilities it imports, or
    /// what is wrong with it, without starting a broker. Exit code 1 when it cannot load.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
    },
    /// Writes a new plugin project that builds at once, with a README saying how to
    /// build, test and install it.
    New {
        /// The plugin's name: its file stem in the plugin folder (`readonly-acl`).
        name: String,
        /// The hook it implements.
        #[arg(long, value_enum)]
        hook: HookArg,
        /// The language it is written in.
        #[arg(long, value_enum)]
        lang: LangArg,
        /// Where to write it (default: ./NAME); must not exist, or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Builds the plugin project in DIR (Rust: Cargo.toml, Python: app.py, JavaScript:
    /// package.json) and prints where the component went.
    Build {
        /// The project's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Runs the cases of CASES.toml against a component in the plugin host (no broker,
    /// no network): one line per case, exit code 1 when one fails.
    Test {
        /// The `.wasm` component.
        file: PathBuf,
        /// The cases (docs/plugins.md, "Developer tools").
        cases: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HookArg {
    Authn,
    Authz,
    Transform,
    /// MQTT 5 enhanced authentication (AUTH packets).
    Auth,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LangArg {
    Rust,
    Python,
    Js,
}

/// An error that stops the command (a bad config file, a database that does not answer,
/// a port in use) is the operator's to fix, not a bug: it is printed as its chain of
/// causes, one a line, never with `anyhow`'s backtrace (which `RUST_BACKTRACE`, often set
/// by Rust users, would add). Bugs are panics, and those keep their backtrace.
fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Some(Command::PrintConfig) => {
            print!("{DEFAULT_CONFIG}");
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Plugin(PluginCommand::Check { file })) => {
            let report = wasmq_plugin_host::check(file)
                .with_context(|| format!("cannot check {}", file.display()))?;
            println!("{}: {report}", file.display());
            return Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Some(Command::Plugin(command)) => return plugin_command(command),
        Some(Command::User(_)) | Some(Command::Acl(_)) => {
            return manage_command(&cli).map(|()| ExitCode::SUCCESS);
        }
        Some(Command::Run) | None => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Logs go to stderr: stdout is for what a command prints (print-config,
        // plugin check, user list). Colours only on a terminal: logs redirected to a
        // file or read by a script (the tests find `listening address=...` there) stay
        // plain text.
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut config = load_config(&cli)?;
    if let Some(listen) = cli.listen {
        wasmq::listener::set_tcp_address(&mut config, listen);
    }
    raise_file_limit();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let database = wasmq::plugins::open_database(&config.database).await?;
        let plugins = Plugins::start_with_database(&config.plugins, database.clone()).await?;
        let admin_path = config.admin.socket.clone();
        // Read back before any listener opens: no client sees a broker without its
        // sessions and retained messages.
        let storage = if config.storage.enabled {
            let (storage_config, levels) = (config.storage.clone(), config.limits.max_topic_levels);
            tokio::task::spawn_blocking(move || wasmq::store::open(&storage_config, levels))
                .await??
        } else {
            wasmq::storage::Storage::memory()
        };
        let journal = storage.journal.clone();
        let broker = wasmq::Broker::with_storage(config, Some(plugins.hooks()), storage);
        let server = Server::bind_with(broker).await?;
        let ready = http::Readiness::default();
        let services = http::Services {
            broker: server.broker().clone(),
            plugins: Some(plugins.folder.clone()),
            database,
            plugins_dir: server.broker().config.plugins.dir.clone(),
            ready: ready.clone(),
        };
        let config = &server.broker().config;
        let _http = http::HttpServer::start(&config.metrics, &config.admin_api, services).await?;
        let _admin = if admin_path.as_os_str().is_empty() {
            None
        } else {
            match AdminSocket::start(&admin_path, server.broker().clone()).await {
                Ok(socket) => Some(socket),
                Err(e) => {
                    warn!("no admin socket: {e:#}; `wasmq acl` changes apply within the cache TTL");
                    None
                }
            }
        };
        ready.set(true);
        // On a worker, not in `block_on`: the accept loop then runs on a runtime thread,
        // and each connection's task starts in that worker's local queue instead of
        // going through the injection queue with a cross-thread wakeup (issue 14: the
        // connection storm row).
        let accepting = tokio::spawn(server.run(async move {
            shutdown_signal().await;
            ready.set(false);
        }));
        accepting.await.context("the accept loop failed")?;
        if let Some(journal) = journal {
            // Written and synced before the process ends, whatever the fsync policy.
            tokio::task::spawn_blocking(move || journal.close()).await?;
        }
        drop(plugins);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `wasmq plugin new|build|test`.
fn plugin_command(command: &PluginCommand) -> anyhow::Result<ExitCode> {
    use wasmq::plugin_tools::{build, new, test_cases};
    match command {
        PluginCommand::Check { .. } => unreachable!("handled in run"),
        PluginCommand::New {
            name,
            hook,
            lang,
            dir,
        } => {
            let hook = match hook {
                HookArg::Authn => new::Hook::Authn,
                HookArg::Authz => new::Hook::Authz,
                HookArg::Transform => new::Hook::Transform,
                HookArg::Auth => new::Hook::Auth,
            };
            let lang = match lang {
                LangArg::Rust => new::Lang::Rust,
                LangArg::Python => new::Lang::Python,
                LangArg::Js => new::Lang::Js,
            };
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from(name));
            let files = new::write(&dir, name, hook, lang)?;
            println!(
                "{}: a {} {} plugin ({} files); see {}",
                dir.display(),
                lang.name(),
                hook.name(),
                files.len(),
                dir.join("README.md").display()
            );
            println!("  wasmq plugin build {}", dir.display());
        }
        PluginCommand::Build { dir } => {
            let wasm = build::build(dir)?;
            println!("built: {}", wasm.display());
        }
        PluginCommand::Test { file, cases } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
            let summary = runtime.block_on(test_cases::run(file, cases))?;
            if summary.failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let Some(path) = &cli.config else {
        return Ok(Config::default());
    };
    let config = Config::load(path)?;
    // What only the plugin system can check (built-in plugin names, the database URL's
    // scheme) is refused as the file's other errors are, before any command runs.
    wasmq::plugins::validate(&config)
        .with_context(|| format!("invalid config file {}", path.display()))?;
    Ok(config)
}

fn password_from(arg: &Option<String>) -> anyhow::Result<String> {
    if let Some(p) = arg {
        return Ok(p.clone());
    }
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `wasmq user ...` / `wasmq acl ...`: against the configured database, then tells a
/// running broker (if any) to purge its cached decisions.
fn manage_command(cli: &Cli) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let changed = match &cli.command {
            Some(Command::User(command)) => user_command(&config, command).await?,
            Some(Command::Acl(command)) => acl_command(&config, command).await?,
            _ => unreachable!("only user and acl commands come here"),
        };
        if changed {
            tell_broker(&config).await?;
        }
        anyhow::Ok(())
    })
}

async fn database(config: &Config) -> anyhow::Result<Arc<Database>> {
    wasmq::plugins::open_database(&config.database)
        .await?
        .context("no database is configured ([database] url is empty)")
}

/// Runs a user command; true when it changed something.
async fn user_command(config: &Config, command: &UserCommand) -> anyhow::Result<bool> {
    let db = database(config).await?;
    match command {
        UserCommand::Add {
            username,
            password,
            superuser,
            scram: true,
            iterations,
        } => {
            let plain = password_from(password)?;
            manage::scram_user_add(&db, username, &plain, *superuser, *iterations).await?;
            let role = if *superuser { " (superuser)" } else { "" };
            println!("SCRAM-SHA-256 user {username} added{role}");
        }
        UserCommand::Add {
            username,
            password,
            superuser,
            scram: false,
            ..
        } => {
            let scheme = manage::password_scheme(&config.plugins.dir)?;
            manage::user_add(&db, scheme, username, &password_from(password)?, *superuser).await?;
            let role = if *superuser { " (superuser)" } else { "" };
            println!("user {username} added{role}");
        }
        UserCommand::Passwd { username, password } => {
            let scheme = manage::password_scheme(&config.plugins.dir)?;
            manage::user_passwd(&db, scheme, username, &password_from(password)?).await?;
            println!("password of {username} changed");
        }
        UserCommand::Rm { username } => {
            manage::user_rm(&db, username).await?;
            println!("user {username} removed");
        }
        UserCommand::List => {
            for user in manage::user_list(&db).await? {
                let role = if user.superuser { "  (superuser)" } else { "" };
                println!("{}{role}", user.username);
            }
            return Ok(false);
        }
    }
    Ok(true)
}

/// Runs an acl command; true when it changed something (or asks for a reload).
async fn acl_command(config: &Config, command: &AclCommand) -> anyhow::Result<bool> {
    if let AclCommand::Reload = command {
        return Ok(true);
    }
    let db = database(config).await?;
    match command {
        AclCommand::Add {
            allow,
            deny: _,
            username,
            all,
            clientid,
            ipaddr,
            access,
            topic,
        } => {
            let rule = Rule {
                id: 0,
                allow: *allow,
                ipaddr: ipaddr.clone(),
                username: if *all {
                    Some("$all".into())
                } else {
                    username.clone()
                },
                clientid: clientid.clone(),
                access: *access as i64,
                topic: topic.clone(),
            };
            let id = manage::acl_add(&db, &rule).await?;
            println!("rule {id} added");
        }
        AclCommand::Rm { id } => {
            manage::acl_rm(&db, *id).await?;
            println!("rule {id} removed");
        }
        AclCommand::List => {
            println!(
                "{:>6}  {:<5}  {:<6}  {:<40}  topic",
                "id", "rule", "access", "who"
            );
            for rule in manage::acl_list(&db).await? {
                println!("{rule}");
            }
            return Ok(false);
        }
        AclCommand::Reload => unreachable!("handled above"),
    }
    Ok(true)
}

async fn tell_broker(config: &Config) -> anyhow::Result<()> {
    let socket = &config.admin.socket;
    if socket.as_os_str().is_empty() {
        println!(
            "no admin socket configured: a running broker applies it within [authz_cache] ttl_ms"
        );
        return Ok(());
    }
    match admin::request(socket, "purge-authz").await? {
        Reply::Answered(answer) if answer == "ok" => {
            println!("the running broker applies it now (its cached decisions were purged)")
        }
        Reply::Answered(answer) => anyhow::bail!("the broker answered: {answer}"),
        Reply::NoBroker => println!(
            "no broker answers on {}: the change applies when it starts",
            socket.display()
        ),
    }
    Ok(())
}

/// Each connection is a file descriptor: raise the soft limit to the hard one.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "file descriptor limit"),
        Err(error) => warn!(%error, "cannot raise the file descriptor limit"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("signal received");
}
