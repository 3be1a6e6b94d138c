//! What an endpoint serves now, replaced whole by a reload.
//!
//! Each request takes the version that is live when it starts and keeps it
//! to its end, so a call in flight finishes on the plugins it started on
//! while new requests see the new ones. Watchers learn of each change.

use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// A shared, replaceable value.
pub struct Live<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    current: RwLock<Arc<T>>,
    /// Counts replacements, for watchers.
    version: watch::Sender<u64>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Live<T> {
    /// Starts with `value`.
    pub fn new(value: Arc<T>) -> Self {
        Live {
            inner: Arc::new(Inner {
                current: RwLock::new(value),
                version: watch::channel(0).0,
            }),
        }
    }

    /// The value now.
    pub fn current(&self) -> Arc<T> {
        self.inner.current.read().expect("live value").clone()
    }

    /// Makes `value` the one new requests get, and tells the watchers.
    pub fn replace(&self, value: Arc<T>) {
        *self.inner.current.write().expect("live value") = value;
        self.inner.version.send_modify(|v| *v += 1);
    }

    /// A receiver that wakes at each replacement after now.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }
}
