//! Resources, prompts and completions over MCP: lists filtered by the
//! caller's policy, and the plugin's answers as MCP results.

use super::{McpHandler, content};
use crate::auth::policy::Caller;
use crate::runtime::{CallError, CallReport};
use crate::tool::{Answer, ContentKind, ResourceBody, Role};
use base64::Engine as _;
use rmcp::ErrorData;
use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::model::{
    CompleteResult, GetPromptResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ReadResourceResult, ServerCapabilities,
};
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most resources one session may subscribe to.
const MAX_SUBSCRIPTIONS: usize = 256;

/// Most subscriptions an endpoint keeps, all sessions together.
const MAX_ALL_SUBSCRIPTIONS: usize = 100_000;

/// Notifications on their way at once, all sessions together; past it
/// new ones are dropped (a client that does not read its stream must not
/// make the host pile up tasks).
const MAX_SENDING: usize = 1_024;

/// How long one notification may wait for its session's stream.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A session that subscribed: its number, and how to reach it.
type Subscriber = (u64, Peer<RoleServer>);

/// Who subscribed to which resource, at one endpoint: the sessions to
/// tell when a plugin says a resource changed.
pub(super) struct Subscribers {
    by_uri: Mutex<(HashMap<String, Vec<Subscriber>>, usize)>,
    next_session: AtomicU64,
    sending: Arc<tokio::sync::Semaphore>,
}

impl Default for Subscribers {
    fn default() -> Self {
        Subscribers {
            by_uri: Mutex::default(),
            next_session: AtomicU64::new(0),
            sending: Arc::new(tokio::sync::Semaphore::new(MAX_SENDING)),
        }
    }
}

impl Subscribers {
    /// Tells the sessions subscribed to each of `uris`.
    fn updated(&self, uris: &[String]) {
        let by_uri = self.by_uri.lock().expect("subscribers");
        for uri in uris {
            for (_, peer) in by_uri.0.get(uri).into_iter().flatten() {
                let Ok(permit) = self.sending.clone().try_acquire_owned() else {
                    tracing::debug!("a resource notification was dropped: too many on their way");
                    return;
                };
                let (peer, uri) = (peer.clone(), uri.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    // A slow or gone client is not the call's concern.
                    let notify =
                        peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri));
                    let _ = tokio::time::timeout(SEND_TIMEOUT, notify).await;
                });
            }
        }
    }

    /// Forgets `session`'s subscriptions to `uris`.
    fn forget<'a>(&self, session: u64, uris: impl Iterator<Item = &'a String>) {
        let mut guard = self.by_uri.lock().expect("subscribers");
        let (by_uri, count) = &mut *guard;
        for uri in uris {
            if let Some(peers) = by_uri.get_mut(uri) {
                let before = peers.len();
                peers.retain(|(s, _)| *s != session);
                *count -= before - peers.len();
                if peers.is_empty() {
                    by_uri.remove(uri);
                }
            }
        }
    }
}

/// One session's subscriptions; forgotten when the session ends (its last
/// handler drops).
struct Session {
    id: u64,
    uris: Mutex<HashSet<String>>,
    all: Arc<Subscribers>,
    /// Cancelled when the session ends: what watches for it stops.
    ended: tokio_util::sync::CancellationToken,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ended.cancel();
        let uris = std::mem::take(&mut *self.uris.lock().expect("subscriptions"));
        self.all.forget(self.id, uris.iter());
    }
}

/// The resources one session subscribed to.
#[derive(Clone)]
pub(super) struct Subscriptions(Arc<Session>);

impl Subscriptions {
    /// A new session's, among `all`.
    pub(super) fn new(all: Arc<Subscribers>) -> Self {
        Subscriptions(Arc::new(Session {
            id: all.next_session.fetch_add(1, Ordering::Relaxed),
            uris: Mutex::default(),
            all,
            ended: tokio_util::sync::CancellationToken::new(),
        }))
    }

    /// Cancelled when the session ends.
    pub(super) fn ended(&self) -> tokio_util::sync::CancellationToken {
        self.0.ended.clone()
    }

