//! Components that do not speak `moat:plugin` (plugins/typed: its own WIT
//! world, built with wit-bindgen alone): every exported function is a
//! tool, with an input schema exact to its WIT types, arguments checked
//! before the instance exists, and results lifted to JSON.

use moat_tests::client::{call_text, connect};
use moat_tests::languages::js_component;
use moat_tests::{MoatServer, moat_bin, plugin_wasm};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The world of plugins/typed built from Rust with wit-bindgen, or from
/// JavaScript with componentize-js (plugins/js/typed).
fn typed(language: &str) -> PathBuf {
    match language {
        "rust" => plugin_wasm("typed"),
        _ => js_component(Path::new(env!("CARGO_TARGET_TMPDIR")), "typed", "typed"),
    }
}

/// `moat call <wasm> <tool> <args>`: its exit code and its JSON.
fn call_in(wasm: &Path, tool: &str, arguments: Value) -> (i32, Value) {
    let out = Command::new(moat_bin())
        .args(["call"])
        .arg(wasm)
        .args([tool, &arguments.to_string()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), value)
}

fn refusal(wasm: &Path, tool: &str, arguments: Value) -> String {
    let (code, answer) = call_in(wasm, tool, arguments);
    assert_eq!(code, 2, "{answer}");
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    answer["error"]["message"].as_str().unwrap().to_string()
}

#[test]
fn every_wit_type_goes_in_and_out_as_its_schema_says_rust() {
    every_wit_type_goes_in_and_out_as_its_schema_says(&typed("rust"));
}

#[test]
fn every_wit_type_goes_in_and_out_as_its_schema_says_javascript() {
    every_wit_type_goes_in_and_out_as_its_schema_says(&typed("javascript"));
}

fn every_wit_type_goes_in_and_out_as_its_schema_says(wasm: &Path) {
    let call = |tool: &str, arguments: Value| call_in(wasm, tool, arguments);
    let (code, answer) = call("add", json!({ "a": 200, "b": 100 }));
    assert_eq!(code, 0, "{answer}");
    assert_eq!(answer["structuredContent"], json!({ "result": 300 }));

    let (code, answer) = call(
        "describe",
        json!({
            "p": { "x": 1, "y": -2 }, "c": "green", "f": ["read", "exec"],
            "s": { "rect": { "x": 3, "y": 4 } }, "tags": ["a", "b"], "note": null,
            "pair": [true, "é"], "big": -9007199254740993i64,
        }),
    );
    assert_eq!(code, 0, "{answer}");
    assert_eq!(
        answer["structuredContent"]["result"],
        "point 1,-2; green; read+exec; rect 3,4; tags a+b; note none; pair true é; big -9007199254740993"
    );
    let (_, answer) = call(
        "describe",
        json!({
            "p": { "x": 0, "y": 0 }, "c": "red", "f": [], "s": "empty", "tags": [],
            "note": "n", "pair": [false, "x"], "big": 0,
        }),
    );
    assert!(
        answer["structuredContent"]["result"]
            .as_str()
            .unwrap()
            .contains("; ; empty; tags ; note n")
    );

    // A record comes back as itself; bytes as numbers; an interface's
    // function under its interface's name.
    let (_, answer) = call(
        "middle",
        json!({ "a": { "x": 0, "y": 10 }, "b": { "x": 4, "y": 20 } }),
    );
    assert_eq!(answer["structuredContent"], json!({ "x": 2, "y": 15 }));
    let (_, answer) = call("reverse", json!({ "data": [1, 2, 255] }));
    assert_eq!(
        answer["structuredContent"],
        json!({ "result": [255, 2, 1] })
    );
    let (_, answer) = call("text.count", json!({ "s": "héllo" }));
    assert_eq!(answer["structuredContent"], json!({ "result": 5 }));

    // `result`: ok is the result, err an error result with its value.
    let (_, answer) = call("divide", json!({ "a": 1, "b": 4 }));
    assert_eq!(answer["structuredContent"], json!({ "result": 0.25 }));
    let (code, answer) = call("divide", json!({ "a": 1, "b": 0 }));
    assert_eq!(code, 1, "{answer}");
    assert_eq!(answer["isError"], true);
    assert_eq!(answer["content"][0]["text"], "cannot divide 1 by zero");
    assert!(answer.get("structuredContent").is_none(), "{answer}");

    // A result inside a value keeps its case; so does an option of an
    // option; a result is an argument too.
    let (_, answer) = call("parse", json!({ "items": ["7", "x"] }));
    assert_eq!(
        answer["structuredContent"]["result"],
        json!([{ "ok": 7 }, { "err": "\"x\": invalid digit found in string" }])
    );
    for (items, first) in [
        (json!([]), json!(null)),
        (json!([null, 1]), json!({ "some": null })),
        (json!([3]), json!({ "some": 3 })),
    ] {
        let (_, answer) = call("first", json!({ "items": items }));
        assert_eq!(answer["structuredContent"]["result"], first, "{items}");
    }
    for (r, said) in [
        (json!({ "ok": 4 }), "ok 4"),
        (json!({ "err": "no" }), "err no"),
    ] {
        let (_, answer) = call("settle", json!({ "r": r }));
        assert_eq!(answer["structuredContent"]["result"], said);
    }
}

