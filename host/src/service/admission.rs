//! Admission and running: the one path every call takes. [`ToolService::admit`]
//! checks a call (audit writable, policy, limits, tool lookup, schema) and
//! returns an [`AdmittedCall`] or an audited [`Refusal`];
//! [`ToolService::run`] runs the admitted values in a fresh sandbox.

use super::{Operations, Refusal, ToolService, endpoint_key};
use crate::auth::policy::Caller;
use crate::capabilities::identity;
use crate::quota::Admitted;
use crate::runtime::CallReport;
use serde_json::{Map, Value};
use std::net::SocketAddr;

/// Who is calling, as the transport knows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContext<'a> {
    /// The authenticated caller; `None` over stdio and HTTP without `[auth]`.
    pub caller: Option<&'a Caller>,
    /// The peer's address over HTTP.
    pub peer: Option<SocketAddr>,
    /// Over stdio: the one trusted local user who launched Moat, whose
    /// connections (not per-caller grants: nobody is verified) are their
    /// own.
    pub local: bool,
}

impl CallContext<'_> {
    /// Whom rate limits count against: the token's issuer and subject
    /// (a subject is unique only at its issuer), else its client, else
    /// the peer's address (an IPv6 peer by its first `ipv6_prefix` bits,
    /// since one host usually holds a whole prefix), else the process that
    /// launched Moat over stdio.
    pub fn limit_key(&self, ipv6_prefix: u8) -> String {
        if let Some(caller) = self.caller {
            if !caller.subject.is_empty() {
                return format!("iss:{} sub:{}", caller.issuer, caller.subject);
            }
            if let Some(client) = &caller.client_id {
                return format!("iss:{} client:{client}", caller.issuer);
            }
        }
        match self.peer {
            Some(peer) => format!("ip:{}", crate::quota::source(peer.ip(), ipv6_prefix)),
            None => "stdio".into(),
        }
    }
}

/// A call that passed every check of [`ToolService::admit`]; it runs with
/// [`ToolService::run`] of the same service, from these values alone.
pub struct AdmittedCall {
    /// Index into the service's tools.
    pub(super) tool: usize,
    /// The arguments, valid against the tool's input schema.
    pub(super) arguments: Value,
    /// What the plugin's grants know of the caller.
    scope: identity::Scope,
    /// The audit record, completed when the call ends.
    pub(super) record: Option<crate::audit::Record>,
    /// Values of secret-looking arguments, kept out of error messages.
    secrets: std::sync::Arc<crate::audit::Secrets>,
    /// The version of the endpoint that admitted it, the only one that may
    /// run it (its tool index means nothing to another): a reload while it
    /// waits or runs leaves it on the plugins it was admitted for.
    service: std::sync::Arc<ToolService>,
    /// Where its record goes should it be dropped without running.
    pub(super) accounts: Option<Accounts>,
    /// Whether a person must confirm it first, and did.
    pub(super) confirm: Confirm,
    /// The call's place under the concurrency caps, until it ends (given
    /// up while a person is asked).
    pub(super) permit: Option<Admitted>,
    /// Whom limits count it against (see [`CallContext::limit_key`]).
    pub(super) caller_key: String,
    /// Its place among the questions waiting for a person, while asked.
    pub(super) waiting: Option<super::accounting::Waiting>,
    /// Where its progress and log records go to the client, if anywhere.
    events: Option<crate::runtime::events::Listener>,
    /// How the plugin asks the client (sampling, elicitation), if it can.
    relay: Option<crate::runtime::client::Relay>,
    /// Its plugin holds a grant to ask the client.
    may_ask: bool,
}

impl AdmittedCall {
    /// The version of the endpoint that admitted it: the one to run it on.
    pub fn service(&self) -> &std::sync::Arc<ToolService> {
        &self.service
    }

    /// Sends the call's progress reports and log records to `events` while
    /// it runs (a transport that can tell the client sets it).
    pub fn tell(&mut self, events: crate::runtime::events::Listener) {
        self.events = Some(events);
    }

