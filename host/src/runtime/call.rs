//! Running one call: a fresh store and instance on a thread that fits the
//! plugin's grants, with its budgets enforced; [`super::outcome`] names how
//! it ended.

use super::bindings::Pre;
use super::bindings::exports::moat::plugin::tools as wit;
use super::bindings::moat::plugin::types as wt;
use super::bindings::moat::plugin::types::CallResult;
use super::capture::Capture;
use super::error::CallError;
use super::outcome::{classify, convert, log_captured};
use super::state::CallState;
use super::{Plugin, Runtime};
use crate::capabilities::Grants;
use crate::capabilities::identity::Scope;
use crate::tool::{Answer, Completion, PromptOutput, Role, ToolOutput};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;

/// What a call cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Wall-clock time from admission to result.
    pub duration: Duration,
    /// Fuel consumed (0 for a plugin with `fuel = false`).
    pub fuel_used: u64,
    /// Highest total linear memory of the instance, in bytes.
    pub peak_memory_bytes: usize,
    /// Bytes of content returned (0 when the call failed).
    pub output_bytes: usize,
}

/// The outcome of a call (or of another request a plugin answers) and
/// what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport<T = ToolOutput> {
    /// The plugin's answer, or why there is none.
    pub result: Result<T, CallError>,
    /// Resources used.
    pub stats: CallStats,
    /// Capabilities the call asked for and was refused.
    pub denied: Vec<String>,
    /// What the call asked the client (sampling, elicitation), one line
    /// per request.
    pub asked: Vec<String>,
    /// The request to the client the call ended on (2026-07-28), to be
    /// answered in the client's retry.
    pub pending: Option<super::client::Pending>,
    /// Resource URIs the plugin said changed.
    pub changed: Vec<String>,
    /// The caller's connection a request of the call needed and they have
    /// not set up: the client is asked to have them connect it.
    pub needs: Option<crate::capabilities::net::outbound::Need>,
}

/// A request to a plugin other than a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `resources/read` of `uri`.
    Read { uri: String },
    /// `prompts/get` of the plugin's prompt `name`.
    Prompt {
        name: String,
        arguments: Vec<(String, String)>,
    },
    /// `completion/complete` of `argument` of a prompt or template.
    Complete {
        target: Completing,
        argument: String,
        value: String,
        context: Vec<(String, String)>,
    },
}

/// What a completion is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completing {
    /// The plugin's prompt of this name.
    Prompt(String),
    /// The plugin's resource template with this URI template.
    Template(String),
}

/// Which export to run.
pub(super) enum Entry {
    Describe,
    Call { tool: String, arguments: String },
    Other(Request),
}

/// Everything a plugin says about itself at load.
pub(super) struct Described {
    pub tools: Vec<wit::Tool>,
    pub resources: Vec<wt::ResourceLink>,
    pub templates: Vec<wt::ResourceTemplate>,
    pub prompts: Vec<wt::Prompt>,
}

/// What the export returned.
pub(super) enum Returned {
    Described(Described),
    Call(Result<CallResult, wit::CallError>),
    Read(Result<Vec<wt::EmbeddedResource>, wt::ReadError>),
    Prompt(Result<wt::PromptResult, wt::PromptError>),
    Completion(wt::Completion),
}

/// One run of a plugin export, owning its inputs so that it can move to a
/// thread of its own.
pub(super) struct Job {
    pub pre: Pre,
    /// The engine `pre` was compiled for.
    pub engine: Engine,
    pub label: Arc<str>,
    pub grants: Arc<Grants>,
    /// What the grants know of the caller.
    pub scope: Scope,
    pub entry: Entry,
    /// Where progress and client-bound log records go, if anywhere.
    pub events: Option<super::events::Listener>,
    /// How the call asks its client, where the transport can.
    pub relay: Option<super::client::Relay>,
}

impl Job {
    /// A run of `entry` of `plugin` under its grants, for the caller
    /// `scope` describes, telling and asking the client nothing.
    fn new(plugin: &Plugin, scope: Scope, entry: Entry) -> Job {
        Job {
            pre: plugin.pre.clone(),
            engine: plugin.engine.clone(),
            label: plugin.label.clone(),
            grants: plugin.grants.clone(),
            scope,
            entry,
            events: None,
            relay: None,
        }
    }
}

