//! `wasmq user ...` and `wasmq acl ...`: the default plugin's `mqtt_user` and `mqtt_acl`
//! tables, managed from the command line against the configured database (the same one
//! the broker uses). Every value is a bound parameter. Passwords are hashed with the
//! default plugin's own code (`wasmq_acl_rules`, natively) under its configured
//! `password_hash`, so what is written is exactly what the plugin accepts. `wasmq user add --scram` writes SCRAM-SHA-256
//! credentials into `mqtt_scram_user` instead, for the `scram-sha256` example plugin
//! (MQTT 5 enhanced authentication): the salt, the iteration count, StoredKey and
//! ServerKey of RFC 5802, never the password.

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use wasmq_acl_rules::password::{self, Scheme};
use wasmq_acl_rules::scram;
use wasmq_plugin_host::Database;
use wasmq_plugin_host::database::Value;

use crate::plugins::builtin;

/// `mqtt_acl.access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// 1: subscribe.
    Subscribe = 1,
    /// 2: publish.
    Publish = 2,
    /// 3: both.
    Both = 3,
}

impl std::str::FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Access, String> {
        Ok(match s {
            "sub" | "subscribe" | "1" => Access::Subscribe,
            "pub" | "publish" | "2" => Access::Publish,
            "pubsub" | "both" | "3" => Access::Both,
            _ => return Err(format!("access must be sub, pub or pubsub, not {s:?}")),
        })
    }
}

/// A row of `mqtt_acl`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The row id (order: highest first); ignored when adding.
    pub id: i64,
    /// Allow (true) or deny.
    pub allow: bool,
    /// Client address or CIDR.
    pub ipaddr: Option<String>,
    /// User name, or `$all`.
    pub username: Option<String>,
    /// Client id.
    pub clientid: Option<String>,
    /// What the rule is about.
    pub access: i64,
    /// The topic filter (`+`, `#`, `%c`, `%u`, `eq ...`).
    pub topic: String,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = [
            self.ipaddr.as_ref().map(|v| format!("ipaddr={v}")),
            self.username.as_ref().map(|v| format!("username={v}")),
            self.clientid.as_ref().map(|v| format!("clientid={v}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let access = match self.access {
            1 => "sub",
            2 => "pub",
            3 => "pubsub",
            _ => "?",
        };
        write!(
            f,
            "{:>6}  {:<5}  {:<6}  {:<40}  {}",
            self.id,
            if self.allow { "allow" } else { "deny" },
            access,
            who,
            self.topic
        )
    }
}

/// A row of `mqtt_user`, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub username: String,
    /// Whether the user skips the ACL.
    pub superuser: bool,
}

/// The password scheme the default plugin is configured with: `acl-sql.toml` in the
/// plugin folder when there is one, else the built-in settings.
pub fn password_scheme(plugins_dir: &Path) -> anyhow::Result<Scheme> {
    let file = plugins_dir.join("acl-sql.toml");
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => builtin::find("acl-sql")
            .map(|b| b.settings.to_string())
            .context("no built-in acl-sql plugin")?,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let toml: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid {}", file.display()))?;
    let settings = toml.get("settings").and_then(|s| s.as_table());
    // As the plugin reads them (through the host's `config`): strings as they are,
    // other values as TOML writes them, empty as unset.
    let get = |key: &str| -> Option<String> {
        let value = match settings?.get(key)? {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        (!value.is_empty()).then_some(value)
    };
    Scheme::from_settings(get).map_err(anyhow::Error::msg)
}

/// bcrypt's cost for new hashes (EMQX's and the bcrypt crate's default).
const BCRYPT_COST: u32 = 10;

fn new_salt() -> anyhow::Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The stored (password, salt) for `plain` under `scheme`.
fn stored_password(scheme: Scheme, plain: &str) -> anyhow::Result<(String, Option<String>)> {
    ensure!(!plain.is_empty(), "the password is empty");
    let salt = if password::uses_salt(scheme) {
        Some(new_salt()?)
    } else {
        None
    };
    let hash = password::hash(
        scheme,
        plain.as_bytes(),
        salt.as_deref().unwrap_or("").as_bytes(),
        BCRYPT_COST,
    )
    .map_err(anyhow::Error::msg)?;
    Ok((hash, salt))
}

fn text(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::Text(s.to_string()))
}

