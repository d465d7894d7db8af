//! The tables of the default plugin, per backend, and the rules a new database starts
//! with: EMQX 4.x's `mqtt_acl` and `mqtt_user` (columns and types of `mqtt.sql` in
//! `emqx_auth_mysql` / `emqx_auth_pgsql`), and `mqtt_scram_user` (SCRAM-SHA-256
//! credentials for the `scram-sha256` example plugin), all `IF NOT EXISTS`.
//!
//! No database code here: [`ensure`] is handed a function that runs one statement, so
//! the broker runs it on its pool and the tests on theirs.

use std::future::Future;

/// The SQL dialect the tables are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// MySQL and MariaDB.
    MySql,
    /// PostgreSQL.
    Postgres,
}

const TABLES_SQLITE: &str = include_str!("../schema/sqlite.sql");
const TABLES_MYSQL: &str = include_str!("../schema/mysql.sql");
const TABLES_POSTGRES: &str = include_str!("../schema/postgres.sql");

/// The rules a fresh `mqtt_acl` starts with (docs/acl.md explains them).
pub const DEFAULT_RULES: &str = include_str!("../schema/default-acl.sql");

/// The script that creates the missing tables in `dialect`.
pub fn tables(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => TABLES_SQLITE,
        Dialect::MySql => TABLES_MYSQL,
        Dialect::Postgres => TABLES_POSTGRES,
    }
}

/// What [`ensure`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `mqtt_acl` did not exist and was created, with the default rules.
    pub acl_created: bool,
    /// `mqtt_user` did not exist and was created (empty).
    pub user_created: bool,
}

/// Creates `mqtt_acl`, `mqtt_user` and `mqtt_scram_user` if they are missing, and
/// inserts the default rules when `mqtt_acl` was just created (never into an existing
/// table, so an operator's rules, or an emptied table, stay as they are).
///
/// `run` runs one statement (no parameters) and answers the integer in the first
/// column of its first row, if there is one.
pub async fn ensure<E, F, Fut>(dialect: Dialect, mut run: F) -> Result<Report, E>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Option<i64>, E>>,
{
    let acl_existed = run(table_exists(dialect, "mqtt_acl")).await?.unwrap_or(0) > 0;
    let user_existed = run(table_exists(dialect, "mqtt_user")).await?.unwrap_or(0) > 0;
    for statement in statements(tables(dialect)) {
        run(statement).await?;
    }
    if !acl_existed {
        for statement in statements(DEFAULT_RULES) {
            run(statement).await?;
        }
    }
    Ok(Report {
        acl_created: !acl_existed,
        user_created: !user_existed,
    })
}

/// A statement counting the tables named `table` (one of ours: a constant, written
/// into the statement) in the current database.
fn table_exists(dialect: Dialect, table: &str) -> String {
    debug_assert!(table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    match dialect {
        Dialect::Sqlite => {
            format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
        }
        Dialect::MySql => format!(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = '{table}'"
        ),
        Dialect::Postgres => format!(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '{table}'"
        ),
    }
}

/// Splits a script into its statements at `;` outside quotes and comments; empty
/// pieces (and pieces that are only comments) are dropped.
pub fn statements(script: &str) -> Vec<String> {
    let mut cuts = Vec::new();
    scan(script, |i, c| {
        if c == ';' {
            cuts.push(i);
        }
    });
    let mut pieces = Vec::new();
    let mut last = 0;
    for i in cuts.into_iter().chain(std::iter::once(script.len())) {
        let piece = &script[last..i];
        last = (i + 1).min(script.len());
        let mut has_code = false;
        scan(piece, |_, c| has_code |= !c.is_whitespace());
        if has_code {
            pieces.push(piece.trim().to_string());
        }
    }
    pieces
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    SingleQuoted,
    DoubleQuoted,
    Backticked,
    LineComment,
    BlockComment,
}

/// Calls `on_code` with every character of `sql` that is code: not inside a quoted
/// string or identifier, nor a comment.
fn scan(sql: &str, mut on_code: impl FnMut(usize, char)) {
    let mut state = Lex::Code;
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match state {
            Lex::Code => match c {
                '\'' => state = Lex::SingleQuoted,
                '"' => state = Lex::DoubleQuoted,
                '`' => state = Lex::Backticked,
                '-' if chars.peek().map(|&(_, n)| n) == Some('-') => state = Lex::LineComment,
                '/' if chars.peek().map(|&(_, n)| n) == Some('*') => state = Lex::BlockComment,
                _ => on_code(i, c),
            },
            Lex::SingleQuoted | Lex::DoubleQuoted | Lex::Backticked => {
                let close = match state {
                    Lex::SingleQuoted => '\'',
                    Lex::DoubleQuoted => '"',
                    _ => '`',
                };
                if c == '\\' && state != Lex::Backticked {
                    chars.next();
                } else if c == close {
                    state = Lex::Code;
                }
            }
            Lex::LineComment => {
                if c == '\n' {
                    state = Lex::Code;
                }
            }
            Lex::BlockComment => {
                if c == '*' && chars.peek().map(|&(_, n)| n) == Some('/') {
                    chars.next();
                    state = Lex::Code;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_at_semicolons_outside_quotes() {
        let parts = statements(
            "-- head;\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nINSERT INTO a VALUES ('x;y');\n-- tail\n",
        );
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].ends_with("DEFAULT ';')"));
        assert_eq!(parts[1], "INSERT INTO a VALUES ('x;y')");
    }

    #[test]
    fn every_backend_creates_the_three_tables() {
        for dialect in [Dialect::Sqlite, Dialect::MySql, Dialect::Postgres] {
            let script = statements(tables(dialect)).join("\n");
            for table in ["mqtt_acl", "mqtt_user", "mqtt_scram_user"] {
                assert!(
                    script.contains(&format!("CREATE TABLE IF NOT EXISTS {table}"))
                        || script.contains(&format!("CREATE TABLE IF NOT EXISTS `{table}`")),
                    "{dialect:?}: {table}"
                );
            }
        }
        assert_eq!(statements(DEFAULT_RULES).len(), 1);
    }
}
