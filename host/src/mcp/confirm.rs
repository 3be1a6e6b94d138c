//! Asking a person, the MCP way: an `elicitation/create` request on the
//! call's own stream where the protocol has sessions, and the round trips
//! of 2026-07-28 (`InputRequiredResult` with a sealed `requestState`)
//! where it has none. What is asked, and what is recorded, is the
//! service's (see [`crate::service`] and [`crate::confirm`]).

use super::{McpHandler, call_context, caller};
use crate::confirm::Answer;
use crate::service::{AdmittedCall, Refusal};
use rmcp::RoleServer;
use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitResult, InputRequest, InputRequests,
    InputRequiredResult, InputResponses, ProtocolVersion,
};
use rmcp::service::{RequestContext, ServiceError};

/// The key of the confirmation among a round trip's input requests.
const CONFIRM_KEY: &str = "moat_confirm";

/// Why a call that needs a confirmation does not run now.
pub(super) enum Unconfirmed {
    /// The question goes to the client; the call runs on its retry.
    Asking(InputRequiredResult),
    /// Refused and recorded.
    Refused(Refusal),
}

impl McpHandler {
    /// Asks a person to confirm `call`: on the call's own stream where the
    /// protocol has sessions, else (2026-07-28) with an `InputRequiredResult`
    /// whose sealed state the client's retry brings back with the answer.
    pub(super) async fn confirm(
        &self,
        call: AdmittedCall,
        state: Option<String>,
        responses: Option<InputResponses>,
        context: &RequestContext<RoleServer>,
    ) -> Result<AdmittedCall, Unconfirmed> {
        let service = call.service().clone();
        let whom = whom(context);
        let round_trips = context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        let refused = Unconfirmed::Refused;
        if round_trips && let Some(state) = state {
            let answer = responses
                .as_ref()
                .and_then(|r| r.get(CONFIRM_KEY))
                .and_then(|v| serde_json::from_value::<ElicitResult>(v.clone()).ok())
                .map_or_else(
                    || Answer::Invalid("the retry carries no answer to the question".into()),
                    |result| Answer::of(&result),
                );
            // Only a "yes" uses the state up; any answer needs a valid one.
            let redeemed = service
                .redeem(
                    &call,
                    &call_context(context),
                    &state,
                    answer == Answer::Given,
                )
                .await;
            let answer = match redeemed {
                Ok(()) => answer,
                Err(e) => Answer::Invalid(e.to_string()),
            };
            return service.answered(call, answer, &whom).await.map_err(refused);
        }
        let question = service.question(&call);
        let unsupported = if !round_trips && !self.server_requests {
            Some(
                "this server runs without sessions ([http] stateless = true), where only protocol 2026-07-28 can ask a person"
                    .to_string(),
            )
        } else {
            form_unsupported(context).or_else(|| question.as_ref().err().cloned())
        };
        let (message, requested_schema) = match (unsupported, question) {
            (None, Ok(question)) => question,
            (Some(why), _) | (None, Err(why)) => {
                return service
                    .answered(call, Answer::Unsupported(why), &whom)
                    .await
                    .map_err(refused);
            }
        };
        let call = service.asked(call, &whom).await.map_err(refused)?;
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema,
        };
        if round_trips {
            let sealed = service.seal(&call, &call_context(context));
            service.defer(call);
            let requests = InputRequests::from([(
                CONFIRM_KEY.to_string(),
                InputRequest::Elicitation(ElicitRequest::new(params)),
            )]);
            return Err(Unconfirmed::Asking(InputRequiredResult::new(
                Some(requests),
                Some(sealed),
            )));
        }
        let call = service.wait_for_answer(call).await.map_err(refused)?;
        let answer = match context
            .peer
            .create_elicitation_with_timeout(params, Some(service.confirm_timeout()))
            .await
        {
            Ok(result) => Answer::of(&result),
            Err(ServiceError::Timeout { .. }) => Answer::TimedOut,
            Err(e) => Answer::Invalid(format!("the client did not answer: {e}")),
        };
        service.answered(call, answer, &whom).await.map_err(refused)
    }
}

/// Why the client cannot show a form, if it cannot.
fn form_unsupported(context: &RequestContext<RoleServer>) -> Option<String> {
    match context.client_capabilities().and_then(|c| c.elicitation) {
        None => Some(
            "the client did not declare the elicitation capability, so no person can be asked"
                .into(),
        ),
        Some(e) if e.form.is_none() && e.url.is_some() => {
            Some("the client takes only URL elicitations, not forms".into())
        }
        Some(_) => None,
    }
}

/// Who answers a question, as the audit record says it: the caller and
/// the client program it names (its own words, so cut short).
fn whom(context: &RequestContext<RoleServer>) -> String {
    let client = context
        .client_info()
        .map_or("an unnamed client".to_string(), |i| {
            let named: String = format!("{} {}", i.name, i.version)
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            format!("client `{named}`")
        });
    match caller(context) {
        Some(c) => format!("{client} of subject `{}`", c.subject),
        None => client,
    }
}