impl<T> CallReport<T> {
    /// The report of a run that started at `start`.
    fn new(
        result: Result<T, CallError>,
        mut stats: CallStats,
        traces: Traces,
        start: Instant,
    ) -> Self {
        stats.duration = start.elapsed();
        CallReport {
            result,
            stats,
            denied: traces.denied,
            asked: traces.asked,
            pending: traces.pending,
            changed: traces.changed,
            needs: traces.needs,
        }
    }
}

/// What a run was refused, asked the client and said it changed.
#[derive(Default)]
pub(super) struct Traces {
    denied: Vec<String>,
    asked: Vec<String>,
    pending: Option<super::client::Pending>,
    changed: Vec<String>,
    needs: Option<crate::capabilities::net::outbound::Need>,
}

/// How a run ended, what it cost, and what it was refused or asked.
type Ran = (Result<Returned, CallError>, CallStats, Traces);

/// A run that ended with `error` before it cost anything.
fn failed(error: CallError) -> Ran {
    (Err(error), CallStats::default(), Traces::default())
}

/// How long past its deadline a call on its own thread may take to report
/// before the caller is answered without it: the guest's own deadline
/// checks end it well within this unless a file operation holds the thread.
const BLOCKED_GRACE: Duration = Duration::from_millis(250);

impl Runtime {
    /// Runs `tool` of `plugin` with `arguments` (a JSON object, serialized)
    /// in a fresh instance under the plugin's grants.
    pub async fn call(&self, plugin: &Plugin, tool: &str, arguments: &str) -> CallReport {
        self.call_for(
            plugin,
            tool,
            arguments.to_string(),
            Scope::default(),
            None,
            None,
        )
        .await
    }

    /// [`Self::call`] for the caller `scope` describes (what of them the
    /// plugin's grants use), its progress and log records sent to
    /// `events` for the client, and its requests to the client (where
    /// granted) sent through `relay`.
    pub async fn call_for(
        &self,
        plugin: &Plugin,
        tool: &str,
        arguments: String,
        scope: Scope,
        events: Option<super::events::Listener>,
        relay: Option<super::client::Relay>,
    ) -> CallReport {
        let start = Instant::now();
        if !plugin.tools.iter().any(|t| t.name == tool) {
            return CallReport {
                result: Err(CallError::UnknownTool(tool.to_string())),
                stats: CallStats::default(),
                denied: Vec::new(),
                asked: Vec::new(),
                pending: None,
                changed: Vec::new(),
                needs: None,
            };
        }
        let limits = plugin.grants.limits;
        let entry = Entry::Call {
            tool: tool.to_string(),
            arguments,
        };
        let (returned, mut stats, traces) = self
            .run(Job {
                events,
                relay,
                ..Job::new(plugin, scope, entry)
            })
            .await;
        let result = returned.and_then(|r| match r {
            Returned::Call(Ok(result)) => convert(result, &limits).map(|(output, size)| {
                stats.output_bytes = size;
                output
            }),
            Returned::Call(Err(e)) => Err(match e {
                wit::CallError::UnknownTool(t) => CallError::UnknownTool(t),
                wit::CallError::InvalidArguments(m) => CallError::InvalidArguments(m),
                wit::CallError::Failed(m) => CallError::Tool(m),
            }),
            _ => unreachable!("a call entry returns a call result"),
        });
        CallReport::new(result, stats, traces, start)
    }

    /// Runs `request` of `plugin` in a fresh instance under the plugin's
    /// grants and budgets, like a tool call.
    pub async fn serve(
        &self,
        plugin: &Plugin,
        request: Request,
        scope: Scope,
    ) -> CallReport<Answer> {
        let start = Instant::now();
        let limits = plugin.grants.limits;
        let (returned, mut stats, traces) = self
            .run(Job::new(plugin, scope, Entry::Other(request)))
            .await;
        let result = returned.and_then(|r| {
            let (answer, size) = answer(r, &limits)?;
            stats.output_bytes = size;
            Ok(answer)
        });
        CallReport::new(result, stats, traces, start)
    }

