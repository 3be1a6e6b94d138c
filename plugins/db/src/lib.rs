//! SQL over one SQLite database: the file named by the granted environment
//! value `DB_PATH` (a guest path inside a granted directory, such as
//! `/data/app.sqlite`).
//!
//! What this plugin may do to the file is the grant's doing, not this
//! code's: under a read-only (`ro`) grant no statement can change the file,
//! whatever SQL arrives. `db.query` adds two locks of its own (a read-only
//! open and `PRAGMA query_only`) so that it never writes even under a
//! read-write grant; only `db.execute` (annotated destructive) writes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use moat_plugin::prelude::*;
use moat_plugin::serde_json::{Map, Value};
use rusqlite::config::DbConfig;
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Batch, Connection, OpenFlags, Statement, ToSql};
use std::fmt::Write as _;

/// Rows `db.query` returns unless `DB_MAX_ROWS` says otherwise.
const DEFAULT_MAX_ROWS: usize = 50;
/// Characters of one value shown in the text rendering (the structured
/// result has it whole).
const TEXT_CELL_CHARS: usize = 60;

// Unknown keys are refused (the schema says `additionalProperties: false`):
// everything a person is asked to confirm is something this tool uses.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SqlArgs {
    /// One SQL statement. Put values in `params` and refer to them as `?`
    /// (or `?1`, `?2`...); they are bound, never pasted into the text.
    sql: String,
    /// Positional parameters: null, booleans, numbers or strings.
    #[serde(default)]
    params: Vec<Value>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Serialize, JsonSchema)]
struct QueryResult {
    /// Column names, in order (a repeated name gets a `_2`, `_3`... suffix).
    columns: Vec<String>,
    /// At most the row cap, each an object keyed by column name. A BLOB is
    /// `{"base64": "..."}`.
    rows: Vec<Map<String, Value>>,
    /// True when the query had more rows than were returned.
    truncated: bool,
    /// How many rows the query had in all.
    total: u64,
}

#[derive(Serialize, JsonSchema)]
struct ExecuteResult {
    /// Rows inserted, updated or deleted.
    changes: u64,
    /// The rowid of the last row inserted through this call, 0 if none.
    last_insert_rowid: i64,
}

#[derive(Serialize, JsonSchema)]
struct Schema {
    /// Tables and views, by name.
    tables: Vec<Table>,
}

#[derive(Serialize, JsonSchema)]
struct Table {
    name: String,
    /// `table` or `view`.
    kind: String,
    columns: Vec<Column>,
    indexes: Vec<Index>,
}

#[derive(Serialize, JsonSchema)]
struct Column {
    name: String,
    /// The declared type, as written (may be empty).
    #[serde(rename = "type")]
    declared_type: String,
    not_null: bool,
    /// The default value's SQL text.
    default: Option<String>,
    /// Position in the primary key (1-based), 0 when not part of it.
    primary_key: u32,
}

#[derive(Serialize, JsonSchema)]
struct Index {
    name: String,
    unique: bool,
    columns: Vec<String>,
}

/// How a connection is opened.
enum Access {
    /// `db.query` and `db.schema`: never writes.
    Read,
    /// `db.execute`: writes, if the grant lets the file be written.
    Write,
}

fn open(access: Access) -> Result<Connection, String> {
    let path = std::env::var("DB_PATH").map_err(|_| {
        "DB_PATH is not granted: the operator names the database with \
         env = { DB_PATH = \"/data/<file>.sqlite\" } in this plugin's grants"
            .to_string()
    })?;
    let flags = match access {
        Access::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
        // Never CREATE: a mistyped path is an error, not a new database.
        Access::Write => OpenFlags::SQLITE_OPEN_READ_WRITE,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // WASI has no file locks; SQLite's WASI default ("unix-dotfile")
    // makes a lock directory beside the database, which a read-only grant
    // forbids and which a call ended by its deadline would leave behind,
    // locking the database for good. See README.md on concurrent writers.
    let conn = Connection::open_with_flags_and_vfs(&path, flags, c"unix-none")
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    // One database: ATTACH of any file, granted or not, is refused (and
    // so VACUUM INTO); the nameless temporary database plain VACUUM
    // attaches is allowed.
    conn.authorizer(Some(|context: AuthContext<'_>| match context.action {
        AuthAction::Attach { filename } if !filename.is_empty() => Authorization::Deny,
        _ => Authorization::Allow,
    }));
    let configure = || -> rusqlite::Result<()> {
        // No SQL may corrupt the file on purpose (writable_schema and
        // friends), and functions in the database's own schema (views,
        // triggers) are not trusted with side effects.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
        if let Access::Read = access {
            conn.pragma_update(None, "query_only", true)?;
        }
        Ok(())
    };
    configure().map_err(|e| format!("cannot configure {path}: {e}"))?;
    Ok(conn)
}

