//! Resources, prompts and completions over MCP: lists filtered by the
//! caller's policy, and the plugin's answers as MCP results.

use super::{McpHandler, content};
use crate::auth::policy::Caller;
use crate::runtime::{CallError, CallReport};
use crate::tool::{Answer, ContentKind, ResourceBody, Role};
use base64::Engine as _;
use rmcp::ErrorData;
use rmcp::model::{
    CompleteResult, GetPromptResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ReadResourceResult, ServerCapabilities,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// Most resources one session may subscribe to.
const MAX_SUBSCRIPTIONS: usize = 256;

/// The resources a session subscribed to.
#[derive(Clone, Default)]
pub(super) struct Subscriptions(Arc<Mutex<HashSet<String>>>);

impl Subscriptions {
    pub(super) fn add(&self, uri: String) -> Result<(), ErrorData> {
        let mut set = self.0.lock().expect("subscriptions");
        if set.len() >= MAX_SUBSCRIPTIONS && !set.contains(&uri) {
            return Err(ErrorData::invalid_request(
                format!("a session may subscribe to at most {MAX_SUBSCRIPTIONS} resources"),
                None,
            ));
        }
        set.insert(uri);
        Ok(())
    }

    pub(super) fn remove(&self, uri: &str) {
        self.0.lock().expect("subscriptions").remove(uri);
    }
}

/// `value` with its null members left out (optional fields absent).
fn object(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// A list result built from JSON items (the rmcp types are built the
/// same way from the wire).
fn list<T: serde::de::DeserializeOwned>(key: &str, items: Vec<Value>) -> T {
    serde_json::from_value(json!({ key: items })).expect("list results deserialize")
}

impl McpHandler {
    /// What this endpoint serves: tools and logging always; resources,
    /// prompts and completions when a plugin offers them; subscriptions
    /// where there is a session to keep them.
    pub(super) fn capabilities(&self) -> ServerCapabilities {
        let mut caps = json!({ "tools": {}, "logging": {} });
        let has_resources =
            !self.service.resources().is_empty() || !self.service.templates().is_empty();
        if has_resources {
            caps["resources"] = json!({ "subscribe": self.server_requests });
        }
        if !self.service.prompts().is_empty() {
            caps["prompts"] = json!({});
        }
        if has_resources || !self.service.prompts().is_empty() {
            caps["completions"] = json!({});
        }
        serde_json::from_value(caps).expect("capabilities deserialize")
    }

    pub(super) fn resource_list(&self, caller: Option<&Caller>) -> ListResourcesResult {
        let items = self
            .service
            .resources()
            .iter()
            .filter(|r| self.service.allows_resource(caller, &r.info.uri, None))
            .map(|r| {
                let i = &r.info;
                object(json!({
                    "uri": i.uri, "name": i.name, "title": i.title,
                    "description": i.description, "mimeType": i.mime_type, "size": i.size,
                }))
            })
            .collect();
        list("resources", items)
    }

    pub(super) fn template_list(&self, caller: Option<&Caller>) -> ListResourceTemplatesResult {
        let items = self
            .service
            .templates()
            .iter()
            .filter(|t| self.service.allows_template(caller, &t.info.uri_template))
            .map(|t| {
                let i = &t.info;
                object(json!({
                    "uriTemplate": i.uri_template, "name": i.name, "title": i.title,
                    "description": i.description, "mimeType": i.mime_type,
                }))
            })
            .collect();
        list("resourceTemplates", items)
    }

    pub(super) fn prompt_list(&self, caller: Option<&Caller>) -> ListPromptsResult {
        let items = self
            .service
            .prompts()
            .iter()
            .filter(|p| self.service.allows_prompt(caller, &p.name))
            .map(|p| {
                let i = &p.info;
                let arguments: Vec<Value> = i
                    .arguments
                    .iter()
                    .map(|a| {
                        object(json!({
                            "name": a.name, "description": a.description, "required": a.required,
                        }))
                    })
                    .collect();
                object(json!({
                    "name": p.name, "title": i.title, "description": i.description,
                    "arguments": (!arguments.is_empty()).then_some(arguments),
                }))
            })
            .collect();
        list("prompts", items)
    }
}

/// Prompt arguments as strings: MCP sends a map of strings.
pub(super) fn prompt_arguments(
    arguments: Option<serde_json::Map<String, Value>>,
) -> Result<BTreeMap<String, String>, ErrorData> {
    arguments
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(ErrorData::invalid_params(
                format!("prompt argument `{k}` is not a string"),
                Some(json!({ "field": format!("/{k}") })),
            )),
        })
        .collect()
}

/// A plugin's failure as the JSON-RPC error of a request that is not a
/// tool call (there is no error result to carry it).
fn failure(error: CallError) -> ErrorData {
    let data = Some(json!({ "reason": error.kind() }));
    match &error {
        CallError::NotFound(_) => ErrorData::resource_not_found(error.to_string(), data),
        CallError::InvalidArguments(_) => ErrorData::invalid_params(error.to_string(), data),
        _ => ErrorData::internal_error(error.to_string(), data),
    }
}

fn answer(report: CallReport<Answer>) -> Result<Answer, ErrorData> {
    report.result.map_err(failure)
}

pub(super) fn read_result(report: CallReport<Answer>) -> Result<ReadResourceResult, ErrorData> {
    let Answer::Read(items) = answer(report)? else {
        unreachable!("a read answers with contents")
    };
    let contents: Vec<Value> = items
        .into_iter()
        .filter_map(|item| match item.kind {
            ContentKind::Resource {
                uri,
                mime_type,
                body,
            } => Some(match body {
                ResourceBody::Text(text) => {
                    object(json!({ "uri": uri, "mimeType": mime_type, "text": text }))
                }
                ResourceBody::Blob(bytes) => object(json!({
                    "uri": uri,
                    "mimeType": mime_type,
                    "blob": base64::engine::general_purpose::STANDARD.encode(bytes),
                })),
            }),
            _ => None,
        })
        .collect();
    Ok(serde_json::from_value(json!({ "contents": contents })).expect("contents deserialize"))
}

pub(super) fn prompt_result(report: CallReport<Answer>) -> Result<GetPromptResult, ErrorData> {
    let Answer::Prompt(prompt) = answer(report)? else {
        unreachable!("a prompt answers with messages")
    };
    let messages: Vec<Value> = prompt
        .messages
        .into_iter()
        .map(|(role, item)| {
            json!({
                "role": match role { Role::User => "user", Role::Assistant => "assistant" },
                "content": content::block(item),
            })
        })
        .collect();
    Ok(serde_json::from_value(object(json!({
        "description": prompt.description,
        "messages": messages,
    })))
    .expect("prompt results deserialize"))
}

pub(super) fn completion_result(report: CallReport<Answer>) -> Result<CompleteResult, ErrorData> {
    let Answer::Completion(c) = answer(report)? else {
        unreachable!("a completion answers with values")
    };
    Ok(serde_json::from_value(json!({
        "completion": object(json!({ "values": c.values, "total": c.total, "hasMore": c.has_more })),
    }))
    .expect("completion results deserialize"))
}
