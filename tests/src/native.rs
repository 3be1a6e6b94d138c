//! The baseline of the benchmarks: the example plugins' tools written
//! directly in an rmcp server, no sandbox, doing the same work the same
//! way (std::fs and serde_json for the files; a keep-alive reqwest client
//! for fetches). The `http` benchmark serves it
//! in its own process; the `native-mcp` binary serves it over stdio or
//! Streamable HTTP, for clients outside the process.

use memchr::memmem::Finder;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::Serialize;
use serde_json::{Value, json};
use std::io::Read;

/// The `files` plugin's line search, compiled here from its source.
#[path = "../../plugins/files/src/lines.rs"]
mod lines;
use lines::matching_lines;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes the folder `files.search` searches.
pub fn write_corpus(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for file in 0..20 {
        let text: String = (0..100)
            .map(|line| match line {
                50 => format!("the needle in file {file}\n"),
                _ => format!("line {line} of file {file}: nothing to see here, only hay\n"),
            })
            .collect();
        std::fs::write(dir.join(format!("f{file:02}.txt")), text).unwrap();
    }
}

/// Writes `records.json` into `dir`: 1 MB, an array of 5 000 objects,
/// 500 of them with `"team": "team 3"`; what `data.select` parses.
pub fn write_records(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let records: Vec<Value> = (0..5000)
        .map(|i| {
            json!({ "id": i, "name": format!("user {i}"), "team": format!("team {}", i % 10),
                    "score": i * 7 % 1000, "active": i % 3 == 0, "tags": ["alpha", "beta", format!("t{}", i % 50)],
                    "bio": format!("User {i} writes tools, reviews plugins and keeps the sandbox honest; {i:x}") })
        })
        .collect();
    std::fs::write(
        dir.join("records.json"),
        serde_json::to_vec(&records).unwrap(),
    )
    .unwrap();
}

/// `hello.greet`, `files.search`, `data.select` and `fetch.get`,
/// natively.
#[derive(Clone)]
pub struct NativeTools {
    /// The folder `files.search` searches.
    pub corpus: Arc<PathBuf>,
    /// The folder `data.select` reads from.
    pub data: Arc<PathBuf>,
    /// `fetch.get`'s client, its connections kept alive as a native
    /// server's would be.
    pub client: reqwest::Client,
}

/// What the `files` plugin's `select` returns.
#[derive(Serialize)]
struct Selection {
    count: usize,
    items: Vec<Value>,
}

#[derive(Serialize)]
struct Match {
    path: String,
    line: usize,
    text: String,
}

impl NativeTools {
    /// The tools over `corpus` (searched) and `data` (selected from).
    pub fn new(corpus: &Path, data: &Path) -> NativeTools {
        // reqwest is built without a TLS provider of its own (rustls with
        // ring is the workspace's): a process that has installed none yet,
        // such as `native-mcp`, could not make its client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        NativeTools {
            corpus: Arc::new(corpus.to_path_buf()),
            data: Arc::new(data.to_path_buf()),
            client: reqwest::Client::new(),
        }
    }

    /// What the `files` plugin's select does, with std::fs.
    fn select(&self, path: &str, field: &str, equals: &Value) -> Result<Value, String> {
        let bytes = std::fs::read(self.data.join(path)).map_err(|e| e.to_string())?;
        let items: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let mut selection = Selection {
            count: 0,
            items: Vec::new(),
        };
        for item in items {
            if item.get(field) == Some(equals) {
                selection.count += 1;
                if selection.items.len() < 20 {
                    selection.items.push(item);
                }
            }
        }
        Ok(serde_json::to_value(selection).unwrap())
    }

    /// What the `fetch` plugin does with a text answer.
    async fn fetch(&self, url: &str) -> Result<String, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{url} answered HTTP {status}: {text}"));
        }
        Ok(text)
    }

    /// What the `files` plugin's search does, with std::fs.
    /// What the `files` plugin's search does, the same way (one searcher,
    /// one buffer, no size hint), with std::fs.
    fn search(&self, query: &str) -> Value {
        let query = Finder::new(query.as_bytes());
        let mut entries: Vec<_> = std::fs::read_dir(&*self.corpus)
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        let mut matches = Vec::new();
        let mut bytes = Vec::new();
        for entry in entries {
            bytes.clear();
            let read = std::fs::File::open(entry.path())
                .and_then(|mut file| file.by_ref().take(u64::MAX).read_to_end(&mut bytes));
            let (Ok(_), Ok(text)) = (read, std::str::from_utf8(&bytes)) else {
                continue;
            };
            let path = entry.file_name().to_string_lossy().into_owned();
            for (line, text) in matching_lines(text, &query) {
                matches.push(Match {
                    path: path.clone(),
                    line,
                    text: text.to_string(),
                });
            }
        }
        json!({ "matches": matches, "truncated": false })
    }
}

impl ServerHandler for NativeTools {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = |property: &str| {
            let schema = json!({ "type": "object", "properties": { property: { "type": "string" } }, "required": [property] });
            Arc::new(schema.as_object().unwrap().clone())
        };
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new("hello.greet", "Greets someone by name.", schema("name")),
            Tool::new(
                "files.search",
                "Finds lines containing a text.",
                schema("query"),
            ),
            Tool::new(
                "data.select",
                "Selects the objects of a JSON array file whose `field` equals a value.",
                schema("path"),
            ),
            Tool::new("fetch.get", "Fetches a URL.", schema("url")),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let argument = |key: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|a| a.get(key))
                .and_then(|n| n.as_str())
                .ok_or_else(|| ErrorData::invalid_params(format!("{key} is required"), None))
        };
        let structured = |found: Value| {
            let mut result = CallToolResult::success(vec![ContentBlock::text(found.to_string())]);
            result.structured_content = Some(found);
            Ok(result.into())
        };
        match request.name.as_ref() {
            "files.search" => return structured(self.search(argument("query")?)),
            "data.select" => {
                let equals = request
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get("equals"))
                    .unwrap_or(&Value::Null);
                return match self.select(argument("path")?, argument("field")?, equals) {
                    Ok(found) => structured(found),
                    Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(e)]).into()),
                };
            }
            "fetch.get" => {
                let text = self.fetch(argument("url")?).await;
                return Ok(match text {
                    Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
                    Err(e) => CallToolResult::error(vec![ContentBlock::text(e)]),
                }
                .into());
            }
            _ => {}
        }
        let name = argument("name")?;
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("Hello, {name}!"))]).into())
    }
}
