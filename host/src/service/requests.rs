//! Resources, prompts and completions: the requests a plugin answers
//! besides tool calls. Each takes the path a call takes (audit writable,
//! policy, limits, lookup), runs in a fresh sandbox under the plugin's
//! grants and budgets, and is audited and counted.

use super::{Refusal, ToolService, endpoint_key};
use crate::capabilities::identity;
use crate::runtime::{CallReport, Completing, MAX_URI_BYTES, Plugin, Request};
use crate::service::CallContext;
use crate::tool::template;
use crate::tool::{Answer, PromptInfo, ResourceLink, TemplateInfo};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// A resource at a fixed URI, as served.
pub struct ResourceEntry {
    /// What its plugin said about it.
    pub info: ResourceLink,
    plugin: usize,
}

/// A resource template, as served.
pub struct TemplateEntry {
    /// What its plugin said about it.
    pub info: TemplateInfo,
    plugin: usize,
    /// Parsed once, at load.
    parsed: template::Template,
}

/// A prompt, as served.
pub struct PromptEntry {
    /// Its name as clients see it (the plugin's prefix applies, as to tools).
    pub name: String,
    /// What its plugin said about it.
    pub info: PromptInfo,
    plugin: usize,
}

/// What a completion is for, as the client names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A prompt, by the name clients see.
    Prompt(String),
    /// A resource template, by its URI template.
    Template(String),
}

/// The endpoint's resources, templates and prompts; refuses a URI, a
/// template or a prompt name that two plugins both claim.
pub(super) fn entries(
    plugins: &[Plugin],
) -> anyhow::Result<(Vec<ResourceEntry>, Vec<TemplateEntry>, Vec<PromptEntry>)> {
    let mut resources: Vec<ResourceEntry> = Vec::new();
    let mut templates: Vec<TemplateEntry> = Vec::new();
    let mut prompts: Vec<PromptEntry> = Vec::new();
    let mut uris: HashMap<&str, usize> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let clash = |what: &str, a: usize, b: usize| {
        anyhow::anyhow!(
            "{what} is offered by both plugin `{}` and plugin `{}`; serve them at different \
             endpoints, or set `resources = false` in one's [[plugin]] (a copy of the same \
             plugin under another name)",
            plugins[a].name,
            plugins[b].name
        )
    };
    for (index, plugin) in plugins.iter().enumerate() {
        let (listed, templated) = if plugin.naming.hide_resources {
            (&[][..], &[][..])
        } else {
            (&plugin.resources[..], &plugin.templates[..])
        };
        for info in listed {
            if let Some(&other) = uris.get(info.uri.as_str()) {
                return Err(clash(&format!("resource `{}`", info.uri), other, index));
            }
            uris.insert(&info.uri, index);
            resources.push(ResourceEntry {
                info: info.clone(),
                plugin: index,
            });
        }
        for info in templated {
            if let Some(&other) = uris.get(info.uri_template.as_str()) {
                return Err(clash(
                    &format!("resource template `{}`", info.uri_template),
                    other,
                    index,
                ));
            }
            uris.insert(&info.uri_template, index);
            templates.push(TemplateEntry {
                info: info.clone(),
                plugin: index,
                parsed: template::parse(&info.uri_template).map_err(|why| {
                    anyhow::anyhow!("resource template `{}`: {why}", info.uri_template)
                })?,
            });
        }
        for info in &plugin.prompts {
            let name = plugin.naming.prefixed(&plugin.name, &info.name);
            if let Some(&other) = names.get(&name.to_ascii_lowercase()) {
                return Err(clash(
                    &format!("prompt `{name}` (ignoring case)"),
                    other,
                    index,
                ));
            }
            names.insert(name.to_ascii_lowercase(), index);
            prompts.push(PromptEntry {
                name,
                info: info.clone(),
                plugin: index,
            });
        }
    }
    resources.sort_by(|a, b| a.info.uri.cmp(&b.info.uri));
    prompts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((resources, templates, prompts))
}

/// Most prompt arguments, or context values of a completion, a request
/// may carry.
const MAX_ARGUMENTS: usize = 64;

impl ToolService {
    /// Every resource at a fixed URI, sorted by URI.
    pub fn resources(&self) -> &[ResourceEntry] {
        &self.resources
    }

    /// Every resource template.
    pub fn templates(&self) -> &[TemplateEntry] {
        &self.templates
    }