#[test]
fn arguments_outside_the_wit_types_are_refused_naming_the_field_rust() {
    arguments_outside_the_wit_types_are_refused_naming_the_field(&typed("rust"));
}

#[test]
fn arguments_outside_the_wit_types_are_refused_naming_the_field_javascript() {
    arguments_outside_the_wit_types_are_refused_naming_the_field(&typed("javascript"));
}

fn arguments_outside_the_wit_types_are_refused_naming_the_field(wasm: &Path) {
    let refusal = |tool: &str, arguments: Value| refusal(wasm, tool, arguments);
    let cases = [
        ("add", json!({ "a": 256, "b": 1 }), "/a"),
        ("add", json!({ "a": -1, "b": 1 }), "/a"),
        ("add", json!({ "a": 1.5, "b": 1 }), "/a"),
        ("add", json!({ "a": 1 }), "\"b\" is a required property"),
        (
            "add",
            json!({ "a": 1, "b": 2, "c": 3 }),
            "Additional properties",
        ),
        ("reverse", json!({ "data": [1, 256] }), "/data/1"),
        ("settle", json!({ "r": { "ok": -1 } }), "/r"),
        ("settle", json!({ "r": { "maybe": 1 } }), "/r"),
        (
            "middle",
            json!({ "a": { "x": 1 }, "b": { "x": 1, "y": 2 } }),
            "/a",
        ),
    ];
    for (tool, arguments, names) in cases {
        let message = refusal(tool, arguments.clone());
        assert!(message.contains(names), "{tool} {arguments}: {message}");
    }
    let describe = |field: &str, value: Value| {
        let mut arguments = json!({
            "p": { "x": 0, "y": 0 }, "c": "red", "f": [], "s": "empty", "tags": [],
            "note": null, "pair": [false, "x"], "big": 0,
        });
        arguments[field] = value;
        refusal("describe", arguments)
    };
    assert!(describe("c", json!("purple")).contains("/c"));
    assert!(describe("s", json!({ "triangle": 3 })).contains("/s"));
    assert!(describe("s", json!({ "circle": "big" })).contains("/s"));
    assert!(describe("f", json!(["read", "read"])).contains("/f"));
    assert!(describe("f", json!(["fly"])).contains("/f/0"));
    assert!(describe("pair", json!([true, "ab"])).contains("/pair/1"));
    assert!(describe("pair", json!([true])).contains("/pair"));
    assert!(describe("big", json!(9223372036854775808u64)).contains("/big"));
    // After every refusal the component still answers.
    assert_eq!(
        call_in(wasm, "add", json!({ "a": 1, "b": 2 })).1["structuredContent"],
        json!({ "result": 3 })
    );
}

