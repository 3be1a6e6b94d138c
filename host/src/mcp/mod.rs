//! The MCP face of [`ToolService`]: one rmcp `ServerHandler`, shared by the
//! stdio and Streamable HTTP transports; [`confirm`] asks a person where
//! the policy wants one.

mod confirm;
mod connect;
mod content;
mod notify;
mod requests;
mod rounds;

use confirm::Unconfirmed;
use connect::Connecting;

use crate::auth::policy::Caller;
use crate::runtime::{CallError, CallReport};
use crate::service::{AdmittedCall, CallContext, Live, Refusal, SharedService};
use crate::tool::ToolOutput;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, MetaObject, PaginatedRequestParams, RequestId, ServerConfig,
    ServerJsonRpcMessage, ServerResult, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One version of an endpoint as MCP shows it: its service, and its tool
/// list built once (a reload builds the next version's).
pub struct Serving {
    /// The plugins and the one call path.
    pub service: SharedService,
    /// The MCP tool list.
    tools: Vec<Tool>,
    /// Index into `tools` by name (rmcp looks tools up on every request).
    by_name: HashMap<String, usize>,
    /// What its lists are, to tell which a reload changed.
    lists: Lists,
}

/// The lists a client can be told changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Tools,
    Prompts,
    Resources,
}

/// A digest of each list of one version.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Lists {
    tools: [u8; 32],
    prompts: Option<[u8; 32]>,
    resources: Option<[u8; 32]>,
}

impl Lists {
    fn of(service: &crate::service::ToolService, tools: &[Tool]) -> Lists {
        fn digest<T: serde::Serialize>(items: impl Iterator<Item = T>) -> [u8; 32] {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            for item in items {
                hasher.update(serde_json::to_vec(&item).expect("list items serialize"));
                hasher.update(b"\n");
            }
            hasher.finalize().into()
        }
        let prompts = service.prompts();
        let (resources, templates) = (service.resources(), service.templates());
        Lists {
            tools: digest(tools.iter()),
            prompts: (!prompts.is_empty())
                .then(|| digest(prompts.iter().map(|p| (&p.name, &p.info)))),
            resources: (!resources.is_empty() || !templates.is_empty()).then(|| {
                digest(
                    resources
                        .iter()
                        .map(|r| serde_json::to_value(&r.info))
                        .chain(templates.iter().map(|t| serde_json::to_value(&t.info)))
                        .map(|v| v.expect("list items serialize")),
                )
            }),
        }
    }

    /// The kinds a session was told of at its start.
    fn declared(&self) -> Vec<List> {
        let mut kinds = vec![List::Tools];
        if self.prompts.is_some() {
            kinds.push(List::Prompts);
        }
        if self.resources.is_some() {
            kinds.push(List::Resources);
        }
        kinds
    }

    /// The kinds that differ in `now`.
    fn changed(&self, now: &Lists) -> Vec<List> {
        [
            (self.tools != now.tools, List::Tools),
            (self.prompts != now.prompts, List::Prompts),
            (self.resources != now.resources, List::Resources),
        ]
        .into_iter()
        .filter_map(|(changed, kind)| changed.then_some(kind))
        .collect()
    }
}

/// `subscriptions/listen` streams an endpoint keeps open at once.
const MAX_LISTENERS: usize = 1024;

/// How long one change notice may wait for the client's stream.
const NOTICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether `send` went out (`Ok`, or `true`) within [`NOTICE_TIMEOUT`].
async fn timeout<T: Sent>(send: impl std::future::Future<Output = T>) -> bool {
    tokio::time::timeout(NOTICE_TIMEOUT, send)
        .await
        .is_ok_and(|sent| sent.sent())
}

/// What a send returns, as went out or not.
trait Sent {
    fn sent(&self) -> bool;
}

impl Sent for bool {
    fn sent(&self) -> bool {
        *self
    }
}

impl<E> Sent for Result<(), E> {
    fn sent(&self) -> bool {
        self.is_ok()
    }
}