    /// Whether the call's plugin may ask the client at all (it holds the
    /// `sampling` or `elicitation` grant): without, no relay is needed.
    pub fn may_ask(&self) -> bool {
        self.may_ask
    }

    /// The arguments, to run the call again once its caller has connected
    /// an account it needed; `None` (nothing copied) unless its plugin's
    /// requests can carry a caller's credential.
    pub fn arguments_if_connecting(&self) -> Option<Map<String, Value>> {
        self.scope.owner.as_ref()?;
        self.arguments.as_object().cloned()
    }

    /// Whether its plugin's requests can carry a caller's credential, so
    /// that the call may end asking its caller to connect an account.
    pub fn may_need_connection(&self) -> bool {
        self.scope.owner.is_some()
    }

    /// Lets the plugin ask the client through `relay` while it runs (a
    /// transport with a session sets it; the grants decide what it may ask).
    pub fn relay(&mut self, relay: crate::runtime::client::Relay) {
        self.relay = Some(relay);
    }

    /// The values of the call's secret-looking arguments, to keep out of
    /// what goes back to the client while it runs.
    pub fn secrets(&self) -> std::sync::Arc<crate::audit::Secrets> {
        self.secrets.clone()
    }
}

/// Where an admitted call stands with a person's confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Confirm {
    /// Its tool needs none.
    NotNeeded,
    /// Its tool needs one, not given yet: it cannot run.
    Pending,
    /// A person confirmed it.
    Given,
}

/// What an admitted call needs to record its own abandonment.
pub(super) struct Accounts {
    ops: Operations,
    tenant: Option<String>,
    tool: String,
}

