//! Admission of HTTP requests to an MCP endpoint: authentication, the
//! body check, policy and limits for tool calls, and the count of requests
//! whose responses have not been fully sent, so that shutdown can wait
//! for them. A request counts until the last byte of its
//! response body is written (a tool call's result travels on an event
//! stream that outlives the handler).

use crate::auth::endpoint::{Challenge, Endpoint};
use crate::quota::Admitted;
use crate::service::{CallContext, SharedService};
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

/// What the admission middleware needs.
#[derive(Clone)]
pub struct Admission {
    /// Unfinished requests.
    pub in_flight: Arc<InFlight>,
    /// The request body limit in bytes.
    pub max_body_bytes: usize,
    /// Token checks and tool policy, when `[auth]` is configured.
    pub auth: Option<Arc<Endpoint>>,
    /// The endpoint's tools, for limits and the audit of refusals.
    pub service: SharedService,
}

/// Middleware in front of the MCP service (one layer, because every layer
/// clones the service stack per request): the request is authenticated; a
/// POST's body is checked (see [`super::guard`]), and a `tools/call` is
/// checked against the policy (403) and the limits (429) here, where the
/// status can still say so. Every refusal is audited. The request counts
/// as in flight until its response body is finished; GET opens a
/// long-lived event stream that shutdown closes itself.
pub async fn admit(
    State(admission): State<Admission>,
    mut request: Request,
    next: Next,
) -> Response {
    let service = &admission.service;
    // Every request authenticates, whatever its session: a session never
    // stands in for a token.
    let caller = match &admission.auth {
        None => None,
        Some(endpoint) => match endpoint
            .authenticate(request.uri(), request.headers())
            .await
        {
            Ok(caller) => Some(caller),
            Err(challenge) => {
                let peer = request
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|info| info.0.ip());
                return match service.unauthenticated(peer, &challenge.reason).await {
                    Ok(()) => refuse(&challenge),
                    Err(limited) => too_many(&limited.reason, limited.retry_after),
                };
            }
        },
    };
    if request.method() != Method::POST {
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        return next.run(request).await;
    }
    let guard = admission.in_flight.enter();
    let (mut parts, body) = request.into_parts();
    let body = match super::guard::read_body(body, admission.max_body_bytes).await {
        Ok(checked) => checked,
        Err(refusal) => {
            let reason = format!("request body refused ({})", refusal.status());
            let _ = service
                .refused(caller.as_ref(), None, "bad_request", &reason)
                .await;
            return refusal;
        }
    };
    let mut admitted = None;
    if let Some(tool) = body.tool.as_deref() {
        if let (Some(endpoint), Some(caller)) = (&admission.auth, &caller)
            && !endpoint.allows(caller, tool)
        {
            let challenge = endpoint.forbidden(tool);
            let _ = service
                .refused(Some(caller), Some(tool), "forbidden", &challenge.reason)
                .await;
            return refuse(&challenge);
        }
        let context = CallContext {
            caller: caller.as_ref(),
            peer: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
            admitted: false,
        };
        match service.admit(&context, tool).await {
            Ok(permit) => admitted = permit,
            Err(refusal) => {
                let reason = refusal.to_string();
                let _ = service
                    .refused(caller.as_ref(), Some(tool), refusal.kind(), &reason)
                    .await;
                return too_many(&reason, refusal.retry_after().unwrap_or_default());
            }
        }
        parts.extensions.insert(crate::mcp::LimitsChecked);
    }
    if let Some(caller) = caller {
        parts.extensions.insert(caller);
    }
    next.run(Request::from_parts(parts, Body::from(body.bytes)))
        .await
        .map(|body| {
            Body::new(GuardedBody {
                inner: body,
                _guard: guard,
                _admitted: admitted,
            })
        })
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
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = (
        http::StatusCode::TOO_MANY_REQUESTS,
        format!("Too Many Requests: {reason}\n"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    response
}

/// A response body that holds a [`Guard`] (and the call's admission to
/// the limits) until it is dropped.
struct GuardedBody {
    inner: Body,
    _guard: Guard,
    _admitted: Option<Admitted>,
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