    /// Runs `job` in a fresh instance once a slot is free.
    ///
    /// A plugin without preopened directories has nothing that can block a
    /// thread (its only host I/O is async), so it starts on the calling
    /// task: a short call never pays a thread hand-off. If the guest is
    /// still running wasm at its second epoch tick (so it has lasted a
    /// whole tick period), it is CPU-bound, and the rest of the call
    /// moves to a thread of its own at a lower priority. Left on a
    /// runtime worker, a few spinning guests would hold every worker
    /// and each other request (another tenant's included) would wait
    /// behind their slices; at an equal priority on threads of their own,
    /// they would still take most of the cores from the transport's two
    /// workers. This way the kernel runs short requests first, and
    /// CPU-bound calls share what is left (docs/BENCHMARKS.md, noisy
    /// neighbour).
    ///
    /// A plugin with files runs on a thread of its own from the start,
    /// where WASI may do each file operation inline: one thread hand-off
    /// per call instead of one per `open`, `stat` and `read` (3-4x the
    /// throughput of a file search, docs/BENCHMARKS.md), and an operation
    /// that never returns (a FIFO, a hung network mount) holds only that
    /// call's thread and slot, never a runtime worker.
    pub(super) async fn run(&self, job: Job) -> Ran {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slot semaphore is never closed");
        let limits = job.grants.limits;
        let label = job.label.clone();
        let busy = Arc::new(AtomicBool::new(false));
        let blocking = !job.grants.dirs.is_empty();
        // rmcp ties a request to the client (sampling, elicitation) to the
        // request being served through a task-local of the serving task:
        // a call that may ask on a session stays on that task.
        let asks_on_session = job
            .relay
            .as_ref()
            .is_some_and(|relay| matches!(relay.way, super::client::Way::Session(_)));
        let mut call = Box::pin(execute(job, blocking, busy.clone()));
        if !blocking && asks_on_session {
            return call.await;
        }
        if !blocking {
            let started = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
                Poll::Ready(ran) => Poll::Ready(Some(ran)),
                Poll::Pending if busy.load(Ordering::Relaxed) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await;
            if let Some(ran) = started {
                return ran;
            }
            crate::metrics::get().cpu_bound_calls.inc();
        }
        let handle = tokio::runtime::Handle::current();
        let (sent, thread) = tokio::sync::oneshot::channel();
        let work = move || {
            // The instance lives in this thread's store: its slot stays
            // taken until the thread is done with it.
            let _permit = permit;
            let _ = sent.send(handle.block_on(call));
        };
        if blocking {
            tokio::task::spawn_blocking(work);
        } else if let Err(e) = std::thread::Builder::new()
            .name("moat-cpu-bound".into())
            .spawn(move || {
                yield_to_short_requests();
                work()
            })
        {
            tracing::error!(plugin = &*label, "no thread for a CPU-bound call: {e}");
            return failed(CallError::Host("no thread for the call".into()));
        }
        match tokio::time::timeout(limits.timeout + BLOCKED_GRACE, thread).await {
            Ok(Ok(ran)) => ran,
            Ok(Err(_dropped)) => {
                // The thread panicked; its message went to stderr (the
                // host's log), and stays there: it may name host paths.
                tracing::error!(plugin = &*label, "a call's thread failed");
                failed(CallError::Host("the call's thread ended abnormally".into()))
            }
            Err(_elapsed) if blocking => {
                tracing::warn!(
                    plugin = &*label,
                    "a call is blocked in a file operation past its deadline; \
                     its thread and instance slot stay in use until the operation returns"
                );
                failed(CallError::TimedOut {
                    limit: limits.timeout,
                })
            }
            Err(_elapsed) => {
                tracing::warn!(
                    plugin = &*label,
                    "a CPU-bound call has not ended past its deadline (its thread is waiting \
                     for CPU); its thread and instance slot stay in use until it does"
                );
                failed(CallError::TimedOut {
                    limit: limits.timeout,
                })
            }
        }
    }
}

/// How much less CPU a CPU-bound call's thread is given than the
/// transport's workers and short calls when both want it: at nice 19 the
/// kernel weighs it 15 against their 1024, so it runs in what they leave.
/// Unused CPU is still all its own, and its deadline is wall-clock time,
/// so a starved call ends as `timed_out`. (Nice 10 left another tenant's
/// p99 at 2.1-2.2x its p99 alone, nice 19 at 2.0x: docs/BENCHMARKS.md.)
const CPU_BOUND_NICE: libc::c_int = 19;

