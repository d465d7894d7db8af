//! The [`Plugin`] implementation: settings, the three statements, and the
//! mapping of their rows onto [`rules`] and [`password`] of `wasmq-acl-rules`.

use std::sync::OnceLock;

use wasmq_plugin_sdk::sql::{self, SqlError, SqlValue};
use wasmq_plugin_sdk::{
    Action, AuthResult, AuthzResult, CacheLifetime, Client, Decision, Plugin, config, log,
};

use wasmq_acl_rules::password::{self, Scheme};
use wasmq_acl_rules::rules::{self, AclRow, ClientInfo, Order, Value};

/// The plugin's settings, read once per instance (a changed `acl-sql.toml`
/// reloads the plugin, so new instances read the new values).
struct Settings {
    order: Order,
    scheme: Scheme,
    superuser: bool,
}

fn setting(key: &str) -> Option<String> {
    config::get(key).filter(|v| !v.is_empty())
}

fn read_settings() -> Result<Settings, String> {
    let order = match setting("acl_order") {
        None => Order::default(),
        Some(v) => Order::parse(&v)
            .ok_or_else(|| format!("acl_order must be id-desc or id-asc, not {v:?}"))?,
    };
    let scheme = Scheme::from_settings(setting)?;
    let superuser = match setting("superuser").as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(v) => return Err(format!("superuser must be true or false, not {v:?}")),
    };
    Ok(Settings {
        order,
        scheme,
        superuser,
    })
}

/// The settings, or why they are wrong (then every check fails closed).
fn settings() -> Result<&'static Settings, &'static str> {
    static SETTINGS: OnceLock<Result<Settings, String>> = OnceLock::new();
    SETTINGS
        .get_or_init(read_settings)
        .as_ref()
        .map_err(String::as_str)
}

fn value(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(f) => Value::Real(f),
        SqlValue::Text(t) => Value::Text(t),
        SqlValue::Blob(b) => Value::Blob(b),
    }
}

fn text_or_null(v: Option<&str>) -> SqlValue {
    v.map_or(SqlValue::Null, |s| SqlValue::Text(s.to_owned()))
}

fn sql_error(e: &SqlError) -> String {
    match e {
        SqlError::NotGranted => "the sql capability is not granted (or no database)".into(),
        SqlError::InvalidStatement(s) => format!("invalid statement: {s}"),
        SqlError::InvalidParams(s) => format!("invalid parameters: {s}"),
        SqlError::Database(s) => format!("database: {s}"),
        SqlError::Timeout => "the query timed out".into(),
    }
}

/// An `is_superuser` value: a non-zero number, or `1`/`true`/`t` as text.
fn truthy(v: &Value) -> bool {
    let text = match v {
        Value::Integer(i) => return *i != 0,
        Value::Real(f) => return *f != 0.0,
        Value::Text(t) => t.as_str(),
        Value::Blob(b) => std::str::from_utf8(b).unwrap_or(""),
        Value::Null => return false,
    };
    matches!(text.to_ascii_lowercase().as_str(), "1" | "true" | "t")
}

fn column_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Text(t) => Some(t.as_bytes()),
        Value::Blob(b) => Some(b),
        _ => None,
    }
}

/// `superuser_query` for `username`; any failure means "not a superuser".
fn is_superuser(username: &str) -> bool {
    match sql::query("superuser_query", &[SqlValue::Text(username.to_owned())]) {
        Ok(rows) => rows
            .into_iter()
            .next()
            .and_then(|row| row.columns.into_iter().next())
            .is_some_and(|v| truthy(&value(v))),
        Err(e) => {
            log::warn(&format!(
                "superuser_query failed for user {username:?}: {}; not a superuser",
                sql_error(&e)
            ));
            false
        }
    }
}

/// Says at debug level which row denied a request, or that none matched (then the next
/// plugin or the broker's `acl_nomatch` decides): a v3.1.1 client is told nothing when its
/// QoS 0 publish is dropped, and the operator's only clue is this line. Allows are not
/// logged: they are the common case, and each log line is a host call.
fn log_refusal(
    decision: rules::Decision,
    row: Option<&AclRow>,
    action: rules::Action,
    topic: &str,
    client: &Client,
) {
    let what = match action {
        rules::Action::Publish => "publish to",
        rules::Action::Subscribe => "subscribe to",
        rules::Action::Deliver => "delivery of",
    };
    let who = match &client.username {
        Some(user) => format!(
            "client {:?} (user {user:?}, from {})",
            client.client_id, client.peer_addr
        ),
        None => format!("client {:?} (from {})", client.client_id, client.peer_addr),
    };
    match (decision, row) {
        (rules::Decision::Deny, Some(row)) => log::debug(&format!(
            "denied {what} {topic:?} for {who}: mqtt_acl row {row}"
        )),
        // No row on a delivery is no refusal: the subscription's grant stands.
        (rules::Decision::NoMatch, _) if action == rules::Action::Deliver => {}
        (rules::Decision::NoMatch, _) => {
            // The surprise of `$app/x` behind a `#` rule: say why.
            let hint = if topic.starts_with('$') {
                " (`#` and `+` do not match a topic starting with `$`)"
            } else {
                ""
            };
            log::debug(&format!(
                "no mqtt_acl row matches {what} {topic:?} for {who}{hint}; the next \
                 authz plugin decides, else the broker's [plugins] acl_nomatch"
            ))
        }
        _ => {}
    }
}

