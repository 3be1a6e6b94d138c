//! Admission of HTTP requests to an MCP endpoint: authentication, the
//! body check, policy and limits for tool calls, and the count of requests
//! whose responses have not been fully sent, so that shutdown can wait
//! for them. A request counts until the last byte of its
//! response body is written (a tool call's result travels on an event
//! stream that outlives the handler).

use super::rebinding::Expected;
use super::sessions::{self, Sessions};
use crate::auth::endpoint::{Challenge, Endpoint};
use crate::mcp::{HttpAdmission, LiveEndpoint};
use crate::service::{CallContext, Refusal};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;

/// The count of unfinished requests.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    /// Requests now running.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves once no request is running.
    pub async fn drained(&self) {
        loop {
            // Registered before the check, so a wake-up in between is kept.
            let idle = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }

    fn enter(self: &Arc<Self>) -> Guard {
        self.count.fetch_add(1, Ordering::SeqCst);
        Guard(self.clone())
    }
}

struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What the admission middleware needs for one endpoint.
#[derive(Clone)]
pub struct EndpointState {
    /// Unfinished requests.
    pub in_flight: Arc<InFlight>,
    /// The request body limit in bytes.
    pub max_body_bytes: usize,
    /// Token checks and tool policy, when `[auth]` is configured.
    pub auth: Option<Arc<Endpoint>>,
    /// The endpoint's tools, for limits and the audit of refusals.
    pub live: LiveEndpoint,
    /// Session owners; `None` in stateless mode.
    pub sessions: Option<Arc<Sessions>>,
    /// What rmcp's service will take.
    pub expected: Arc<Expected>,
    /// What answers plain calls itself (see [`super::direct`]); `None`
    /// with sessions.
    pub direct: Option<super::direct::Direct>,
}

/// The header that carries a session's ID.
const SESSION_HEADER: &str = "mcp-session-id";