/// A JSON parameter as SQLite binds it.
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::from(rusqlite::types::Null),
            Value::Bool(b) => ToSqlOutput::from(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => ToSqlOutput::from(i),
                (None, Some(f)) => ToSqlOutput::from(f),
                (None, None) => ToSqlOutput::from(n.to_string()),
            },
            Value::String(s) => ToSqlOutput::from(s.as_str()),
            Value::Array(_) | Value::Object(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "only null, booleans, numbers and strings can be bound".into(),
                ));
            }
        })
    }
}

fn params(values: &[Value]) -> impl rusqlite::Params + '_ {
    rusqlite::params_from_iter(values.iter().map(Param))
}

/// The one statement `sql` holds. Statements are prepared one at a time
/// (rusqlite's own check recurses once per statement, and thousands of
/// `SELECT 1;` would overflow the plugin's stack).
fn prepare<'c>(conn: &'c Connection, sql: &str) -> Result<Statement<'c>, String> {
    let mut batch = Batch::new(conn, sql);
    let first = batch
        .next()
        .map_err(explain)?
        .ok_or("the SQL holds no statement")?;
    match batch.next() {
        Ok(None) => Ok(first),
        _ => Err("one statement per call: the SQL holds more than one".into()),
    }
}

/// What SQLite said, with a hint where the grant explains it.
fn explain(e: rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ReadOnly) => format!(
            "{e}: this database cannot be written here (db.query never writes; \
             db.execute writes only under a read-write grant)"
        ),
        _ => e.to_string(),
    }
}

fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        // SQLite stores infinities, which JSON cannot carry.
        ValueRef::Real(f) => moat_plugin::serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::from(f.to_string())),
        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => {
            let mut m = Map::new();
            m.insert("base64".into(), Value::from(STANDARD.encode(b)));
            Value::Object(m)
        }
    }
}

/// Column names made unique, so that rows can be objects.
fn unique_names(names: Vec<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let mut candidate = name.to_string();
        let mut n = 1;
        while out.contains(&candidate) {
            n += 1;
            candidate = format!("{name}_{n}");
        }
        out.push(candidate);
    }
    out
}

fn max_rows() -> Result<usize, String> {
    match std::env::var("DB_MAX_ROWS") {
        Err(_) => Ok(DEFAULT_MAX_ROWS),
        Ok(v) => v
            .parse()
            .map_err(|_| format!("DB_MAX_ROWS must be a whole number, not {v:?}")),
    }
}

fn query(args: SqlArgs) -> Result<Rendered<QueryResult>, String> {
    let cap = max_rows()?;
    let conn = open(Access::Read)?;
    let mut stmt = prepare(&conn, &args.sql)?;
    let columns = unique_names(stmt.column_names());
    let mut rows = stmt.query(params(&args.params)).map_err(explain)?;
    let mut kept = Vec::new();
    let mut total: u64 = 0;
    // Rows past the cap are stepped over and counted, never decoded or kept.
    while let Some(row) = rows.next().map_err(explain)? {
        total += 1;
        if kept.len() < cap {
            let mut object = Map::new();
            for (i, name) in columns.iter().enumerate() {
                object.insert(name.clone(), to_json(row.get_ref(i).map_err(explain)?));
            }
            kept.push(object);
        }
    }
    let result = QueryResult {
        truncated: total > kept.len() as u64,
        columns,
        rows: kept,
        total,
    };
    Ok(Rendered {
        text: render(&result),
        value: result,
    })
}

