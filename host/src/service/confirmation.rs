//! A person's confirmation of an admitted call, whatever asks for it: the
//! policy marks the tools, [`AdmittedCall`]s of them cannot run until
//! [`ToolService::answered`] records a confirmation given, and every
//! question and answer is an audit record with the caller and the
//! arguments' digest. How the question travels is the transport's (see
//! [`crate::mcp`]).

use super::admission::{AdmittedCall, CallContext, Confirm};
use super::{Refusal, ToolService};
use crate::confirm::{self, Answer, ConfirmPolicy, StateError};
use rmcp::model::ElicitationSchema;

/// How long a confirmed call waits for a place under the concurrency caps.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl AdmittedCall {
    /// Whether a person must confirm this call before it runs.
    pub fn needs_confirmation(&self) -> bool {
        self.confirm == Confirm::Pending
    }
}

impl ToolService {
    /// Marks the tools `policy` names or, by their annotations, covers;
    /// fails on a pattern that matches no tool (a typo would leave the
    /// tool it meant unconfirmed).
    pub(super) fn require_confirmation(&mut self, policy: &ConfirmPolicy) -> anyhow::Result<()> {
        let names: Vec<&str> = self.tools.iter().map(|t| t.name.as_str()).collect();
        if let Some(pattern) = policy.unmatched(&names) {
            anyhow::bail!(
                "confirm pattern `{pattern}` matches no tool; the tools are: {}",
                names.join(", ")
            );
        }
        for tool in &mut self.tools {
            tool.confirm = policy.needs(&tool.name, &tool.info.annotations);
        }
        Ok(())
    }

    /// The question put to a person about `call`, and its form; `Err`
    /// (why) when its arguments are too long to show in full.
    pub fn question(&self, call: &AdmittedCall) -> Result<(String, ElicitationSchema), String> {
        let tool = &self.tools[call.tool];
        let known: Vec<&str> = match tool.info.input_schema.get("properties") {
            Some(serde_json::Value::Object(properties)) => {
                properties.keys().map(String::as_str).collect()
            }
            _ => Vec::new(),
        };
        let message = confirm::prompt(&tool.name, &call.arguments, &known)?;
        Ok((message, confirm::form(&tool.name)))
    }

    /// What the sealed state of a confirmation of `call` is bound to: the
    /// caller, this endpoint, the tool (and the digest of the plugin that
    /// would run it: a "yes" to one build does not run another after a
    /// reload) and the arguments.
    fn binding(&self, call: &AdmittedCall, context: &CallContext<'_>) -> Vec<u8> {
        // JSON, so that no issuer, subject or client can run into another.
        let caller = match context.caller {
            Some(c) => serde_json::json!([c.issuer, c.subject, c.client_id]).to_string(),
            None => "anonymous".into(),
        };
        let tool = &self.tools[call.tool];
        confirm::binding(
            &caller,
            self.tenant(),
            &format!("{} {}", tool.name, self.plugins[tool.plugin].sha256),
            &call.arguments,
        )
    }

    /// A sealed state for a confirmation of `call`, to be handed to the
    /// client and redeemed by [`Self::redeem`] on its retry.
    pub fn seal(&self, call: &AdmittedCall, context: &CallContext<'_>) -> String {
        self.ops.confirmations().seal(&self.binding(call, context))
    }

    /// Opens a state the client echoed for `call`; when `claim`, also
    /// uses it up (a state runs at most one call).
    pub async fn redeem(
        &self,
        call: &AdmittedCall,
        context: &CallContext<'_>,
        state: &str,
        claim: bool,
    ) -> Result<(), StateError> {
        self.ops
            .confirmations()
            .redeem(state, &self.binding(call, context), &call.caller_key, claim)
            .await
    }

    /// What a state of `call`'s round trips with the client (2026-07-28)
    /// is bound to: its caller, tenant, tool and arguments, kept apart
    /// from confirmation states.
    pub fn rounds_binding(&self, call: &AdmittedCall, context: &CallContext<'_>) -> Vec<u8> {
        // The plugin's digest too: answers given to one build of a plugin
        // are not replayed into another.
        let mut binding = b"moat:client-requests\0".to_vec();
        binding.extend(self.plugins[self.tools[call.tool].plugin].sha256.as_bytes());
        binding.extend(self.binding(call, context));
        binding
    }

    /// A state carrying `payload` for the round trips bound as `binding`.
    pub fn seal_rounds(&self, binding: &[u8], payload: &[u8]) -> String {
        self.ops.confirmations().seal_payload(payload, binding)
    }

    /// The payload of a state the client echoed, if it is one sealed for
    /// `binding` and still valid.
    pub fn open_rounds(&self, binding: &[u8], state: &str) -> Result<Vec<u8>, StateError> {
        self.ops.confirmations().open_payload(state, binding)
    }

    /// The link where `owner` connects the account a call needed, when
    /// this process serves the connect pages.
    pub fn connect_link(&self, owner: &crate::credentials::store::Owner) -> Option<String> {
        self.ops.connect.as_ref().map(|c| c.link(owner))
    }