impl Serving {
    /// `service` as MCP shows it.
    pub fn new(service: SharedService) -> Arc<Serving> {
        let tools: Vec<Tool> = service
            .tools()
            .iter()
            .map(|t| to_mcp_tool(&t.name, &t.info))
            .collect();
        let by_name = tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.to_string(), i))
            .collect();
        let lists = Lists::of(&service, &tools);
        Arc::new(Serving {
            service,
            tools,
            by_name,
            lists,
        })
    }
}

/// An endpoint that a reload can replace.
pub type LiveEndpoint = Live<Serving>;

/// Serves the tools of a [`ToolService`] over MCP. Cheap to clone: every
/// session of the HTTP transport gets a clone.
#[derive(Clone)]
pub struct McpHandler {
    /// The endpoint now: each request takes the version live when it
    /// starts.
    live: LiveEndpoint,
    /// Whether the transport can send the client requests of its own
    /// (stdio and HTTP sessions can; stateless HTTP cannot).
    server_requests: bool,
    /// The least level of plugin log records the client asked for with
    /// `logging/setLevel`, for this session alone.
    log_level: notify::SessionLevel,
    /// The resources this session subscribed to.
    subscriptions: requests::Subscriptions,
    /// Places for `subscriptions/listen` streams, shared by every session.
    listeners: Arc<tokio::sync::Semaphore>,
}

/// What running a call came to.
enum Ran {
    /// Its answer.
    Answered(Result<CallToolResponse, ErrorData>),
    /// One of its requests needed an account its caller has not connected
    /// (or whose credential the upstream refused), whose link this is.
    Needs(crate::capabilities::net::outbound::Need, String),
}

impl McpHandler {
    /// Runs an admitted `call` (which a person `confirmed`, if it needed
    /// that), relaying what its plugin asks the client; `state` and
    /// `responses` are the round trip's, if this is a retry.
    async fn run(
        &self,
        mut call: AdmittedCall,
        confirmed: bool,
        state: Option<String>,
        responses: Option<rmcp::model::InputResponses>,
        context: &RequestContext<RoleServer>,
    ) -> Ran {
        let relaying = match self.relaying(&call, confirmed, state, responses, context) {
            Ok(relaying) => relaying,
            Err(refusal) => {
                let service = call.service().clone();
                let refused = service.refuse_call(call, refusal).await;
                return Ran::Answered(answer(Err(refused)).map(Into::into));
            }
        };
        if let Some(relay) = relaying.relay.clone() {
            call.relay(relay);
        }
        let service = call.service().clone();
        let mut outcome = notify::run_telling(call, context, &self.log_level).await;
        if let Ok(report) = &mut outcome {
            self.subscriptions.updated(&report.changed);
            if let Some(pending) = report.pending.take() {
                return Ran::Answered(self.asking(&relaying, pending).map(Into::into));
            }
            if let Some(need) = report.needs.take()
                && let Some(link) = service.connect_link(&need.owner)
            {
                return Ran::Needs(need, link);
            }
        }
        Ran::Answered(answer(outcome).map(Into::into))
    }

    /// A handler over `live`, whose services enforce their policy.
    pub fn new(live: LiveEndpoint) -> Self {
        McpHandler {
            live,
            server_requests: true,
            log_level: notify::SessionLevel::default(),
            subscriptions: requests::Subscriptions::new(Arc::default()),
            listeners: Arc::new(tokio::sync::Semaphore::new(MAX_LISTENERS)),
        }
    }

    /// The service now, for one request.
    fn service(&self) -> SharedService {
        self.live.current().service.clone()
    }

    /// A handler for a new session: the same tools, its own log level.
    pub fn for_session(&self) -> Self {
        McpHandler {
            log_level: notify::SessionLevel::default(),
            subscriptions: requests::Subscriptions::new(self.subscriptions.all()),
            ..self.clone()
        }
    }

    /// The same handler for a transport that cannot send the client
    /// requests of its own (stateless HTTP): a confirmation is asked only
    /// with the round trips of protocol 2026-07-28.
    pub fn without_server_requests(mut self) -> Self {
        self.server_requests = false;
        self
    }