/// Lowers the calling thread's priority to [`CPU_BOUND_NICE`], so that the
/// kernel runs short requests (another tenant's included) ahead of it.
/// Linux applies `setpriority` to one thread; elsewhere it would lower the
/// whole process, so there the thread keeps its priority.
fn yield_to_short_requests() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority read and write no memory of ours. A
    // failure leaves the thread at its priority (said once in the log),
    // which is only slower for others.
    if unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            CPU_BOUND_NICE,
        )
    } != 0
    {
        static WARNED: std::sync::Once = std::sync::Once::new();
        let error = std::io::Error::last_os_error();
        WARNED.call_once(|| {
            tracing::warn!(
                "cannot lower a CPU-bound call's priority ({error}): such calls compete \
                 with short ones for the CPU"
            )
        });
    }
}

/// Instantiates `job.pre` in a fresh store built from its grants and runs
/// its entry under the grants' limits. `blocking`: file operations may
/// block the current thread. `busy` is set once the guest has been found
/// running at its second epoch tick.
async fn execute(job: Job, blocking: bool, busy: Arc<AtomicBool>) -> Ran {
    let Job {
        pre,
        engine,
        label,
        grants,
        scope,
        entry,
        events,
        relay,
    } = job;
    let limits = grants.limits;
    let stdout = Capture::default();
    let stderr = Capture::default();
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_blocking_current_thread(blocking);
    if let Err(e) = grants.apply(&mut wasi, &scope) {
        return failed(CallError::Host(e.to_string()));
    }
    let mut state = CallState::new(label, wasi.build(), stdout, stderr, &grants, scope.owner);
    state.events = events.map(super::events::EventSink::new);
    state.asking = super::client::Asking::new(&grants, relay);
    let mut store = Store::new(&engine, state);
    if let Err(e) = limits.apply(&mut store, busy) {
        return failed(CallError::Host(e.to_string()));
    }

    // The epoch only interrupts running wasm; a guest waiting on host
    // I/O is ended by this timeout instead.
    let ran = tokio::time::timeout(limits.timeout, async {
        match pre {
            Pre::Current(pre) => run_current(&pre, &mut store, entry).await,
            Pre::Generic(pre) => run_generic(&pre, &mut store, entry, &limits).await,
            Pre::V0_1(pre) => {
                let instance = pre.instantiate_async(&mut store).await?;
                let tools = instance.moat_plugin_tools();
                match entry {
                    Entry::Describe => tools.call_describe(&mut store).await.map(|described| {
                        Returned::Described(Described {
                            tools: described.into_iter().map(super::compat::tool).collect(),
                            resources: Vec::new(),
                            templates: Vec::new(),
                            prompts: Vec::new(),
                        })
                    }),
                    Entry::Call { tool, arguments } => tools
                        .call_call(&mut store, &tool, &arguments)
                        .await
                        .map(|answer| Returned::Call(super::compat::answer(answer))),
                    Entry::Other(_) => Err(no_export("resources or prompts")),
                }
            }
        }
    })
    .await;

    let stats = CallStats {
        duration: Duration::ZERO,
        fuel_used: match limits.metered {
            true => limits.fuel - store.get_fuel().unwrap_or(0),
            false => 0,
        },
        peak_memory_bytes: store.data().limiter.peak,
        output_bytes: 0,
    };
    let state = store.data();
    let stderr_text = log_captured(state);
    let traces = Traces {
        denied: state.outbound.denials(),
        asked: state.asking.asked.clone(),
        pending: state.asking.pending.clone(),
        changed: state.changed.clone(),
        needs: state.outbound.needed(),
    };
    let result = match ran {
        Err(_elapsed) => Err(CallError::TimedOut {
            limit: limits.timeout,
        }),
        Ok(Ok(returned)) => Ok(returned),
        Ok(Err(_)) if traces.pending.is_some() => Err(CallError::AwaitingClient),
        Ok(Err(e)) => Err(classify(&e, &limits, state.limiter.hit, &stderr_text)),
    };
    (result, stats, traces)
}