struct AclSql;

impl Plugin for AclSql {
    fn authenticate(client: Client, password: Option<Vec<u8>>) -> AuthResult {
        // No user name, or a `$`-user name (EMQX never looks those up): the
        // next plugin, then `allow_anonymous`, decides.
        let Some(username) = client
            .username
            .filter(|u| !u.is_empty() && !u.starts_with('$'))
        else {
            return AuthResult::ignore();
        };
        let settings = match settings() {
            Ok(s) => s,
            Err(e) => {
                log::error(&format!("acl-sql misconfigured: {e}; denying every login"));
                return AuthResult::deny("acl-sql is misconfigured");
            }
        };
        let rows = match sql::query("auth_query", &[SqlValue::Text(username.clone())]) {
            Ok(rows) => rows,
            Err(e) => {
                let why = sql_error(&e);
                log::error(&format!(
                    "auth_query failed for user {username:?}: {why}; denied"
                ));
                return AuthResult::deny(format!("auth_query failed: {why}"));
            }
        };
        let Some(row) = rows.into_iter().next() else {
            return AuthResult::ignore(); // not ours
        };
        let columns: Vec<Value> = row.columns.into_iter().map(value).collect();
        let Some(hash) = columns.first().and_then(column_bytes) else {
            log::warn(&format!("user {username:?} has no usable password; denied"));
            return AuthResult::deny("no usable password");
        };
        let salt = columns.get(1).and_then(column_bytes).unwrap_or(&[]);
        let Some(password) = password else {
            return AuthResult::deny("no password");
        };
        if !password::verify(settings.scheme, &password, hash, salt) {
            return AuthResult::deny("bad user name or password");
        }
        // A third column of `auth_query` is `is_superuser` and saves a query.
        let superuser = match columns.get(2) {
            Some(v) => truthy(v),
            None => settings.superuser && is_superuser(&username),
        };
        if superuser {
            AuthResult::superuser()
        } else {
            AuthResult::allow()
        }
    }

    fn authorize(
        client: Client,
        action: Action,
        topic: String,
        _qos: u8,
        _retain: bool,
    ) -> AuthzResult {
        let action = match action {
            Action::Publish => rules::Action::Publish,
            Action::Subscribe => rules::Action::Subscribe,
        };
        check(&client, action, &topic)
    }

    /// A delivery through a wildcard subscription: the rows with subscribe access on
    /// the concrete topic (`rules::Action::Deliver`); no row leaves it to the
    /// subscription (ignore).
    fn authorize_delivery(client: Client, topic: String, _qos: u8, _retain: bool) -> AuthzResult {
        check(&client, rules::Action::Deliver, &topic)
    }
}

/// The rules of `acl_query`'s rows for `client` doing `action` on `topic`, kept for the
/// operator's TTL (the rows may change under it: `[authz_cache] ttl_ms` is how stale the
/// operator accepts). Fails closed (deny) when the settings, the query or a row is
/// wrong, and then says not to keep the answer: it was made without the rules.
fn check(client: &Client, action: rules::Action, topic: &str) -> AuthzResult {
    let blind = AuthzResult::deny().cached(CacheLifetime::None);
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            log::error(&format!("acl-sql misconfigured: {e}; denying"));
            return blind;
        }
    };
    let info = ClientInfo {
        client_id: &client.client_id,
        username: client.username.as_deref(),
        peer_addr: &client.peer_addr,
    };
    let params = [
        text_or_null(rules::ip_param(&client.peer_addr).as_deref()),
        text_or_null(info.matchable_username()),
        SqlValue::Text(client.client_id.clone()),
    ];
    let rows = match sql::query("acl_query", &params) {
        Ok(rows) => rows,
        Err(e) => {
            log::error(&format!(
                "acl_query failed: {}; denying {action:?} {topic:?} for client {:?}",
                sql_error(&e),
                client.client_id
            ));
            return blind;
        }
    };
    let rows = rows
        .into_iter()
        .map(|r| AclRow::from_columns(r.columns.into_iter().map(value).collect()))
        .collect::<Result<Vec<_>, _>>();
    let decision = rows.and_then(|rows| {
        let (decision, row) = rules::decide_by_row(&rows, &info, action, topic, settings.order)?;
        log_refusal(decision, row.map(|i| &rows[i]), action, topic, client);
        Ok(decision)
    });
    match decision {
        Ok(rules::Decision::Allow) => Decision::Allow.into(),
        Ok(rules::Decision::Deny) => Decision::Deny.into(),
        Ok(rules::Decision::NoMatch) => Decision::Ignore.into(),
        Err(e) => {
            log::error(&format!(
                "{e}; denying {action:?} {topic:?} for client {:?}",
                client.client_id
            ));
            blind
        }
    }
}

#[cfg(target_family = "wasm")]
wasmq_plugin_sdk::export_plugin!(AclSql: authn, authz, deliver);