/// `moat serve` of plugins/typed as plugin `typed`.
fn serve_typed() -> (tempfile::TempDir, MoatServer) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "[runtime]\ncache_dir = \"cache\"\n[[plugin]]\nname = \"typed\"\nsource = {:?}\n",
            plugin_wasm("typed").display().to_string()
        ),
    )
    .unwrap();
    let server = MoatServer::start(dir.path(), &[]);
    (dir, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_served_generic_component_lists_its_functions_with_their_schemas() {
    let (_dir, server) = serve_typed();
    let client = connect(&server.url).await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "typed.add",
            "typed.describe",
            "typed.divide",
            "typed.fill",
            "typed.first",
            "typed.middle",
            "typed.parse",
            "typed.reverse",
            "typed.settle",
            "typed.text.count"
        ]
    );
    let add = &tools[0];
    assert_eq!(
        Value::Object((*add.input_schema).clone())["properties"]["a"],
        json!({ "type": "integer", "minimum": 0, "maximum": 255 })
    );
    let (is_error, text) = call_text(&client, "typed.text.count", json!({ "s": "abc" })).await;
    assert!(!is_error);
    assert_eq!(text, "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_renames_hides_and_describes_a_components_functions() {
    let dir = tempfile::tempdir().unwrap();
    let write = |tools: &str| {
        std::fs::write(
            dir.path().join("moat.toml"),
            format!(
                "[runtime]\ncache_dir = \"cache\"\n[[plugin]]\nname = \"typed\"\nsource = {:?}\n[plugin.tools]\n{tools}",
                plugin_wasm("typed").display().to_string()
            ),
        )
        .unwrap();
    };
    write(
        "describe = false\nreverse = false\nmiddle = false\nparse = false\nsettle = false\n\
         first = false\nfill = false\n\
         add = { name = \"plus\", description = \"Adds two bytes.\" }\n\"text.count\" = \"count\"\n",
    );
    let server = MoatServer::start(dir.path(), &[]);
    let client = connect(&server.url).await;
    let tools = client.list_all_tools().await.unwrap();
    let listed: Vec<(&str, &str)> = tools
        .iter()
        .map(|t| {
            (
                t.name.as_ref(),
                t.description.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("typed.count", "The component's function `text.count`."),
            ("typed.divide", "The component's function `divide`."),
            ("typed.plus", "Adds two bytes."),
        ]
    );
    let (is_error, text) = call_text(&client, "typed.plus", json!({ "a": 2, "b": 3 })).await;
    assert_eq!((is_error, text.as_str()), (false, "5"));
    // A hidden function cannot be called under any name.
    for name in ["typed.describe", "typed.reverse", "typed.add"] {
        let refused = client
            .call_tool(rmcp::model::CallToolRequestParams::new(name.to_string()))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!("unknown tool `{name}`")),
            "{refused}"
        );
    }
    drop(server);

    // A function the component does not have is a load error that lists them.
    write("fetch = \"get_url\"\n");
    let said = refused_by_check(dir.path());
    assert!(said.contains("[plugin.tools] names `fetch`"), "{said}");
    assert!(said.contains("text.count"), "{said}");
}

/// A result is lifted out of the guest's memory into host values before it
/// is JSON: a `list<u8>` of 48 MiB would be one host value per byte (over
/// 1.5 GiB). The lift is refused before the host allocates it, a result
/// that lifts but is too big as JSON is refused by the output cap, and the
/// server goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_result_too_big_to_lift_is_refused_before_the_host_holds_it() {
    let (_dir, server) = serve_typed();
    let client = connect(&server.url).await;
    let (is_error, text) = call_text(
        &client,
        "typed.fill",
        json!({ "byte": 7, "count": 48 << 20 }),
    )
    .await;
    assert!(is_error, "{text}");
    assert!(
        text.contains("host refused: the plugin handed the host more data at once than a call may"),
        "{text}"
    );
    let (is_error, text) = call_text(
        &client,
        "typed.fill",
        json!({ "byte": 7, "count": 600_000 }),
    )
    .await;
    assert!(is_error, "{text}");
    assert!(text.contains("output too large"), "{text}");
    let (is_error, text) = call_text(&client, "typed.fill", json!({ "byte": 7, "count": 3 })).await;
    assert_eq!((is_error, text.as_str()), (false, "[7,7,7]"));
}