    /// Every prompt, sorted by name.
    pub fn prompts(&self) -> &[PromptEntry] {
        &self.prompts
    }

    /// Whether `caller` may read `uri` (one of `template`'s, if given).
    /// Without a policy everyone may; with one, nobody unauthenticated.
    pub fn allows_resource(
        &self,
        caller: Option<&crate::auth::policy::Caller>,
        uri: &str,
        template: Option<&str>,
    ) -> bool {
        match (&self.policy, caller) {
            (None, _) => true,
            (Some(policy), Some(caller)) => policy.allows_resource(caller, uri, template),
            (Some(_), None) => false,
        }
    }

    /// Whether `caller` may see and use every URI of `template`.
    pub fn allows_template(
        &self,
        caller: Option<&crate::auth::policy::Caller>,
        template: &str,
    ) -> bool {
        match (&self.policy, caller) {
            (None, _) => true,
            (Some(policy), Some(caller)) => policy.allows_template(caller, template),
            (Some(_), None) => false,
        }
    }

    /// Whether `caller` may see and get prompt `name`.
    pub fn allows_prompt(&self, caller: Option<&crate::auth::policy::Caller>, name: &str) -> bool {
        match (&self.policy, caller) {
            (None, _) => true,
            (Some(policy), Some(caller)) => policy.allows_prompt(caller, name),
            (Some(_), None) => false,
        }
    }

    /// The plugin that answers for `uri`, and the template it fits (if it
    /// is not at a fixed URI): a fixed URI first, then the template with
    /// the most fixed text (the most specific), the first listed on a tie.
    pub fn route(&self, uri: &str) -> Option<(usize, Option<&str>)> {
        if let Ok(i) = self
            .resources
            .binary_search_by(|r| r.info.uri.as_str().cmp(uri))
        {
            return Some((self.resources[i].plugin, None));
        }
        let mut best: Option<(usize, &TemplateEntry)> = None;
        for entry in &self.templates {
            let parsed = &entry.parsed;
            if parsed.matches(uri) && best.is_none_or(|(len, _)| parsed.literal_len() > len) {
                best = Some((parsed.literal_len(), entry));
            }
        }
        best.map(|(_, e)| (e.plugin, Some(e.info.uri_template.as_str())))
    }

    /// Refuses a URI longer than any a plugin may list: none could match,
    /// and matching it would cost the host for nothing.
    fn bounded(uri: &str) -> Result<(), Refusal> {
        if uri.len() > MAX_URI_BYTES {
            return Err(Refusal::InvalidArguments {
                tool: "resources".into(),
                field: "/uri".into(),
                message: format!("the URI is longer than {MAX_URI_BYTES} bytes"),
            });
        }
        Ok(())
    }

    /// `resources/read` of `uri` for the caller of `context`.
    pub async fn read_resource(
        &self,
        context: &CallContext<'_>,
        uri: &str,
    ) -> Result<CallReport<Answer>, Refusal> {
        let mut audit = Map::new();
        audit.insert("uri".into(), Value::from(uri));
        self.answer(context, "resources/read", uri, audit, |service| {
            Self::bounded(uri)?;
            let route = service.route(uri);
            if !service.allows_resource(context.caller, uri, route.and_then(|r| r.1)) {
                return Err(Refusal::NotAllowed(uri.to_string()));
            }
            let (plugin, _) = route.ok_or_else(|| Refusal::UnknownResource(uri.to_string()))?;
            Ok((
                plugin,
                Request::Read {
                    uri: uri.to_string(),
                },
            ))
        })
        .await
    }