/// A request routed to a plugin that does not export what answers it
/// (Moat routes only to what a plugin listed, so this is a host fault).
fn no_export(what: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!("the plugin does not export {what}"))
}

/// Runs `entry` in a fresh instance of a component with exports of its
/// own: a description is read off its types, a call lowers the arguments,
/// calls the function and lifts what it returns.
async fn run_generic(
    pre: &super::bindings::GenericPre,
    store: &mut Store<CallState>,
    entry: Entry,
    limits: &crate::capabilities::Limits,
) -> wasmtime::Result<Returned> {
    let instance = pre.pre.instantiate_async(&mut *store).await?;
    match entry {
        Entry::Describe => Ok(Returned::Described(Described {
            tools: pre
                .functions
                .iter()
                .map(|f| wit::Tool {
                    name: f.tool.clone(),
                    title: None,
                    description: f
                        .description
                        .clone()
                        .unwrap_or_else(|| format!("The component's function `{}`.", f.tool)),
                    input_schema: f.input_schema.to_string(),
                    output_schema: f.output_schema.as_ref().map(ToString::to_string),
                    annotations: wt::Annotations {
                        read_only: None,
                        destructive: None,
                        idempotent: None,
                        open_world: None,
                    },
                })
                .collect(),
            resources: Vec::new(),
            templates: Vec::new(),
            prompts: Vec::new(),
        })),
        Entry::Call { tool, arguments } => {
            let Some(function) = pre.functions.iter().find(|f| f.tool == tool) else {
                return Ok(Returned::Call(Err(wit::CallError::UnknownTool(tool))));
            };
            let arguments: serde_json::Value = serde_json::from_str(&arguments)?;
            let params = match function.arguments(&arguments) {
                Ok(params) => params,
                Err((at, why)) => {
                    return Ok(Returned::Call(Err(wit::CallError::InvalidArguments(
                        format!("{why} (at {at})"),
                    ))));
                }
            };
            let func = instance
                .get_func(&mut *store, function.index)
                .ok_or_else(|| no_export(&tool))?;
            let mut results = function.results();
            store.set_hostcall_fuel(function.hostcall_fuel(limits.hostcall_bytes()));
            func.call_async(&mut *store, &params, &mut results).await?;
            let answer = function.answer(&results, limits.max_output_bytes)?;
            Ok(Returned::Call(Ok(CallResult {
                content: vec![wt::Content {
                    kind: wt::ContentKind::Text(answer.text),
                    annotations: None,
                }],
                structured: answer.structured,
                is_error: answer.is_error,
            })))
        }
        Entry::Other(_) => Err(no_export("resources or prompts")),
    }
}

/// Runs `entry` in a fresh instance of a plugin of the current contract.
async fn run_current(
    pre: &super::bindings::CurrentPre,
    store: &mut Store<CallState>,
    entry: Entry,
) -> wasmtime::Result<Returned> {
    let instance = pre.pre.instantiate_async(&mut *store).await?;
    // Loading an interface type-checks each of its functions: only what
    // the entry calls is loaded (a tool call, the commonest, needs only
    // `tools`).
    let resources = |store: &mut Store<CallState>| match &pre.resources {
        Some(indices) => indices.load(store, &instance).map(Some),
        None => Ok(None),
    };
    let prompts = |store: &mut Store<CallState>| match &pre.prompts {
        Some(indices) => indices.load(store, &instance).map(Some),
        None => Ok(None),
    };
    match entry {
        Entry::Describe => {
            let tools = pre.tools.load(&mut *store, &instance)?;
            let mut described = Described {
                tools: tools.call_describe(&mut *store).await?,
                resources: Vec::new(),
                templates: Vec::new(),
                prompts: Vec::new(),
            };
            if let Some(resources) = resources(store)? {
                described.resources = resources.call_list(&mut *store).await?;
                described.templates = resources.call_templates(&mut *store).await?;
            }
            if let Some(prompts) = prompts(store)? {
                described.prompts = prompts.call_list(&mut *store).await?;
            }
            Ok(Returned::Described(described))
        }
        Entry::Call { tool, arguments } => pre
            .tools
            .load(&mut *store, &instance)?
            .call_call(&mut *store, &tool, &arguments)
            .await
            .map(Returned::Call),
        Entry::Other(Request::Read { uri }) => resources(store)?
            .ok_or_else(|| no_export("resources"))?
            .call_read(&mut *store, &uri)
            .await
            .map(Returned::Read),
        Entry::Other(Request::Prompt { name, arguments }) => prompts(store)?
            .ok_or_else(|| no_export("prompts"))?
            .call_get(&mut *store, &name, &arguments)
            .await
            .map(Returned::Prompt),
        Entry::Other(Request::Complete {
            target,
            argument,
            value,
            context,
        }) => match target {
            Completing::Prompt(name) => {
                prompts(store)?
                    .ok_or_else(|| no_export("prompts"))?
                    .call_complete(&mut *store, &name, &argument, &value, &context)
                    .await
            }
            Completing::Template(template) => {
                resources(store)?
                    .ok_or_else(|| no_export("resources"))?
                    .call_complete(&mut *store, &template, &argument, &value, &context)
                    .await
            }
        }
        .map(Returned::Completion),
    }
}