/// Middleware in front of the MCP service (one layer, because every layer
/// clones the service stack per request): the request is authenticated; a
/// POST's body is checked (see [`super::body`]), and a `tools/call` goes
/// through the service's admission here, where a refusal by the policy
/// (403) or the limits (429) can still say so in its status. Every
/// refusal is audited. The request counts
/// as in flight until its response body is finished; GET opens a
/// long-lived event stream that shutdown closes itself.
pub async fn admit(
    State(state): State<EndpointState>,
    mut request: Request,
    next: Next,
) -> Response {
    // The version live now admits; a call runs on the version that
    // admitted it.
    let service = &state.live.current().service.clone();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    // Every request authenticates, whatever its session: a session never
    // stands in for a token.
    let caller = match &state.auth {
        None => None,
        Some(endpoint) => match endpoint
            .authenticate(request.uri(), request.headers())
            .await
        {
            Ok(caller) => Some(caller),
            Err(challenge) => {
                return match service.unauthenticated(peer, &challenge.reason).await {
                    Ok(()) => refuse(&challenge),
                    Err(limited) => too_many(&limited.reason, limited.retry_after),
                };
            }
        },
    };
    // A session belongs to whoever created it; anyone else is told it
    // does not exist.
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let owner = sessions::owner(caller.as_ref());
    if let (Some(sessions), Some(id)) = (&state.sessions, &session)
        && !sessions.belongs(id, &owner).await
    {
        let _ = service
            .refused(
                caller.as_ref(),
                peer,
                "unknown_session",
                "the session does not exist or belongs to another caller",
            )
            .await;
        return (
            http::StatusCode::NOT_FOUND,
            "Not Found: no such session (it ended, or it was never this caller's)\n",
        )
            .into_response();
    }
    if request.method() != Method::POST {
        let delete = request.method() == Method::DELETE;
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        let mut response = next.run(request).await;
        if let (true, Some(sessions), Some(id)) = (delete, &state.sessions, &session)
            && response.status().is_success()
        {
            // rmcp answers 202; a DELETE that ended the session is done,
            // and the SDKs expect 200 or 204 for it.
            sessions.ended(id);
            *response.status_mut() = http::StatusCode::NO_CONTENT;
            *response.body_mut() = Body::empty();
        }
        return response;
    }
    let guard = state.in_flight.enter();
    let (mut parts, body) = request.into_parts();
    let body = match super::body::read_body(body, state.max_body_bytes).await {
        Ok(checked) => checked,
        Err(refusal) => {
            let reason = format!("request body refused ({})", refusal.status());
            let _ = service
                .refused(caller.as_ref(), peer, "bad_request", &reason)
                .await;
            return refusal;
        }
    };
    // A listen stream lasts as long as its client wants: shutdown does not
    // wait for it (closing the sessions ends it).
    let guard = (!body.listen).then_some(guard);
    if let (Some(sessions), None, true) = (&state.sessions, &session, body.initialize)
        && sessions.full(&owner).await
    {
        let reason =
            "too many open sessions for this caller; close some (DELETE) or let them idle out";
        let _ = service
            .refused(caller.as_ref(), peer, "too_many_sessions", reason)
            .await;
        return too_many(reason, Duration::from_secs(60));
    }
    // Only a call rmcp will take is admitted here; any other passes on,
    // for rmcp to refuse (or, should it take it after all, for the handler
    // to admit).
    let will_run = state.expected.accepts(&parts.uri, &parts.headers)
        && (state.sessions.is_none() || session.is_some() || sessionless(&parts.headers));
    if let Some((tool, arguments)) = body.call.filter(|_| will_run) {
        // The service's one admission step; only a refusal with an HTTP
        // status of its own is answered here, the rest travel to the
        // handler, which answers them as JSON-RPC errors.
        let context = CallContext {
            caller: caller.as_ref(),
            peer: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
            local: false,
        };
        let admission = service.admit(&context, &tool, arguments).await;
        match (&admission, &state.auth) {
            (Err(Refusal::NotAllowed(tool)), Some(endpoint)) => {
                return refuse(&endpoint.forbidden(tool, service.policy()));
            }
            (Err(refusal @ Refusal::RateLimited(limited)), _) => {
                return too_many(&refusal.to_string(), limited.retry_after);
            }
            (Err(refusal @ Refusal::LimitsUnavailable(limited)), _) => {
                return retry_later(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    &refusal.to_string(),
                    limited.retry_after,
                );
            }
            _ => {}
        }
        let admission = match (&state.direct, body.plain) {
            (Some(direct), Some(id)) if super::direct::plain_headers(&parts.headers) => {
                match direct.answer(id, admission).await {
                    Ok(response) => return guarded(response, guard),
                    Err(admission) => admission,
                }
            }
            _ => admission,
        };
        parts.extensions.insert(HttpAdmission::new(admission));
    }
    if let Some(caller) = caller {
        parts.extensions.insert(caller);
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(body.bytes)))
        .await;
    if let (Some(sessions), None) = (&state.sessions, &session)
        && let Some(id) = response.headers().get(SESSION_HEADER)
        && let Ok(id) = id.to_str()
    {
        sessions.created(id.to_string(), owner).await;
    }
    guarded(response, guard)
}

/// `response`, counted in flight (with `guard`) until its body is sent.
fn guarded(response: Response, guard: Option<Guard>) -> Response {
    response.map(|body| {
        Body::new(GuardedBody {
            inner: body,
            _guard: guard,
        })
    })
}

/// Whether a request names a protocol revision without sessions
/// (2026-07-28 and later), which rmcp runs outside any session.
fn sessionless(headers: &http::HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|version| version >= "2026-07-28")
}

/// The response for a refused request: its status, the challenge header
/// and the reason in the body.
fn refuse(challenge: &Challenge) -> Response {
    let mut response = (challenge.status, format!("{}\n", challenge.reason)).into_response();
    if let Ok(value) = http::HeaderValue::from_str(&challenge.header) {
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, value);
    }
    response
}

/// 429 with `Retry-After` in whole seconds (at least 1).
fn too_many(reason: &str, retry_after: Duration) -> Response {
    retry_later(http::StatusCode::TOO_MANY_REQUESTS, reason, retry_after)
}

/// `status` with `Retry-After` in whole seconds (at least 1).
fn retry_later(status: http::StatusCode, reason: &str, retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = (
        status,
        format!(
            "{}: {reason}\n",
            status.canonical_reason().unwrap_or_default()
        ),
    )
        .into_response();
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    response
}

/// A response body that holds a [`Guard`] until it is dropped.
struct GuardedBody {
    inner: Body,
    _guard: Option<Guard>,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