    /// The JSON-RPC answer to a stateless `tools/call` of a protocol
    /// before 2026-07-28 whose request carries nothing but the tool and
    /// its arguments (`id` and `admission` are its own), without rmcp's
    /// per-request service (a service, a peer, a task and channels for
    /// each request, most of a stateless call's cost outside the sandbox).
    /// It is the answer rmcp's dispatch to [`Self::call_tool`] gives: such
    /// a request has no progress token or log level to forward, no
    /// session to ask through and no client capabilities, so only a call
    /// that needs a person's confirmation, may ask the client, or may need
    /// its caller's account would be answered otherwise; those are handed
    /// back, for rmcp.
    pub async fn answer_directly(
        &self,
        id: RequestId,
        admission: Result<AdmittedCall, Refusal>,
    ) -> Result<ServerJsonRpcMessage, Result<AdmittedCall, Refusal>> {
        let outcome = match admission {
            Err(refusal) => Err(refusal),
            Ok(call)
                if call.needs_confirmation() || call.may_ask() || call.may_need_connection() =>
            {
                return Err(Ok(call));
            }
            Ok(call) => {
                let subscriptions = self.subscriptions.clone();
                // On a task of its own, as rmcp runs a handler: a client
                // that goes away does not cut the call short, it runs and
                // is audited whole.
                let ran = tokio::spawn(async move {
                    let service = call.service().clone();
                    let outcome = service.run(call).await;
                    if let Ok(report) = &outcome {
                        subscriptions.updated(&report.changed);
                    }
                    outcome
                });
                // A call whose task panicked was audited as abandoned when
                // it unwound.
                ran.await.unwrap_or(Err(Refusal::Abandoned))
            }
        };
        Ok(match answer(outcome) {
            Ok(result) => {
                let mut result = ServerResult::CallToolResult(result);
                // What rmcp's dispatch does to a result for a peer before
                // 2026-07-28.
                result.strip_result_type_for_legacy_peer();
                result.strip_non_object_output_for_legacy_peer();
                ServerJsonRpcMessage::response(result, id)
            }
            Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
        })
    }
}

/// The HTTP request's parts, over HTTP.
fn parts(context: &RequestContext<RoleServer>) -> Option<&http::request::Parts> {
    context.extensions.get::<http::request::Parts>()
}

/// The caller the HTTP layer authenticated and put in the request's
/// extensions; `None` over stdio and HTTP without `[auth]`.
fn caller(context: &RequestContext<RoleServer>) -> Option<&Caller> {
    parts(context).and_then(|parts| parts.extensions.get::<Caller>())
}

/// Who is calling, as the transport saw it.
fn call_context(context: &RequestContext<RoleServer>) -> CallContext<'_> {
    let http = parts(context);
    CallContext {
        caller: caller(context),
        peer: http
            .and_then(|p| {
                p.extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            })
            .map(|info| info.0),
        // No HTTP request behind it: the stdio transport's.
        local: http.is_none(),
    }
}

/// What the HTTP layer's admission of a request's `tools/call` decided,
/// put in the request's extensions so that the call runs from the
/// admitted values and is not admitted twice. Taken once.
#[derive(Clone)]
pub struct HttpAdmission(Arc<Mutex<Option<Result<AdmittedCall, Refusal>>>>);

impl HttpAdmission {
    /// Carries `admission` to the handler.
    pub fn new(admission: Result<AdmittedCall, Refusal>) -> Self {
        HttpAdmission(Arc::new(Mutex::new(Some(admission))))
    }

    fn take(&self) -> Option<Result<AdmittedCall, Refusal>> {
        self.0.lock().expect("admission").take()
    }
}

fn to_mcp_tool(name: &str, info: &crate::tool::ToolInfo) -> Tool {
    let mut tool = Tool::new(
        name.to_string(),
        info.description.clone(),
        Arc::new(info.input_schema.clone()),
    );
    if let Some(title) = &info.title {
        tool = tool.with_title(title.clone());
    }
    if let Some(schema) = &info.output_schema {
        tool = tool.with_raw_output_schema(Arc::new(schema.clone()));
    }
    let a = info.annotations;
    if a != Default::default() {
        let mut annotations = ToolAnnotations::new();
        if let Some(v) = a.read_only_hint {
            annotations = annotations.read_only(v);
        }
        if let Some(v) = a.destructive_hint {
            annotations = annotations.destructive(v);
        }
        if let Some(v) = a.idempotent_hint {
            annotations = annotations.idempotent(v);
        }
        if let Some(v) = a.open_world_hint {
            annotations = annotations.open_world(v);
        }
        tool = tool.with_annotations(annotations);
    }
    tool
}