/// Most completion values MCP allows in one answer.
const MAX_COMPLETION_VALUES: usize = 100;

/// What a plugin returned to a request other than a call, as the host
/// keeps it, under the same output cap as a call's result; also returns
/// its size in bytes.
fn answer(
    returned: Returned,
    limits: &crate::capabilities::Limits,
) -> Result<(Answer, usize), CallError> {
    let as_result = |content: Vec<wt::Content>| CallResult {
        content,
        structured: None,
        is_error: false,
    };
    match returned {
        Returned::Read(Ok(contents)) => {
            let items = contents
                .into_iter()
                .map(|r| wt::Content {
                    kind: wt::ContentKind::Resource(r),
                    annotations: None,
                })
                .collect();
            let (output, size) = convert(as_result(items), limits)?;
            Ok((Answer::Read(output.content), size))
        }
        Returned::Read(Err(wt::ReadError::NotFound(m))) => Err(CallError::NotFound(m)),
        Returned::Read(Err(wt::ReadError::Failed(m))) => Err(CallError::Tool(m)),
        Returned::Prompt(Ok(prompt)) => {
            let roles: Vec<Role> = prompt
                .messages
                .iter()
                .map(|m| match m.role {
                    wt::Role::User => Role::User,
                    wt::Role::Assistant => Role::Assistant,
                })
                .collect();
            let items = prompt.messages.into_iter().map(|m| m.content).collect();
            let (output, size) = convert(as_result(items), limits)?;
            let description_size = prompt.description.as_ref().map_or(0, String::len);
            if size + description_size > limits.max_output_bytes {
                return Err(CallError::OutputTooLarge {
                    size: size + description_size,
                    limit: limits.max_output_bytes,
                });
            }
            Ok((
                Answer::Prompt(PromptOutput {
                    description: prompt.description,
                    messages: roles.into_iter().zip(output.content).collect(),
                }),
                size + description_size,
            ))
        }
        Returned::Prompt(Err(wt::PromptError::UnknownPrompt(m))) => Err(CallError::NotFound(m)),
        Returned::Prompt(Err(wt::PromptError::InvalidArguments(m))) => {
            Err(CallError::InvalidArguments(m))
        }
        Returned::Prompt(Err(wt::PromptError::Failed(m))) => Err(CallError::Tool(m)),
        Returned::Completion(c) => {
            if c.values.len() > MAX_COMPLETION_VALUES {
                return Err(CallError::Tool(format!(
                    "the plugin suggested {} values; MCP allows at most {MAX_COMPLETION_VALUES}",
                    c.values.len()
                )));
            }
            let size: usize = c.values.iter().map(|v| v.len() + 3).sum();
            if size > limits.max_output_bytes {
                return Err(CallError::OutputTooLarge {
                    size,
                    limit: limits.max_output_bytes,
                });
            }
            Ok((
                Answer::Completion(Completion {
                    values: c.values,
                    total: c.total,
                    has_more: c.has_more,
                }),
                size,
            ))
        }
        Returned::Described(_) | Returned::Call(_) => {
            unreachable!("a request entry returns its own answer")
        }
    }
}
