//! Counts HTTP requests whose responses have not been fully sent, so that
//! shutdown can wait for them. A request counts until the last byte of its
//! response body is written (a tool call's result travels on an event
//! stream that outlives the handler).

use crate::auth::endpoint::{Challenge, Endpoint};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
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
}

/// Middleware in front of the MCP service (one layer, because every layer
/// clones the service stack per request): a POST's body is checked (see
/// [`super::guard`]), and the request counts as in flight until its
/// response body is finished. GET opens a long-lived event stream that
/// shutdown closes itself.
pub async fn admit(
    State(admission): State<Admission>,
    mut request: Request,
    next: Next,
) -> Response {
    // Every request authenticates, whatever its session: a session never
    // stands in for a token.
    let caller = match &admission.auth {
        None => None,
        Some(endpoint) => match endpoint
            .authenticate(request.uri(), request.headers())
            .await
        {
            Ok(caller) => Some(caller),
            Err(challenge) => return refuse(&challenge),
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
        Ok(bytes) => bytes,
        Err(refusal) => return refusal,
    };
    if let (Some(endpoint), Some(caller)) = (&admission.auth, caller) {
        if let Some(tool) = super::guard::called_tool(&body)
            && !endpoint.allows(&caller, &tool)
        {
            tracing::warn!(
                subject = caller.subject,
                tool,
                "tool call refused: not granted"
            );
            return refuse(&endpoint.forbidden(&tool));
        }
        parts.extensions.insert(caller);
    }
    next.run(Request::from_parts(parts, Body::from(body)))
        .await
        .map(|body| {
            Body::new(GuardedBody {
                inner: body,
                _guard: guard,
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

/// A response body that holds a [`Guard`] until it is dropped.
struct GuardedBody {
    inner: Body,
    _guard: Guard,
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