/// A component written for another host imports that host's interfaces
/// (Wassette's examples import wasi:config): it is refused at load, naming
/// the import Moat does not serve.
#[test]
fn a_component_importing_what_moat_does_not_serve_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "[runtime]\ncache_dir = \"cache\"\n[[plugin]]\nname = \"unserved\"\nsource = {:?}\n",
            plugin_wasm("unserved").display().to_string()
        ),
    )
    .unwrap();
    let said = refused_by_check(dir.path());
    assert!(
        said.contains("plugin `unserved`: cannot be linked"),
        "{said}"
    );
    assert!(
        said.contains("not example:unserved/vault: build the component without it"),
        "{said}"
    );
}

/// plugins/typed's WIT, whose doc comments say what its functions do.
fn typed_wit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/typed/wit")
}

/// The tools `moat inspect` finds in `wasm`, by name, with their
/// descriptions, and what it said on stderr.
fn described(wasm: &Path, wit: Option<&Path>) -> (Vec<(String, String)>, String) {
    let mut command = Command::new(moat_bin());
    command.arg("inspect").arg(wasm).arg("--json");
    if let Some(wit) = wit {
        command.arg("--wit").arg(wit);
    }
    let out = command.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return (Vec::new(), said);
    }
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tools = json["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let text = |v: &Value| v.as_str().unwrap().to_string();
            (text(&t["name"]), text(&t["description"]))
        })
        .collect();
    (tools, said)
}

fn description<'a>(tools: &'a [(String, String)], name: &str) -> &'a str {
    let found = tools.iter().find(|(n, _)| n == name);
    found.map_or("", |(_, d)| d.as_str())
}

/// A component does not carry its WIT's doc comments (no toolchain keeps
/// them), so the plugin's `wit` gives them: folder, file or binary WIT
/// package. The operator's own description still wins, and a function the
/// WIT says nothing of keeps the plain one.
#[tokio::test(flavor = "multi_thread")]
async fn the_doc_comments_of_a_components_wit_describe_its_tools() {
    let dir = tempfile::tempdir().unwrap();
    // A WIT of the same world in which `middle` has no doc comment.
    let wit_file = dir.path().join("typed.wit");
    let text = std::fs::read_to_string(typed_wit().join("world.wit")).unwrap();
    let undocumented = text.replace("  /// The point halfway between two points.\n", "");
    assert_ne!(text, undocumented);
    std::fs::write(&wit_file, undocumented).unwrap();
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "[runtime]\ncache_dir = \"cache\"\n[[plugin]]\nname = \"typed\"\nsource = {:?}\n\
             wit = \"typed.wit\"\n[plugin.tools]\ndivide = {{ description = \"Divides, as the operator says.\" }}\n",
            plugin_wasm("typed").display().to_string()
        ),
    )
    .unwrap();
    let server = MoatServer::start(dir.path(), &[]);
    let client = connect(&server.url).await;
    let tools = client.list_all_tools().await.unwrap();
    let listed: Vec<(String, String)> = tools
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.description.as_deref().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(description(&listed, "typed.add"), "Adds two bytes.");
    assert_eq!(
        description(&listed, "typed.text.count"),
        "Counts the Unicode scalar values of `s`."
    );
    assert_eq!(
        description(&listed, "typed.divide"),
        "Divides, as the operator says."
    );
    assert_eq!(
        description(&listed, "typed.middle"),
        "The component's function `middle`."
    );
    let (is_error, text) = call_text(&client, "typed.add", json!({ "a": 2, "b": 3 })).await;
    assert_eq!((is_error, text.as_str()), (false, "5"));
    drop(server);

    // The folder, for the JavaScript build of the same world too.
    for wasm in [plugin_wasm("typed"), typed("javascript")] {
        let (tools, said) = described(&wasm, Some(&typed_wit()));
        assert_eq!(description(&tools, "add"), "Adds two bytes.", "{said}");
        assert_eq!(
            description(&tools, "middle"),
            "The point halfway between two points."
        );
    }

    // A binary WIT package (what `wasm-tools component wit --wasm` writes)
    // carries the doc comments in its package-docs section.
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_path(typed_wit()).unwrap();
    let binary = dir.path().join("typed-wit.wasm");
    std::fs::write(&binary, wit_component::encode(&resolve, package).unwrap()).unwrap();
    let (tools, said) = described(&plugin_wasm("typed"), Some(&binary));
    assert_eq!(
        description(&tools, "text.count"),
        "Counts the Unicode scalar values of `s`.",
        "{said}"
    );
}