impl ServerHandler for McpHandler {
    // Logging is deprecated for 2026-07-28 (SEP-2577); clients of
    // 2025-11-25 and before still ask for plugins' log records with it.
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(self.capabilities())
            .with_server_info(Implementation::new("moat", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools run in WebAssembly sandboxes that can reach only what the operator granted.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&context);
        let now = self.live.current();
        let visible = now
            .tools
            .iter()
            .filter(|t| now.service.allows(caller, &t.name))
            .cloned()
            .collect();
        Ok(ListToolsResult::with_all_items(visible))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        let now = self.live.current();
        now.by_name.get(name).map(|&i| now.tools[i].clone())
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let state = request.request_state.take();
        let mut responses = request.input_responses.take();
        // The answer to Moat's own question of an earlier round (connect
        // an account) is not the plugin's to see.
        let connect_answer = responses
            .as_mut()
            .and_then(|r| r.remove(connect::CONNECT_KEY));
        let responses = responses.filter(|r| !r.is_empty());
        // Over HTTP the transport admitted the call already (to answer 403
        // or 429 with their status); over stdio it is admitted here.
        let admitted = parts(&context)
            .and_then(|p| p.extensions.get::<HttpAdmission>())
            .and_then(HttpAdmission::take);
        let call = match admitted {
            Some(admitted) => admitted,
            None => {
                let arguments = request.arguments.unwrap_or_default();
                self.service()
                    .admit(&call_context(&context), &request.name, arguments)
                    .await
            }
        }
        .map_err(refusal_error)?;
        let confirmed = call.needs_confirmation();
        let (call, state, responses) = if confirmed {
            match self.confirm(call, state, responses, &context).await {
                Ok(call) => (call, None, None),
                Err(Unconfirmed::Asking(input)) => return Ok(input.into()),
                Err(Unconfirmed::Refused(refusal)) => return answer(Err(refusal)).map(Into::into),
            }
        } else {
            (call, state, responses)
        };
        // A call that may need its caller's account can run again once
        // they have connected it; not one a person confirmed (the
        // confirmation was for one run), nor one whose retry carried its
        // plugin's own round trip (the connect round would lose it).
        let again = match confirmed || state.is_some() {
            false => call.arguments_if_connecting(),
            true => None,
        };
        let service = call.service().clone();
        let tool = service.tool_name(&call).to_string();
        let began = crate::credentials::now();
        let (need, link) = match self.run(call, confirmed, state, responses, &context).await {
            Ran::Answered(answer) => return answer,
            Ran::Needs(need, link) => (need, link),
        };
        let needed = connect::Needed {
            tool: &tool,
            owner: &need.owner,
            link: &link,
            since: began,
        };
        // After the upstream refused a request the call's plugin sent, the
        // call did things: it is not run again, its caller gets the link.
        let may_wait = again.is_some() && !need.refused;
        match self
            .connecting(&service, needed, connect_answer, may_wait, &context)
            .await
        {
            Connecting::Answer(answer) => answer,
            Connecting::Connected => {
                let context_now = call_context(&context);
                // The caller's token may have run out while they connected.
                if context_now
                    .caller
                    .is_some_and(|c| c.expires_at < crate::credentials::now())
                {
                    return connect::link_answer(&needed, &context);
                }
                let arguments = again.unwrap_or_default();
                let call = self
                    .service()
                    .admit(&context_now, &tool, arguments)
                    .await
                    .map_err(refusal_error)?;
                match self.run(call, false, None, None, &context).await {
                    Ran::Answered(answer) => answer,
                    // Connected, then needed another (or lost it): the
                    // link, for the client to call again.
                    Ran::Needs(need, link) => {
                        let needed = connect::Needed {
                            tool: &tool,
                            owner: &need.owner,
                            link: &link,
                            since: began,
                        };
                        connect::link_answer(&needed, &context)
                    }
                }
            }
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        Ok(self.resource_list(caller(&context)))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        Ok(self.template_list(caller(&context)))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        let report = self
            .service()
            .read_resource(&call_context(&context), &request.uri)
            .await
            .map_err(refusal_error)?;
        requests::read_result(report).map(Into::into)
    }

    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if !self.server_requests {
            // Nothing could carry the notification: no session.
            return Err(ErrorData::invalid_request(
                "subscriptions need a session; this endpoint is stateless ([http] stateless = true)",
                None,
            ));
        }
        self.service()
            .subscribe(&call_context(&context), &request.uri)
            .await
            .map_err(refusal_error)?;
        self.subscriptions.add(request.uri, context.peer)
    }

    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions.remove(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        Ok(self.prompt_list(caller(&context)))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        let arguments = requests::prompt_arguments(request.arguments)?;
        let report = self
            .service()
            .get_prompt(&call_context(&context), &request.name, arguments)
            .await
            .map_err(refusal_error)?;
        requests::prompt_result(report).map(Into::into)
    }