/// A plain-text table of `result`, for readers of text alone.
fn render(result: &QueryResult) -> String {
    let cell = |v: &Value| {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        // One line per row, whatever the values hold.
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        match text.char_indices().nth(TEXT_CELL_CHARS) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    };
    let mut out = result.columns.join(" | ");
    for row in &result.rows {
        out.push('\n');
        let cells: Vec<String> = result
            .columns
            .iter()
            .map(|c| cell(row.get(c).unwrap_or(&Value::Null)))
            .collect();
        out.push_str(&cells.join(" | "));
    }
    let _ = write!(out, "\n({} of {} rows", result.rows.len(), result.total);
    if result.truncated {
        out.push_str("; truncated: narrow the query, or page with LIMIT and OFFSET");
    }
    out.push(')');
    out
}

fn execute(args: SqlArgs) -> Result<Rendered<ExecuteResult>, String> {
    let conn = open(Access::Write)?;
    let mut stmt = prepare(&conn, &args.sql)?;
    let changes = stmt.execute(params(&args.params)).map_err(explain)?;
    let result = ExecuteResult {
        changes: changes as u64,
        last_insert_rowid: conn.last_insert_rowid(),
    };
    Ok(Rendered {
        text: format!(
            "{} row(s) changed; last inserted rowid {}",
            result.changes, result.last_insert_rowid
        ),
        value: result,
    })
}

fn schema(_: NoArgs) -> Result<Rendered<Schema>, String> {
    let conn = open(Access::Read)?;
    let tables = read_schema(&conn).map_err(explain)?;
    let mut text = String::new();
    for table in &tables {
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.declared_type).trim().to_string())
            .collect();
        let _ = writeln!(
            text,
            "{} {}({})",
            table.kind,
            table.name,
            columns.join(", ")
        );
        for index in &table.indexes {
            let _ = writeln!(
                text,
                "  {}index {} on ({})",
                if index.unique { "unique " } else { "" },
                index.name,
                index.columns.join(", ")
            );
        }
    }
    Ok(Rendered {
        text,
        value: Schema { tables },
    })
}

fn read_schema(conn: &Connection) -> rusqlite::Result<Vec<Table>> {
    let mut tables = conn
        .prepare(
            "SELECT name, type FROM sqlite_schema \
             WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| {
            Ok(Table {
                name: r.get(0)?,
                kind: r.get(1)?,
                columns: Vec::new(),
                indexes: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut columns = conn.prepare(
        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid",
    )?;
    let mut indexes =
        conn.prepare("SELECT name, \"unique\" FROM pragma_index_list(?1) ORDER BY name")?;
    let mut index_columns =
        conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?;
    for table in &mut tables {
        table.columns = columns
            .query_map([&table.name], |r| {
                Ok(Column {
                    name: r.get(0)?,
                    declared_type: r.get(1)?,
                    not_null: r.get(2)?,
                    default: r.get(3)?,
                    primary_key: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let named: Vec<(String, bool)> = indexes
            .query_map([&table.name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (name, unique) in named {
            let columns = index_columns
                .query_map([&name], |r| r.get::<_, Option<String>>(0))?
                // An expression column has no name.
                .map(|c| c.map(|c| c.unwrap_or_else(|| "<expression>".into())))
                .collect::<rusqlite::Result<_>>()?;
            table.indexes.push(Index {
                name,
                unique,
                columns,
            });
        }
    }
    Ok(tables)
}

moat_plugin::plugin![
    Tool::new(
        "query",
        "Runs one read-only SQL statement with bound parameters; returns at most the \
         row cap (50 unless the operator set DB_MAX_ROWS) and the total row count.",
        query
    )
    .title("Query the database")
    .read_only(),
    Tool::new(
        "schema",
        "Lists the database's tables and views with their columns and indexes.",
        schema
    )
    .title("Describe the database")
    .read_only()
    .idempotent(),
    Tool::new(
        "execute",
        "Runs one SQL statement that changes the database (INSERT, UPDATE, DELETE, DDL) \
         with bound parameters; needs a read-write grant.",
        execute
    )
    .title("Change the database")
    .destructive(),
];