async fn user_exists(db: &Database, username: &str) -> anyhow::Result<bool> {
    let rows = db
        .execute(
            "SELECT COUNT(*) FROM mqtt_user WHERE username = ?",
            &[text(Some(username))],
        )
        .await?;
    Ok(matches!(rows.first().and_then(|r| r.first()), Some(Value::Integer(n)) if *n > 0))
}

fn check_username(username: &str) -> anyhow::Result<()> {
    ensure!(!username.is_empty(), "the user name is empty");
    ensure!(
        !username.starts_with('$'),
        "user names starting with '$' are never looked up (they are reserved, as in EMQX)"
    );
    ensure!(username.len() <= 100, "user names hold at most 100 bytes");
    Ok(())
}

/// Adds a user; refused when the name exists.
pub async fn user_add(
    db: &Database,
    scheme: Scheme,
    username: &str,
    plain: &str,
    superuser: bool,
) -> anyhow::Result<()> {
    check_username(username)?;
    if user_exists(db, username).await? {
        bail!("user {username:?} exists (change the password with `wasmq user passwd`)");
    }
    let (hash, salt) = stored_password(scheme, plain)?;
    // TRUE/FALSE as literals: PostgreSQL's is_superuser is a boolean, the others' an
    // integer, and both take these.
    let sql = format!(
        "INSERT INTO mqtt_user (username, password, salt, is_superuser, created) \
         VALUES (?, ?, ?, {}, CURRENT_TIMESTAMP)",
        if superuser { "TRUE" } else { "FALSE" }
    );
    db.execute(
        &sql,
        &[
            text(Some(username)),
            text(Some(&hash)),
            text(salt.as_deref()),
        ],
    )
    .await?;
    Ok(())
}

/// Sets a user's password; refused when the user does not exist.
pub async fn user_passwd(
    db: &Database,
    scheme: Scheme,
    username: &str,
    plain: &str,
) -> anyhow::Result<()> {
    ensure!(user_exists(db, username).await?, "no user {username:?}");
    let (hash, salt) = stored_password(scheme, plain)?;
    db.execute(
        "UPDATE mqtt_user SET password = ?, salt = ? WHERE username = ?",
        &[
            text(Some(&hash)),
            text(salt.as_deref()),
            text(Some(username)),
        ],
    )
    .await?;
    Ok(())
}

/// The iteration count of new SCRAM credentials (RFC 7677's minimum).
pub const SCRAM_ITERATIONS: u32 = scram::ITERATIONS;

/// Adds a SCRAM-SHA-256 user to `mqtt_scram_user` (a new random salt); refused when
/// the name exists there.
pub async fn scram_user_add(
    db: &Database,
    username: &str,
    plain: &str,
    superuser: bool,
    iterations: u32,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    check_username(username)?;
    ensure!(iterations >= 1, "the iteration count is at least 1");
    // A user name SCRAM cannot carry as is (RFC 5802 saslname: ',' and '=' escaped) is
    // fine: the plugin decodes it before the lookup.
    let rows = db
        .execute(
            "SELECT COUNT(*) FROM mqtt_scram_user WHERE username = ?",
            &[text(Some(username))],
        )
        .await?;
    if matches!(rows.first().and_then(|r| r.first()), Some(Value::Integer(n)) if *n > 0) {
        bail!("SCRAM user {username:?} exists");
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let (stored_key, server_key) = scram::keys(plain, &salt, iterations);
    db.execute(
        "INSERT INTO mqtt_scram_user          (username, salt, iterations, stored_key, server_key, is_superuser, created)          VALUES (?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP)",
        &[
            text(Some(username)),
            Value::Text(B64.encode(salt)),
            Value::Integer(i64::from(iterations)),
            Value::Text(B64.encode(stored_key)),
            Value::Text(B64.encode(server_key)),
            Value::Integer(i64::from(superuser)),
        ],
    )
    .await?;
    Ok(())
}

/// Removes a user; refused when the user does not exist.
pub async fn user_rm(db: &Database, username: &str) -> anyhow::Result<()> {
    ensure!(user_exists(db, username).await?, "no user {username:?}");
    db.execute(
        "DELETE FROM mqtt_user WHERE username = ?",
        &[text(Some(username))],
    )
    .await?;
    Ok(())
}

/// Every user, by name.
pub async fn user_list(db: &Database) -> anyhow::Result<Vec<User>> {
    let rows = db
        .execute(
            "SELECT username, is_superuser FROM mqtt_user ORDER BY username",
            &[],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| User {
            username: match row.first() {
                Some(Value::Text(t)) => t.clone(),
                _ => String::new(),
            },
            superuser: matches!(row.get(1), Some(Value::Integer(n)) if *n != 0),
        })
        .collect())
}