    async fn complete(
        &self,
        request: rmcp::model::CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        let reference = match request.r#ref {
            rmcp::model::Reference::Prompt(p) => crate::service::Reference::Prompt(p.name),
            rmcp::model::Reference::Resource(r) => crate::service::Reference::Template(r.uri),
            _ => {
                return Err(ErrorData::invalid_params(
                    "completions are for prompts (ref/prompt) and resource templates (ref/resource)",
                    None,
                ));
            }
        };
        let chosen = request
            .context
            .and_then(|c| c.arguments)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let report = self
            .service()
            .complete(
                &call_context(&context),
                &reference,
                &request.argument.name,
                &request.argument.value,
                chosen,
            )
            .await
            .map_err(refusal_error)?;
        requests::completion_result(report)
    }

    /// A session begins: it hears of each reload that changes a list it
    /// was told of (tools always; prompts and resources when there were
    /// any at the start), until it ends.
    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        if !self.server_requests {
            return;
        }
        let mut changes = self.live.changes();
        let live = self.live.clone();
        let ended = self.subscriptions.ended();
        let peer = context.peer;
        let mut seen = live.current().lists;
        let declared = seen.declared();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = ended.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
                let now = live.current().lists;
                for kind in seen
                    .changed(&now)
                    .into_iter()
                    .filter(|k| declared.contains(k))
                {
                    let sent = match kind {
                        List::Tools => timeout(peer.notify_tool_list_changed()).await,
                        List::Prompts => timeout(peer.notify_prompt_list_changed()).await,
                        List::Resources => timeout(peer.notify_resource_list_changed()).await,
                    };
                    // A closed session, or one whose events nobody reads,
                    // ends the watch.
                    if !sent {
                        return;
                    }
                }
                seen = now;
            }
        });
    }

    /// `subscriptions/listen` (2026-07-28): the list changes a reload
    /// makes. Resource updates stay with `resources/subscribe`.
    fn accepted_subscription_filter(
        &self,
        requested: &rmcp::model::SubscriptionFilter,
    ) -> Option<rmcp::model::SubscriptionFilter> {
        let mut accepted = requested.clone();
        accepted.resource_subscriptions = None;
        Some(accepted)
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), ErrorData> {
        let Ok(_stream) = self.listeners.clone().try_acquire_owned() else {
            return Err(ErrorData::invalid_request(
                format!(
                    "this endpoint keeps at most {MAX_LISTENERS} subscriptions/listen streams open; close one"
                ),
                None,
            ));
        };
        let mut changes = self.live.changes();
        let accepted = context.accepted().clone();
        let sink = context.sink().clone();
        let mut seen = self.live.current().lists;
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                changed = changes.changed() => if changed.is_err() { return Ok(()) },
            }
            let now = self.live.current().lists;
            for kind in seen.changed(&now) {
                let (wanted, sent) = match kind {
                    List::Tools => (
                        accepted.tools_list_changed,
                        timeout(async { sink.notify_tool_list_changed().await.is_ok() }).await,
                    ),
                    List::Prompts => (
                        accepted.prompts_list_changed,
                        timeout(async { sink.notify_prompt_list_changed().await.is_ok() }).await,
                    ),
                    List::Resources => (
                        accepted.resources_list_changed,
                        timeout(async { sink.notify_resource_list_changed().await.is_ok() }).await,
                    ),
                };
                // A stream whose client is gone ends; a kind not accepted
                // was never sent.
                if wanted == Some(true) && !sent {
                    return Ok(());
                }
            }
            seen = now;
        }
    }

    #[allow(deprecated)] // Logging is what clients of 2025-11-25 and before use.
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.log_level.set(request.level);
        Ok(())
    }
}

