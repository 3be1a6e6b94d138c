//! The baseline of the benchmarks: the example plugins' tools written
//! directly in an rmcp server, no sandbox. The `http` benchmark serves it
//! in its own process; the `native-mcp` binary serves it over stdio or
//! Streamable HTTP, for clients outside the process.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeResult,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::Serialize;
use serde_json::{Value, json};
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

/// `hello.greet` and `files.search`, natively.
#[derive(Clone)]
pub struct NativeTools {
    /// The folder `files.search` searches.
    pub corpus: Arc<PathBuf>,
}

#[derive(Serialize)]
struct Match {
    path: String,
    line: usize,
    text: String,
}

impl NativeTools {
    /// What the `files` plugin's search does, with std::fs.
    fn search(&self, query: &str) -> Value {
        let mut entries: Vec<_> = std::fs::read_dir(&*self.corpus)
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        let mut matches = Vec::new();
        for entry in entries {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let path = entry.file_name().to_string_lossy().into_owned();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| l.contains(query)) {
                matches.push(Match {
                    path: path.clone(),
                    line: i + 1,
                    text: line.to_string(),
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
        if request.name == "files.search" {
            let found = self.search(argument("query")?);
            let mut result = CallToolResult::success(vec![ContentBlock::text(found.to_string())]);
            result.structured_content = Some(found);
            return Ok(result.into());
        }
        let name = argument("name")?;
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("Hello, {name}!"))]).into())
    }
}