impl Drop for AdmittedCall {
    /// A call admitted but never run (the transport refused the request
    /// after admission) still leaves its record: a refusal.
    fn drop(&mut self) {
        let (Some(record), Some(Accounts { ops, tenant, tool }), Ok(runtime)) = (
            self.record.take(),
            self.accounts.take(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        runtime.spawn(async move {
            ops.refuse(tenant.as_deref(), &tool, Some(record), Refusal::Abandoned)
                .await;
        });
    }
}

impl ToolService {
    /// The one admission step of every call, whatever its transport:
    /// audit available, policy, limits, tool lookup, arguments against the
    /// input schema, in that order. A refusal is audited and counted
    /// before it is returned.
    pub async fn admit(
        self: &std::sync::Arc<Self>,
        context: &CallContext<'_>,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<AdmittedCall, Refusal> {
        let peer = context.peer.map(|p| p.ip());
        let mut record = self
            .ops
            .begin(self.tenant(), context.caller, peer, name, &arguments);
        let secrets = std::sync::Arc::new(crate::audit::secrets(&arguments));
        // Buckets are per endpoint; the key names it too, so that a store
        // shared by every endpoint (and replica) keeps them apart.
        let caller_key = format!(
            "{} {}",
            endpoint_key(self.tenant()),
            context.limit_key(self.ops.ipv6_prefix())
        );
        match self
            .check(context, name, arguments, &mut record, &caller_key)
            .await
        {
            Ok((tool, arguments, permit)) => Ok(AdmittedCall {
                tool,
                secrets,
                service: self.clone(),
                arguments,
                scope: identity::scope(
                    &self.plugins[self.tools[tool].plugin].grants,
                    context,
                    self.tenant.as_deref(),
                ),
                confirm: if self.tools[tool].confirm {
                    Confirm::Pending
                } else {
                    Confirm::NotNeeded
                },
                record,
                accounts: Some(Accounts {
                    ops: self.ops.clone(),
                    tenant: self.tenant.clone(),
                    tool: name.to_string(),
                }),
                permit,
                caller_key,
                waiting: None,
                events: None,
                relay: None,
                may_ask: {
                    let grants = &self.plugins[self.tools[tool].plugin].grants;
                    grants.sampling.is_some() || grants.elicitation
                },
            }),
            Err(refusal) => Err(self.ops.refuse(self.tenant(), name, record, refusal).await),
        }
    }

    async fn check(
        &self,
        context: &CallContext<'_>,
        name: &str,
        arguments: Map<String, Value>,
        record: &mut Option<crate::audit::Record>,
        caller_key: &str,
    ) -> Result<(usize, Value, Option<Admitted>), Refusal> {
        self.ops.check_audit()?;
        if !self.allows(context.caller, name) {
            return Err(Refusal::NotAllowed(name.to_string()));
        }
        let permit = match &self.gate {
            None => None,
            Some(gate) => Some(gate.admit(caller_key, name).await.map_err(Refusal::from)?),
        };
        let index = *self
            .by_name
            .get(name)
            .ok_or_else(|| Refusal::UnknownTool(name.to_string()))?;
        let tool = &self.tools[index];
        if let Some(record) = record {
            record.plugin_sha256 = Some(self.plugins[tool.plugin].sha256.clone());
        }
        let arguments = Value::Object(arguments);
        // `is_valid` is the fast path; the error walk runs only on failure.
        if !tool.validator.is_valid(&arguments)
            && let Some(error) = tool.validator.iter_errors(&arguments).next()
        {
            return Err(Refusal::InvalidArguments {
                tool: tool.name.clone(),
                field: error.instance_path().to_string(),
                // The message never repeats the value: it may be a secret,
                // and it goes to the log, the audit record and the client.
                message: error.masked().to_string(),
            });
        }
        Ok((index, arguments, permit))
    }

    /// Runs a call [`Self::admit`] let through, in a fresh sandbox; its
    /// record is written before this returns.
    pub async fn run(&self, mut call: AdmittedCall) -> Result<CallReport, Refusal> {
        assert!(
            std::ptr::eq(std::sync::Arc::as_ptr(&call.service), self),
            "a call runs on the service that admitted it"
        );
        let tool = &self.tools[call.tool];
        if call.confirm == Confirm::Pending {
            // A transport that forgot to ask: the tool does not run.
            let refusal =
                Refusal::NotConfirmed(format!("`{}` needs a person's confirmation", tool.name));
            return Err(self.refuse(call, refusal).await);
        }
        let plugin = &self.plugins[tool.plugin];
        let mut report = {
            let _running = self.ops.running();
            self.runtime
                .call_for(
                    plugin,
                    &tool.info.name,
                    call.arguments.to_string(),
                    std::mem::take(&mut call.scope),
                    call.events.take(),
                    call.relay.take(),
                )
                .await
        };
        // The call's places under the caps are free before it is answered:
        // a caller's next call must not find its own last one still running.
        if let Some(permit) = call.permit.take() {
            permit.release().await;
        }
        // A plugin tells of changes to its own resources only: never makes
        // clients re-read another plugin's.
        report.changed.retain(|uri| {
            self.route(uri)
                .is_some_and(|(owner, _)| owner == tool.plugin)
        });
        // A plugin's message may quote its arguments (serde's do); it goes
        // to the log, the audit record and the client.
        if let Err(e) = &mut report.result
            && let Some(text) = e.text_mut()
            && !call.secrets.is_empty()
        {
            *text = call.secrets.scrub(text);
        }
        self.ops
            .finish(
                self.tenant(),
                Some(&plugin.name),
                &tool.name,
                call.record.take(),
                Ok(report),
            )
            .await
    }

    /// Ends an admitted call without running it: its record says why.
    /// Returns the refusal as recorded (an audit log that cannot take the
    /// record leaves it a refusal all the same).
    pub(super) async fn refuse(&self, mut call: AdmittedCall, refusal: Refusal) -> Refusal {
        call.accounts = None;
        let tool = &self.tools[call.tool].name;
        self.ops
            .refuse(self.tenant(), tool, call.record.take(), refusal)
            .await
    }

    /// Admits and runs tool `name` with `arguments` for the caller of
    /// `context`.
    pub async fn call(
        self: &std::sync::Arc<Self>,
        context: CallContext<'_>,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallReport, Refusal> {
        let call = self.admit(&context, name, arguments).await?;
        self.run(call).await
    }
}
