//! Counts HTTP requests whose responses have not been fully sent, so that
//! shutdown can wait for them. A request counts until the last byte of its
//! response body is written (a tool call's result travels on an event
//! stream that outlives the handler).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
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
}

/// Middleware in front of the MCP service (one layer, because every layer
/// clones the service stack per request): a POST's body is checked (see
/// [`super::guard`]), and the request counts as in flight until its
/// response body is finished. GET opens a long-lived event stream that
/// shutdown closes itself.
pub async fn admit(State(admission): State<Admission>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let guard = admission.in_flight.enter();
    let (parts, body) = request.into_parts();
    let body = match super::guard::read_body(body, admission.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal,
    };
    next.run(Request::from_parts(parts, Body::from(body)))
        .await
        .map(|body| {
            Body::new(GuardedBody {
                inner: body,
                _guard: guard,
            })
        })
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