    /// Every session's subscriptions at this endpoint.
    pub(super) fn all(&self) -> Arc<Subscribers> {
        self.0.all.clone()
    }

    /// Tells the sessions subscribed to each of `uris`.
    pub(super) fn updated(&self, uris: &[String]) {
        if !uris.is_empty() {
            self.0.all.updated(uris);
        }
    }

    pub(super) fn add(&self, uri: String, peer: Peer<RoleServer>) -> Result<(), ErrorData> {
        let mut uris = self.0.uris.lock().expect("subscriptions");
        if uris.contains(&uri) {
            return Ok(());
        }
        let mut guard = self.0.all.by_uri.lock().expect("subscribers");
        let (by_uri, count) = &mut *guard;
        if uris.len() >= MAX_SUBSCRIPTIONS || *count >= MAX_ALL_SUBSCRIPTIONS {
            return Err(ErrorData::invalid_request(
                format!(
                    "a session may subscribe to at most {MAX_SUBSCRIPTIONS} resources \
                     (and this endpoint keeps at most {MAX_ALL_SUBSCRIPTIONS})"
                ),
                None,
            ));
        }
        by_uri
            .entry(uri.clone())
            .or_default()
            .push((self.0.id, peer));
        *count += 1;
        uris.insert(uri);
        Ok(())
    }

    pub(super) fn remove(&self, uri: &str) {
        if self.0.uris.lock().expect("subscriptions").remove(uri) {
            self.0
                .all
                .forget(self.0.id, std::iter::once(&uri.to_string()));
        }
    }
}

/// `value` with its null members left out (optional fields absent).
fn object(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// A result built from its JSON (as rmcp builds it from the wire), marked
/// complete: 2026-07-28 requires `resultType`, and rmcp leaves it out for
/// older protocols.
fn result<T: serde::de::DeserializeOwned>(mut value: Value) -> T {
    value["resultType"] = json!("complete");
    serde_json::from_value(value).expect("results deserialize")
}

/// A list result of `items` under `key`.
fn list<T: serde::de::DeserializeOwned>(key: &str, items: Vec<Value>) -> T {
    result(json!({ key: items }))
}

impl McpHandler {
    /// What this endpoint serves: tools and logging always; resources,
    /// prompts and completions when a plugin offers them; subscriptions
    /// where there is a session to keep them.
    pub(super) fn capabilities(&self) -> ServerCapabilities {
        // A reload can change every list; only a session (or a 2026-07-28
        // listen stream, which needs one here) can carry the news.
        let changes = self.server_requests;
        let mut caps = json!({ "tools": { "listChanged": changes }, "logging": {} });
        let service = self.service();
        let has_resources = !service.resources().is_empty() || !service.templates().is_empty();
        if has_resources {
            caps["resources"] =
                json!({ "subscribe": self.server_requests, "listChanged": changes });
        }
        if !service.prompts().is_empty() {
            caps["prompts"] = json!({ "listChanged": changes });
        }
        if has_resources || !service.prompts().is_empty() {
            caps["completions"] = json!({});
        }
        serde_json::from_value(caps).expect("capabilities deserialize")
    }

    pub(super) fn resource_list(&self, caller: Option<&Caller>) -> ListResourcesResult {
        let service = self.service();
        let items = service
            .resources()
            .iter()
            .filter(|r| service.allows_resource(caller, &r.info.uri, None))
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
        let service = self.service();
        let items = service
            .templates()
            .iter()
            .filter(|t| service.allows_template(caller, &t.info.uri_template))
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
        let service = self.service();
        let items = service
            .prompts()
            .iter()
            .filter(|p| service.allows_prompt(caller, &p.name))
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
    Ok(result(json!({ "contents": contents })))
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
    Ok(result(object(json!({
        "description": prompt.description,
        "messages": messages,
    }))))
}

pub(super) fn completion_result(report: CallReport<Answer>) -> Result<CompleteResult, ErrorData> {
    let Answer::Completion(c) = answer(report)? else {
        unreachable!("a completion answers with values")
    };
    Ok(result(json!({
        "completion": object(json!({ "values": c.values, "total": c.total, "hasMore": c.has_more })),
    })))
}