/// The MCP answer to a call: its result, or the JSON-RPC error for a
/// refusal or for arguments the plugin itself refused. The one encoder of
/// results, for every transport and for `moat call`.
pub fn answer(outcome: Result<CallReport, Refusal>) -> Result<CallToolResult, ErrorData> {
    let report = match outcome {
        // The model reads why, and may ask the person differently.
        Err(refusal @ Refusal::NotConfirmed(_)) => {
            return Ok(error_result(refusal.kind(), &refusal.to_string()));
        }
        outcome => outcome.map_err(refusal_error)?,
    };
    match report.result {
        Ok(output) => Ok(to_mcp_result(output)),
        Err(e) => call_error_result(e),
    }
}

fn refusal_error(refusal: Refusal) -> ErrorData {
    let message = refusal.to_string();
    match refusal {
        Refusal::UnknownTool(name) => {
            ErrorData::invalid_params(message, Some(json!({ "tool": name })))
        }
        Refusal::UnknownResource(uri) => {
            ErrorData::resource_not_found(message, Some(json!({ "uri": uri })))
        }
        Refusal::UnknownPrompt(name) => {
            ErrorData::invalid_params(message, Some(json!({ "prompt": name })))
        }
        Refusal::NotAllowed(name) => {
            ErrorData::invalid_request(message, Some(json!({ "tool": name })))
        }
        Refusal::RateLimited(limited) => ErrorData::invalid_request(
            message,
            Some(
                json!({ "reason": "rate_limited", "retry_after_s": limited.retry_after.as_secs_f64().ceil() }),
            ),
        ),
        Refusal::LimitsUnavailable(limited) => ErrorData::internal_error(
            message,
            Some(
                json!({ "reason": "limits_unavailable", "retry_after_s": limited.retry_after.as_secs_f64().ceil() }),
            ),
        ),
        Refusal::AuditUnavailable(_) => {
            ErrorData::internal_error(message, Some(json!({ "reason": "audit_unavailable" })))
        }
        Refusal::Abandoned => ErrorData::internal_error(message, None),
        Refusal::NotConfirmed(_) => {
            ErrorData::invalid_request(message, Some(json!({ "reason": "not_confirmed" })))
        }
        Refusal::InvalidArguments { tool, field, .. } => {
            ErrorData::invalid_params(message, Some(json!({ "tool": tool, "field": field })))
        }
    }
}

/// A call that ran but did not produce a result is an error result the
/// model can read, with a stable reason; argument problems the plugin found
/// itself are protocol errors, like those found by the schema.
fn call_error_result(error: CallError) -> Result<CallToolResult, ErrorData> {
    match &error {
        CallError::UnknownTool(_) | CallError::InvalidArguments(_) => Err(
            ErrorData::invalid_params(error.to_string(), Some(json!({ "reason": error.kind() }))),
        ),
        _ => Ok(error_result(error.kind(), &error.to_string())),
    }
}

/// An error result the model can read: `<kind>: <message>`, and both in
/// `_meta["moat/error"]` for programs.
fn error_result(kind: &str, message: &str) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("{kind}: {message}"))]);
    let mut meta = serde_json::Map::new();
    meta.insert(
        "moat/error".into(),
        json!({ "kind": kind, "message": message }),
    );
    result.meta = Some(MetaObject(meta));
    result
}

/// One content item as the JSON MCP carries (for the output cap's test).
#[cfg(test)]
pub(crate) fn content_json(item: crate::tool::Content) -> serde_json::Value {
    serde_json::to_value(content::block(item)).expect("content serializes")
}

fn to_mcp_result(output: ToolOutput) -> CallToolResult {
    let content = output.content.into_iter().map(content::block).collect();
    let mut result = if output.is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    result.structured_content = output.structured;
    result
}
