//! The default plugin's tables (`mqtt_acl`, `mqtt_user`, `mqtt_scram_user`), created
//! before plugins start: the plugin itself is granted only reads. What they are is
//! `wasmq_acl_rules::schema`'s; this runs it on the broker's database.

use wasmq_acl_rules::schema::{self, Dialect, Report};
use wasmq_plugin_host::database::Value;
use wasmq_plugin_host::{Backend, Database, QueryError};

/// Creates the tables that are missing, and the default rules with a new `mqtt_acl`
/// (one log line each).
pub async fn ensure(db: &Database) -> Result<Report, QueryError> {
    let dialect = match db.backend() {
        Backend::Sqlite => Dialect::Sqlite,
        Backend::MySql => Dialect::MySql,
        Backend::Postgres => Dialect::Postgres,
    };
    let report = schema::ensure(dialect, |sql| async move {
        let rows = db.execute(&sql, &[]).await?;
        Ok(match rows.first().and_then(|row| row.first()) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        })
    })
    .await?;
    if report.acl_created {
        tracing::info!(
            database = db.name(),
            "created mqtt_acl with the default rules"
        );
    }
    if report.user_created {
        tracing::info!(database = db.name(), "created mqtt_user (empty)");
    }
    Ok(report)
}