/// A publisher may add a package-docs section to the component itself:
/// its doc comments describe the tools with no `wit` in the config.
#[test]
fn a_package_docs_section_of_the_component_describes_its_tools() {
    use wit_parser::decoding::DecodedWasm;
    use wit_parser::{PackageMetadata, Resolve, WorldItem};

    let bytes = std::fs::read(plugin_wasm("typed")).unwrap();
    let (tools, _) = described(&plugin_wasm("typed"), None);
    assert_eq!(
        description(&tools, "add"),
        "The component's function `add`."
    );

    // The component's own world as wit-parser reads it, with the doc
    // comments of the WIT it was built from.
    let Ok(DecodedWasm::Component(mut own, world)) = wit_parser::decoding::decode(&bytes) else {
        panic!("plugins/typed is a component");
    };
    let mut source = Resolve::default();
    let (package, _) = source.push_path(typed_wit()).unwrap();
    let typed = source.select_world(&[package], Some("typed")).unwrap();
    for (key, item) in own.worlds[world].exports.iter_mut() {
        if let WorldItem::Function(f) = item
            && let Some(WorldItem::Function(documented)) = source.worlds[typed]
                .exports
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, i)| i)
        {
            f.docs = documented.docs.clone();
        }
    }
    let root = own.worlds[world].package.unwrap();
    let section = PackageMetadata::extract(&own, root).encode().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let documented = dir.path().join("typed-documented.wasm");
    std::fs::write(
        &documented,
        with_custom_section(bytes, "package-docs", &section),
    )
    .unwrap();
    let (tools, said) = described(&documented, None);
    assert_eq!(description(&tools, "add"), "Adds two bytes.", "{said}");
    assert_eq!(
        description(&tools, "fill"),
        "`count` copies of `byte`.",
        "{said}"
    );

    // A section that is not package-docs leaves the plain descriptions, and
    // the component is still served.
    let broken = dir.path().join("typed-broken.wasm");
    let bytes = std::fs::read(plugin_wasm("typed")).unwrap();
    std::fs::write(
        &broken,
        with_custom_section(bytes, "package-docs", b"\x01{not json"),
    )
    .unwrap();
    let (tools, said) = described(&broken, None);
    assert_eq!(
        description(&tools, "add"),
        "The component's function `add`.",
        "{said}"
    );
    assert!(
        said.contains("package-docs section cannot be read"),
        "{said}"
    );
}

/// A WIT that cannot be read is a load error naming it; one that does not
/// exist, a config error; a WIT for a plugin that describes its own tools,
/// a load error saying so.
#[test]
fn a_wit_that_is_not_wit_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.wit"), "package oops;\nworld {").unwrap();
    std::fs::write(dir.path().join("good.wit"), "package a:b;\nworld w {}").unwrap();
    for (plugin, wit, expected) in [
        ("typed", "bad.wit", "its WIT `"),
        ("typed", "missing.wit", "wit `"),
        ("hello", "good.wit", "this plugin speaks moat:plugin"),
    ] {
        std::fs::write(
            dir.path().join("moat.toml"),
            format!(
                "[runtime]\ncache_dir = \"cache\"\n[[plugin]]\nname = \"typed\"\nsource = {:?}\nwit = {wit:?}\n",
                plugin_wasm(plugin).display().to_string()
            ),
        )
        .unwrap();
        let said = refused_by_check(dir.path());
        assert!(said.contains(expected) && said.contains(wit), "{said}");
    }
}

/// `bytes` (a component) with a custom section `name` of `data` added.
fn with_custom_section(mut bytes: Vec<u8>, name: &str, data: &[u8]) -> Vec<u8> {
    fn leb(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let mut body = Vec::new();
    leb(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    bytes.push(0);
    leb(&mut bytes, body.len());
    bytes.extend_from_slice(&body);
    bytes
}

/// What `moat check` of the config in `dir` said, asserting that it refused
/// it (exit code 2).
fn refused_by_check(dir: &Path) -> String {
    let out = Command::new(moat_bin())
        .args(["check", "-c"])
        .arg(dir.join("moat.toml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{said}");
    said
}