    /// A place among the calls waiting for a person, for one waiting for
    /// `owner` to connect an account; `None` when they have too many
    /// waiting already.
    pub fn connect_wait(&self, owner: &crate::credentials::store::Owner) -> Option<impl Send> {
        let whom = format!(
            "connect {}|{}|{}",
            owner.tenant.as_deref().unwrap_or(""),
            owner.issuer,
            owner.subject
        );
        self.ops.wait_to_connect(&whom)
    }

    /// Waits, at most `within`, until `owner` has connected their
    /// account at `since` or later; whether they have.
    pub async fn connected(
        &self,
        owner: &crate::credentials::store::Owner,
        since: u64,
        within: std::time::Duration,
    ) -> bool {
        match &self.ops.connect {
            Some(connect) => connect.connected(owner, since, within).await,
            None => false,
        }
    }

    /// The name clients call `call`'s tool by.
    pub fn tool_name(&self, call: &AdmittedCall) -> &str {
        &self.tools[call.tool].name
    }

    /// Ends `call` without running it, for `refusal` found by the
    /// transport (such as a retry whose state is not valid); recorded.
    pub async fn refuse_call(&self, call: AdmittedCall, refusal: Refusal) -> Refusal {
        self.refuse(call, refusal).await
    }

    /// How long a person has to answer.
    pub fn confirm_timeout(&self) -> std::time::Duration {
        self.ops.confirmations().timeout()
    }

    /// Records that a person is asked to confirm `call`; when the audit
    /// log cannot take it and calls fail closed, the call ends refused.
    pub async fn asked(&self, call: AdmittedCall, whom: &str) -> Result<AdmittedCall, Refusal> {
        let reason = format!("asked {whom} to confirm `{}`", self.tools[call.tool].name);
        let written = self
            .ops
            .confirmation(call.record.as_ref(), "confirmation_asked", &reason)
            .await
            .or_else(|e| self.audit_failure(e));
        match written {
            Ok(()) => Ok(call),
            Err(refusal) => Err(self.refuse(call, refusal).await),
        }
    }

    /// Records `answer`, given by `whom`: a confirmed call is returned,
    /// ready to run; any other answer ends it, refused and recorded.
    pub async fn answered(
        &self,
        mut call: AdmittedCall,
        answer: Answer,
        whom: &str,
    ) -> Result<AdmittedCall, Refusal> {
        let tool = self.tools[call.tool].name.clone();
        let reason = format!("{} (answered by {whom})", answer.reason(&tool));
        let written = self
            .ops
            .confirmation(call.record.as_ref(), answer.kind(), &reason)
            .await
            .or_else(|e| self.audit_failure(e));
        call.waiting = None;
        let refusal = match (written, answer) {
            (Ok(()), Answer::Given) => {
                // Back under the concurrency caps it left while asking.
                // A person said yes: wait a while for a place rather than
                // throw the answer away at the first busy moment.
                let occupied = match (&self.gate, &call.permit) {
                    (Some(gate), None) => gate
                        .occupy_within(SLOT_WAIT)
                        .await
                        .map(Some)
                        .map_err(Refusal::RateLimited),
                    _ => Ok(None),
                };
                match occupied {
                    Ok(permit) => {
                        call.permit = call.permit.take().or(permit);
                        call.confirm = Confirm::Given;
                        return Ok(call);
                    }
                    Err(refusal) => refusal,
                }
            }
            (Err(refusal), _) => refusal,
            (Ok(()), answer) => Refusal::NotConfirmed(answer.reason(&tool)),
        };
        Err(self.refuse(call, refusal).await)
    }

    /// Makes `call` wait for a person's answer over a request held open:
    /// it gives up its place under the concurrency caps (a person may take
    /// minutes) and takes one of its caller's few waiting places instead;
    /// refused when the caller has too many questions waiting.
    pub async fn wait_for_answer(&self, mut call: AdmittedCall) -> Result<AdmittedCall, Refusal> {
        match self.ops.wait(&call.caller_key) {
            Some(waiting) => {
                call.waiting = Some(waiting);
                call.permit = None;
                Ok(call)
            }
            None => {
                let refusal = Refusal::RateLimited(crate::quota::Limited {
                    retry_after: std::time::Duration::from_secs(1),
                    unavailable: false,
                    reason: "too many questions are waiting for a person for this caller".into(),
                });
                Err(self.refuse(call, refusal).await)
            }
        }
    }

    /// Ends `call` without a record of its own: a person is being asked
    /// across round trips, its question is recorded, and the retry that
    /// carries the answer is a call of its own.
    pub fn defer(&self, mut call: AdmittedCall) {
        call.record = None;
        call.accounts = None;
    }

    /// A confirmation record that could not be written: fatal only when
    /// the audit log fails closed.
    fn audit_failure(&self, e: crate::audit::AuditError) -> Result<(), Refusal> {
        match self.ops.check_audit() {
            Ok(()) => {
                tracing::warn!("cannot write a confirmation record: {e}");
                Ok(())
            }
            Err(refusal) => Err(refusal),
        }
    }
}
