//! The `db` plugin: real SQLite in a component, over a copy of the example
//! shop database. Read-only comes from the grant: under an `ro` preopen
//! no SQL changes the file, which stays byte-identical.

use moat::runtime::CallError;
use moat_tests::Sandbox;
use serde_json::{Value, json};
use sha2::Digest;
use std::path::{Path, PathBuf};

/// The example database, as committed.
fn example_db() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/db/shop.sqlite")
}

fn sha256(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// `db` over a copy of the shop at `/data/shop.sqlite`, granted `mode`;
/// `small` is the same with a row cap of 10.
async fn shop(mode: &str) -> Sandbox {
    let grants = |extra: &str| {
        format!(
            r#"dirs = [{{ host = "data", guest = "/data", mode = "{mode}" }}]
env = {{ DB_PATH = "/data/shop.sqlite"{extra} }}
fuel = 2_000_000_000
timeout_ms = 10_000"#
        )
    };
    let sb = Sandbox::builder()
        .dir("data")
        .plugin("db", &grants(""))
        .plugin_from("small", "db", &grants(r#", DB_MAX_ROWS = "10""#))
        .plugin_from("tight", "db", &format!("{}\nmemory_mib = 8", grants("")))
        .build()
        .await;
    std::fs::copy(example_db(), sb.path("data/shop.sqlite")).unwrap();
    sb
}

/// The structured result of a call that must succeed.
async fn structured(sb: &Sandbox, plugin: &str, tool: &str, args: Value) -> Value {
    let out = sb.call(plugin, tool, args).await.result.unwrap();
    assert!(!out.is_error, "{plugin}.{tool}: {}", out.joined_text());
    out.structured.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_binds_parameters_and_caps_rows_with_a_total() {
    let sb = shop("ro").await;
    let gb = structured(
        &sb,
        "db",
        "query",
        json!({ "sql": "SELECT id, name FROM customers WHERE country = ? AND id > ? ORDER BY id", "params": ["GB", 1] }),
    )
    .await;
    assert_eq!(
        gb,
        json!({
            "columns": ["id", "name"],
            "rows": [{ "id": 7, "name": "Sophie Wilson" }, { "id": 11, "name": "Mary Somerville" }],
            "truncated": false,
            "total": 2
        })
    );

    // 120 orders: the default cap is 50, the operator's DB_MAX_ROWS 10.
    for (plugin, cap) in [("db", 50), ("small", 10)] {
        let all = structured(
            &sb,
            plugin,
            "query",
            json!({ "sql": "SELECT * FROM orders ORDER BY id" }),
        )
        .await;
        assert_eq!(all["rows"].as_array().unwrap().len(), cap, "{plugin}");
        assert_eq!(all["truncated"], json!(true));
        assert_eq!(all["total"], json!(120));
        assert_eq!(all["rows"][0]["id"], json!(1));
    }
    // The text rendering says the same to a reader of text alone.
    let text = sb
        .ok(
            "small",
            "query",
            json!({ "sql": "SELECT id, status FROM orders ORDER BY id" }),
        )
        .await;
    assert!(text.starts_with("id | status\n1 | shipped\n"), "{text}");
    assert!(
        text.ends_with(
            "(10 of 120 rows; truncated: narrow the query, or page with LIMIT and OFFSET)"
        ),
        "{text}"
    );

    // Types survive: integers, reals, NULL, UTF-8 text, BLOBs; a repeated
    // column name is made unique.
    let values = structured(
        &sb,
        "db",
        "query",
        json!({ "sql": "SELECT 1 AS a, 2.5 AS a, NULL AS n, 'Châtelet' AS t, x'00ff' AS b" }),
    )
    .await;
    assert_eq!(
        values["rows"][0],
        json!({ "a": 1, "a_2": 2.5, "n": null, "t": "Châtelet", "b": { "base64": "AP8=" } })
    );

    // Parameters that are not scalars are refused by name.
    let message = sb
        .tool_error("db", "query", json!({ "sql": "SELECT ?", "params": [[1]] }))
        .await;
    assert!(
        message.contains("only null, booleans, numbers and strings"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_through_a_parameter_is_inert() {
    let sb = shop("rw").await;
    for attempt in [
        "x' OR '1'='1",
        "'; DROP TABLE customers; --",
        "Ada Lovelace' UNION SELECT sql FROM sqlite_schema --",
    ] {
        let found = structured(
            &sb,
            "db",
            "query",
            json!({ "sql": "SELECT name FROM customers WHERE name = ?", "params": [attempt] }),
        )
        .await;
        assert_eq!(found["total"], json!(0), "{attempt}");
        // Even through db.execute, with write access, the value stays a value.
        let changed = structured(
            &sb,
            "db",
            "execute",
            json!({ "sql": "UPDATE customers SET country = 'XX' WHERE name = ?", "params": [attempt] }),
        )
        .await;
        assert_eq!(changed["changes"], json!(0), "{attempt}");
    }
    let count = structured(
        &sb,
        "db",
        "query",
        json!({ "sql": "SELECT count(*) AS n FROM customers WHERE country <> 'XX'" }),
    )
    .await;
    assert_eq!(count["rows"][0]["n"], json!(12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_grant_refuses_every_write_and_the_file_stays_byte_identical() {
    let sb = shop("ro").await;
    let file = sb.path("data/shop.sqlite");
    let before = sha256(&file);
    let many = "SELECT 1;".repeat(5000);
    let writes = [
        "DROP TABLE order_items",
        "DELETE FROM orders",
        "UPDATE products SET price_cents = 0",
        "INSERT INTO customers (name, email, country, created_at) VALUES ('Eve', 'eve@example.org', 'XX', '2026-12-01')",
        "CREATE TABLE stolen (x)",
        "CREATE INDEX idx ON customers (name)",
        "ATTACH DATABASE '/etc/passwd' AS pw",
        "ATTACH DATABASE '/data/shop.sqlite' AS again",
        "ATTACH DATABASE '/data/new.sqlite' AS fresh",
        "VACUUM INTO '/data/copy.sqlite'",
        "VACUUM",
        "PRAGMA user_version = 7",
        "SELECT load_extension('/data/evil.so')",
        "SELECT 1; DROP TABLE orders",
        "DELETE FROM orders; SELECT 1",
        // Thousands of statements: refused, not a crash of the plugin.
        many.as_str(),
    ];
    // db.execute opens for writing and binds nothing extra: only the grant
    // stands between it and the file. db.query adds its own read-only open.
    for tool in ["execute", "query"] {
        for sql in writes {
            let out = sb
                .call("db", tool, json!({ "sql": sql }))
                .await
                .result
                .unwrap();
            assert!(out.is_error, "{tool} {sql}: {}", out.joined_text());
        }
    }
    // These are either refused or without effect (writable_schema by
    // SQLite's defensive mode); the file shows which.
    for tool in ["execute", "query"] {
        for sql in ["PRAGMA writable_schema = 1", "PRAGMA journal_mode = WAL"] {
            let _ = sb.call("db", tool, json!({ "sql": sql })).await;
        }
    }
    assert_eq!(sha256(&file), before, "the database changed");
    let names: Vec<String> = std::fs::read_dir(sb.path("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["shop.sqlite"], "no journal, lock or copy was made");
    // Still serving, and everything is still there.
    let tables = structured(
        &sb,
        "db",
        "query",
        json!({ "sql": "SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'" }),
    )
    .await;
    assert_eq!(tables["rows"][0]["n"], json!(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_writes_only_under_a_read_write_grant_and_query_never_does() {
    let sb = shop("rw").await;
    let inserted = structured(
        &sb,
        "db",
        "execute",
        json!({ "sql": "INSERT INTO products (sku, name, price_cents, stock) VALUES (?, ?, ?, ?)", "params": ["PN-01", "Pen", 250, 3] }),
    )
    .await;
    assert_eq!(inserted, json!({ "changes": 1, "last_insert_rowid": 9 }));
    let pen = structured(
        &sb,
        "db",
        "query",
        json!({ "sql": "SELECT name, stock FROM products WHERE sku = ?", "params": ["PN-01"] }),
    )
    .await;
    assert_eq!(pen["rows"], json!([{ "name": "Pen", "stock": 3 }]));

    // With write access to the file, db.query still cannot write, not even
    // after turning query_only off (each call opens afresh, read-only).
    for sql in [
        "DELETE FROM orders",
        "PRAGMA query_only = 0",
        "DELETE FROM orders",
    ] {
        let _ = sb.call("db", "query", json!({ "sql": sql })).await;
    }
    let orders = structured(
        &sb,
        "db",
        "query",
        json!({ "sql": "SELECT count(*) AS n FROM orders" }),
    )
    .await;
    assert_eq!(orders["rows"][0]["n"], json!(120));
    let message = sb
        .tool_error("db", "query", json!({ "sql": "DELETE FROM orders" }))
        .await;
    assert!(message.contains("readonly"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_query_ends_at_its_budget_and_the_next_call_works() {
    let sb = shop("ro").await;
    for sql in [
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        "SELECT count(*) FROM order_items a, order_items b, order_items c, order_items d",
    ] {
        let error = sb.fails("db", "query", json!({ "sql": sql })).await;
        assert!(
            matches!(
                error,
                CallError::OutOfFuel { .. } | CallError::TimedOut { .. }
            ),
            "{sql}: {error}"
        );
        let next = structured(
            &sb,
            "db",
            "query",
            json!({ "sql": "SELECT count(*) AS n FROM customers" }),
        )
        .await;
        assert_eq!(next["rows"][0]["n"], json!(12));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_wants_more_memory_than_granted_ends_and_the_next_call_works() {
    let sb = shop("ro").await;
    // 100 MB of text, under an 8 MiB grant.
    let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100) \
               SELECT length(group_concat(printf('%.*c', 1000000, 'x'))) AS n FROM c";
    match sb
        .call("tight", "query", json!({ "sql": sql }))
        .await
        .result
    {
        Err(CallError::MemoryLimit { .. }) => {}
        // SQLite turns a refused allocation into its own error.
        Ok(out) if out.is_error => assert!(
            out.joined_text().contains("out of memory"),
            "{}",
            out.joined_text()
        ),
        other => panic!("the query was not stopped: {other:?}"),
    }
    let next = structured(
        &sb,
        "tight",
        "query",
        json!({ "sql": "SELECT count(*) AS n FROM orders" }),
    )
    .await;
    assert_eq!(next["rows"][0]["n"], json!(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_the_cap_are_counted_not_kept_and_results_declare_their_schema() {
    let sb = shop("ro").await;
    // 300 000 rows of about 30 bytes: kept, they would not fit in 8 MiB.
    let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 300000) \
               SELECT x, 'row number ' || x AS label FROM c";
    let all = structured(&sb, "tight", "query", json!({ "sql": sql })).await;
    assert_eq!(all["total"], json!(300_000));
    assert_eq!(all["truncated"], json!(true));
    assert_eq!(all["rows"].as_array().unwrap().len(), 50);
    assert_eq!(
        all["rows"][49],
        json!({ "x": 50, "label": "row number 50" })
    );
    // Every tool declares the shape of its structured result.
    for tool in &sb.plugin("db").tools {
        let schema = tool
            .output_schema
            .as_ref()
            .unwrap_or_else(|| panic!("{}", tool.name));
        assert_eq!(schema["type"], json!("object"), "{}", tool.name);
    }
    let query = sb
        .plugin("db")
        .tools
        .iter()
        .find(|t| t.name == "query")
        .unwrap();
    let properties = query.output_schema.as_ref().unwrap()["properties"]
        .as_object()
        .unwrap();
    let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["columns", "rows", "total", "truncated"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_lists_tables_views_columns_and_indexes() {
    let sb = shop("ro").await;
    let schema = structured(&sb, "db", "schema", json!({})).await;
    let tables = schema["tables"].as_array().unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "customers",
            "order_items",
            "orders",
            "products",
            "revenue_by_country"
        ]
    );
    let orders = &tables[2];
    assert_eq!(orders["kind"], json!("table"));
    assert_eq!(
        orders["columns"][0],
        json!({ "name": "id", "type": "INTEGER", "not_null": false, "default": null, "primary_key": 1 })
    );
    let indexes: Vec<&Value> = orders["indexes"].as_array().unwrap().iter().collect();
    assert!(
        indexes.contains(&&json!({ "name": "orders_by_status_date", "unique": false, "columns": ["status", "placed_at"] })),
        "{indexes:?}"
    );
    assert_eq!(tables[4]["kind"], json!("view"));
    let text = sb.ok("db", "schema", json!({})).await;
    assert!(
        text.contains("table orders(id INTEGER, customer_id INTEGER, status TEXT, placed_at TEXT)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_granted_path_the_plugin_says_what_is_missing() {
    let sb = Sandbox::builder().plugin("db", "").build().await;
    let message = sb
        .tool_error("db", "query", json!({ "sql": "SELECT 1" }))
        .await;
    assert!(message.contains("DB_PATH is not granted"), "{message}");
}

#[test]
fn the_example_config_serves_the_shop_read_only() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/db.toml");
    let before = sha256(&example_db());
    let call = |tool: &str, sql: &str| {
        let out = std::process::Command::new(moat_tests::moat_bin())
            .args(["call", "--config"])
            .arg(&config)
            .args(["db", tool, &json!({ "sql": sql }).to_string()])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let revenue = call(
        "query",
        "SELECT country FROM revenue_by_country ORDER BY revenue_cents DESC",
    );
    assert_eq!(
        revenue["structuredContent"]["rows"][0]["country"],
        json!("US"),
        "{revenue}"
    );
    let dropped = call("execute", "DROP TABLE orders");
    assert_eq!(dropped["isError"], json!(true), "{dropped}");
    assert!(
        dropped["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("readonly"),
        "{dropped}"
    );
    assert_eq!(sha256(&example_db()), before);
}