/// Checks an `ipaddr` value: an address or a CIDR.
fn check_ipaddr(ipaddr: &str) -> anyhow::Result<()> {
    let (addr, len) = match ipaddr.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (ipaddr, None),
    };
    let addr: std::net::IpAddr = addr
        .parse()
        .with_context(|| format!("ipaddr {ipaddr:?} is not an address or a CIDR"))?;
    if let Some(len) = len {
        let len: u8 = len
            .parse()
            .with_context(|| format!("ipaddr {ipaddr:?}: bad prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        ensure!(len <= max, "ipaddr {ipaddr:?}: prefix longer than {max}");
    }
    Ok(())
}

/// Adds a rule and returns its id. At least one of ipaddr, username (`$all` for
/// everyone) and clientid must be given.
pub async fn acl_add(db: &Database, rule: &Rule) -> anyhow::Result<i64> {
    ensure!(
        rule.ipaddr.is_some() || rule.username.is_some() || rule.clientid.is_some(),
        "say whom the rule is for: --username, --clientid, --ipaddr or --all"
    );
    ensure!(!rule.topic.is_empty(), "the topic is empty");
    ensure!(rule.topic.len() <= 100, "topics hold at most 100 bytes");
    if let Some(ipaddr) = &rule.ipaddr {
        check_ipaddr(ipaddr)?;
    }
    db.execute(
        "INSERT INTO mqtt_acl (allow, ipaddr, username, clientid, access, topic) \
         VALUES (?, ?, ?, ?, ?, ?)",
        &[
            Value::Integer(rule.allow as i64),
            text(rule.ipaddr.as_deref()),
            text(rule.username.as_deref()),
            text(rule.clientid.as_deref()),
            Value::Integer(rule.access),
            text(Some(&rule.topic)),
        ],
    )
    .await?;
    // The newest row is ours unless someone else added one at the same instant; the id
    // is only reported.
    let rows = db.execute("SELECT MAX(id) FROM mqtt_acl", &[]).await?;
    match rows.first().and_then(|r| r.first()) {
        Some(Value::Integer(id)) => Ok(*id),
        _ => bail!("the rule was added but its id could not be read"),
    }
}

/// Removes rule `id`; refused when there is none.
pub async fn acl_rm(db: &Database, id: i64) -> anyhow::Result<()> {
    let rows = db
        .execute(
            "SELECT COUNT(*) FROM mqtt_acl WHERE id = ?",
            &[Value::Integer(id)],
        )
        .await?;
    ensure!(
        matches!(rows.first().and_then(|r| r.first()), Some(Value::Integer(n)) if *n > 0),
        "no rule {id}"
    );
    db.execute("DELETE FROM mqtt_acl WHERE id = ?", &[Value::Integer(id)])
        .await?;
    Ok(())
}

/// Every rule, in the order they are checked by default (highest id first).
pub async fn acl_list(db: &Database) -> anyhow::Result<Vec<Rule>> {
    let rows = db
        .execute(
            "SELECT id, allow, ipaddr, username, clientid, access, topic FROM mqtt_acl \
             ORDER BY id DESC",
            &[],
        )
        .await?;
    let opt = |v: Option<&Value>| match v {
        Some(Value::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let int = |v: Option<&Value>| match v {
        Some(Value::Integer(n)) => *n,
        _ => -1,
    };
    Ok(rows
        .iter()
        .map(|row| Rule {
            id: int(row.first()),
            allow: int(row.get(1)) == 1,
            ipaddr: opt(row.get(2)),
            username: opt(row.get(3)),
            clientid: opt(row.get(4)),
            access: int(row.get(5)),
            topic: opt(row.get(6)).unwrap_or_default(),
        })
        .collect())
}