    /// `resources/subscribe` to `uri`: allowed when the caller may read it
    /// and it is at a fixed URI or fits a template; rate-limited and
    /// audited like a read (no plugin runs).
    pub async fn subscribe(&self, context: &CallContext<'_>, uri: &str) -> Result<(), Refusal> {
        let method = "resources/subscribe";
        let mut audit = Map::new();
        audit.insert("uri".into(), Value::from(uri));
        let peer = context.peer.map(|p| p.ip());
        let mut record = self
            .ops
            .begin(self.tenant(), context.caller, peer, uri, &audit);
        if let Some(record) = &mut record {
            record.method = Some(method);
        }
        let checked = async {
            self.ops.check_audit()?;
            Self::bounded(uri)?;
            let route = self.route(uri);
            if !self.allows_resource(context.caller, uri, route.and_then(|r| r.1)) {
                return Err(Refusal::NotAllowed(uri.to_string()));
            }
            let (plugin, _) = route.ok_or_else(|| Refusal::UnknownResource(uri.to_string()))?;
            if let Some(gate) = &self.gate {
                gate.admit(&self.caller_key(context), method)
                    .await
                    .map_err(Refusal::from)?;
            }
            Ok(plugin)
        }
        .await;
        match checked {
            Err(refusal) => Err(self
                .ops
                .refuse(self.tenant(), method, record, refusal)
                .await),
            Ok(plugin) => {
                if let Some(record) = &mut record {
                    record.plugin_sha256 = Some(self.plugins[plugin].sha256.clone());
                }
                let report = CallReport {
                    result: Ok(()),
                    stats: Default::default(),
                    denied: Vec::new(),
                    asked: Vec::new(),
                    pending: None,
                    changed: Vec::new(),
                    needs: None,
                };
                self.ops
                    .finish(self.tenant(), None, method, record, Ok(report))
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Whom limits count a request against.
    fn caller_key(&self, context: &CallContext<'_>) -> String {
        format!(
            "{} {}",
            endpoint_key(self.tenant()),
            context.limit_key(self.ops.ipv6_prefix())
        )
    }

    /// `prompts/get` of `name` with `arguments`.
    pub async fn get_prompt(
        &self,
        context: &CallContext<'_>,
        name: &str,
        arguments: BTreeMap<String, String>,
    ) -> Result<CallReport<Answer>, Refusal> {
        let audit: Map<String, Value> = arguments
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        self.answer(context, "prompts/get", name, audit, |service| {
            let entry = service.prompt(context, name)?;
            check_arguments(entry, &arguments)?;
            Ok((
                entry.plugin,
                Request::Prompt {
                    name: entry.info.name.clone(),
                    arguments: arguments.into_iter().collect(),
                },
            ))
        })
        .await
    }

    /// `completion/complete` of `argument` (typed so far: `value`) of the
    /// prompt or template `reference`, with the arguments already chosen.
    pub async fn complete(
        &self,
        context: &CallContext<'_>,
        reference: &Reference,
        argument: &str,
        value: &str,
        chosen: BTreeMap<String, String>,
    ) -> Result<CallReport<Answer>, Refusal> {
        let label = match reference {
            Reference::Prompt(name) | Reference::Template(name) => name.as_str(),
        };
        let mut audit = Map::new();
        audit.insert("argument".into(), Value::from(argument));
        audit.insert("value".into(), Value::from(value));
        self.answer(context, "completion/complete", label, audit, |service| {
            if chosen.len() > MAX_ARGUMENTS {
                return Err(too_many(label));
            }
            let (plugin, target) = match reference {
                Reference::Prompt(name) => {
                    let entry = service.prompt(context, name)?;
                    if !entry.info.arguments.iter().any(|a| a.name == argument) {
                        return Err(unknown_argument(name, argument));
                    }
                    (entry.plugin, Completing::Prompt(entry.info.name.clone()))
                }
                Reference::Template(template) => {
                    Self::bounded(template)?;
                    if !service.allows_template(context.caller, template) {
                        return Err(Refusal::NotAllowed(template.clone()));
                    }
                    let entry = service
                        .templates
                        .iter()
                        .find(|t| t.info.uri_template == *template)
                        .ok_or_else(|| Refusal::UnknownResource(template.clone()))?;
                    if !template.contains(&format!("{{{argument}}}")) {
                        return Err(unknown_argument(template, argument));
                    }
                    (entry.plugin, Completing::Template(template.clone()))
                }
            };
            Ok((
                plugin,
                Request::Complete {
                    target,
                    argument: argument.to_string(),
                    value: value.to_string(),
                    context: chosen.into_iter().collect(),
                },
            ))
        })
        .await
    }

    /// The prompt `name`, if the caller may use it.
    fn prompt(&self, context: &CallContext<'_>, name: &str) -> Result<&PromptEntry, Refusal> {
        if !self.allows_prompt(context.caller, name) {
            return Err(Refusal::NotAllowed(name.to_string()));
        }
        self.prompts
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .map(|i| &self.prompts[i])
            .map_err(|_| Refusal::UnknownPrompt(name.to_string()))
    }

    /// The one path of these requests: record begun, audit writable, the
    /// request `find`s its plugin (policy and lookup), limits, then a
    /// fresh sandbox; the record is written before this returns.
    async fn answer(
        &self,
        context: &CallContext<'_>,
        method: &'static str,
        target: &str,
        audit: Map<String, Value>,
        find: impl FnOnce(&Self) -> Result<(usize, Request), Refusal>,
    ) -> Result<CallReport<Answer>, Refusal> {
        let peer = context.peer.map(|p| p.ip());
        let mut record = self
            .ops
            .begin(self.tenant(), context.caller, peer, target, &audit);
        if let Some(record) = &mut record {
            record.method = Some(method);
        }
        let secrets = crate::audit::secrets(&audit);
        let caller_key = self.caller_key(context);
        let checked = async {
            self.ops.check_audit()?;
            let (plugin, request) = find(self)?;
            let permit = match &self.gate {
                None => None,
                Some(gate) => Some(
                    gate.admit(&caller_key, method)
                        .await
                        .map_err(Refusal::from)?,
                ),
            };
            Ok((plugin, request, permit))
        }
        .await;
        let (plugin, request, permit) = match checked {
            Ok(checked) => checked,
            Err(refusal) => {
                return Err(self
                    .ops
                    .refuse(self.tenant(), method, record, refusal)
                    .await);
            }
        };
        let plugin = &self.plugins[plugin];
        if let Some(record) = &mut record {
            record.plugin_sha256 = Some(plugin.sha256.clone());
        }
        let scope = identity::scope(&plugin.grants, context, self.tenant.as_deref());
        let plugin_index = self.plugins.iter().position(|p| std::ptr::eq(p, plugin));
        let mut report = {
            let _running = self.ops.running();
            self.runtime.serve(plugin, request, scope).await
        };
        if let Some(permit) = permit {
            permit.release().await;
        }
        // A read answers with the plugin's own resources only: never with
        // contents labelled as another plugin's.
        if let Ok(Answer::Read(items)) = &report.result
            && let Some(foreign) = items.iter().find_map(|item| match &item.kind {
                crate::tool::ContentKind::Resource { uri, .. }
                    if self.route(uri).map(|r| r.0) != plugin_index =>
                {
                    Some(uri.clone())
                }
                _ => None,
            })
        {
            report.result = Err(crate::runtime::CallError::Tool(format!(
                "the plugin answered with contents for `{}`, which is not one of its resources",
                printable_uri(&foreign)
            )));
        }
        if let Err(e) = &mut report.result
            && let Some(text) = e.text_mut()
            && !secrets.is_empty()
        {
            *text = secrets.scrub(text);
        }
        self.ops
            .finish(
                self.tenant(),
                Some(&plugin.name),
                method,
                record,
                Ok(report),
            )
            .await
    }
}

/// Refuses prompt arguments the prompt does not take and requires those it
/// needs, before the plugin runs.
fn check_arguments(
    entry: &PromptEntry,
    arguments: &BTreeMap<String, String>,
) -> Result<(), Refusal> {
    if arguments.len() > MAX_ARGUMENTS {
        return Err(too_many(&entry.name));
    }
    if let Some(unknown) = arguments
        .keys()
        .find(|k| !entry.info.arguments.iter().any(|a| &a.name == *k))
    {
        return Err(unknown_argument(&entry.name, unknown));
    }
    if let Some(missing) = entry
        .info
        .arguments
        .iter()
        .find(|a| a.required && !arguments.contains_key(&a.name))
    {
        return Err(Refusal::InvalidArguments {
            tool: entry.name.clone(),
            field: format!("/{}", missing.name),
            message: "this required argument is missing".into(),
        });
    }
    Ok(())
}

fn unknown_argument(target: &str, argument: &str) -> Refusal {
    Refusal::InvalidArguments {
        tool: target.to_string(),
        field: format!("/{argument}"),
        message: "no such argument".into(),
    }
}

fn too_many(target: &str) -> Refusal {
    Refusal::InvalidArguments {
        tool: target.to_string(),
        field: String::new(),
        message: format!("more than {MAX_ARGUMENTS} arguments"),
    }
}

/// A URI as error messages quote it: cut short, control characters out.
fn printable_uri(uri: &str) -> String {
    crate::runtime::printable(&uri.chars().take(200).collect::<String>()).into_owned()
}
