//! Sessions belong to the caller that created them. rmcp's session
//! manager knows a session's ID and nothing of who opened it; this module
//! remembers the owner of every session an endpoint creates, and answers
//! "unknown session" (404) to anyone else who presents its ID, exactly as
//! for an ID that never existed, so that a leaked ID gives a stranger
//! nothing and does not even confirm that the session exists.

use crate::auth::policy::Caller;
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

/// Sessions of one endpoint and their owners.
pub struct Sessions {
    /// rmcp's sessions, asked whether a session still lives (they end on
    /// their own when idle).
    manager: Arc<LocalSessionManager>,
    /// Who owns which session, and how many each owner has.
    owners: Mutex<Owners>,
    /// Prune ended sessions' owners once the map grows past this.
    prune_at: Mutex<usize>,
}

#[derive(Default)]
struct Owners {
    /// Session ID → owner (see [`owner`]).
    by_session: HashMap<String, Owner>,
    /// Live sessions per owner.
    count: HashMap<Owner, usize>,
}

impl Owners {
    fn remove(&mut self, id: &str) {
        if let Some(owner) = self.by_session.remove(id)
            && let Some(n) = self.count.get_mut(&owner)
        {
            *n -= 1;
            if *n == 0 {
                self.count.remove(&owner);
            }
        }
    }
}

/// Who may use a session: the token's issuer and subject (or client, for
/// tokens without a subject); `None` on an endpoint without `[auth]`.
pub type Owner = Option<String>;

/// Owner entries kept before the first pruning.
const FIRST_PRUNE: usize = 1024;

/// Sessions one caller may hold open at once: each holds a task and
/// buffers in the host until it is closed or idles out.
pub const MAX_SESSIONS_PER_CALLER: usize = 64;

/// Sessions all callers of an endpoint without `[auth]` may hold (they
/// are one owner: nobody is known).
pub const MAX_ANONYMOUS_SESSIONS: usize = 4096;

/// The owner a request's caller would have.
pub fn owner(caller: Option<&Caller>) -> Owner {
    caller.map(|c| match (&c.subject, &c.client_id) {
        (subject, _) if !subject.is_empty() => format!("iss:{} sub:{subject}", c.issuer),
        (_, Some(client)) => format!("iss:{} client:{client}", c.issuer),
        // A token with neither: it owns sessions only with tokens alike.
        _ => format!("iss:{}", c.issuer),
    })
}

impl Sessions {
    /// Owners of the sessions `manager` creates.
    pub fn new(manager: Arc<LocalSessionManager>) -> Self {
        Sessions {
            manager,
            owners: Mutex::new(Owners::default()),
            prune_at: Mutex::new(FIRST_PRUNE),
        }
    }

    /// Whether `id` is a live session of `owner`.
    pub async fn belongs(&self, id: &str, owner: &Owner) -> bool {
        let known = self
            .owners
            .lock()
            .expect("session owners")
            .by_session
            .get(id)
            == Some(owner);
        if !known {
            return false;
        }
        if self
            .manager
            .has_session(&Arc::from(id))
            .await
            .unwrap_or(false)
        {
            return true;
        }
        self.ended(id);
        false
    }

    /// Whether `owner` holds as many sessions as a caller may; its ended
    /// sessions are forgotten first.
    pub async fn full(&self, owner: &Owner) -> bool {
        let cap = match owner {
            Some(_) => MAX_SESSIONS_PER_CALLER,
            None => MAX_ANONYMOUS_SESSIONS,
        };
        let held = |sessions: &Self| {
            sessions
                .owners
                .lock()
                .expect("session owners")
                .count
                .get(owner)
                .copied()
                .unwrap_or(0)
        };
        if held(self) < cap {
            return false;
        }
        self.prune().await;
        held(self) >= cap
    }

    /// Records that `owner` created session `id`.
    pub async fn created(&self, id: String, owner: Owner) {
        let size = {
            let mut owners = self.owners.lock().expect("session owners");
            *owners.count.entry(owner.clone()).or_default() += 1;
            owners.by_session.insert(id, owner);
            owners.by_session.len()
        };
        let due = size >= *self.prune_at.lock().expect("session prune mark");
        if due {
            self.prune().await;
        }
    }

    /// Forgets session `id` (closed, or found ended).
    pub fn ended(&self, id: &str) {
        self.owners.lock().expect("session owners").remove(id);
    }

    /// Forgets the owners of sessions that ended while idle; the next
    /// pruning waits until the map has doubled, so the cost per session
    /// created stays constant.
    async fn prune(&self) {
        let ids: Vec<String> = self
            .owners
            .lock()
            .expect("session owners")
            .by_session
            .keys()
            .cloned()
            .collect();
        for id in ids {
            if !self
                .manager
                .has_session(&Arc::from(id.as_str()))
                .await
                .unwrap_or(false)
            {
                self.ended(&id);
            }
        }
        let size = self.owners.lock().expect("session owners").by_session.len();
        *self.prune_at.lock().expect("session prune mark") = (size * 2).max(FIRST_PRUNE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(issuer: &str, subject: &str, client: Option<&str>) -> Caller {
        Caller {
            issuer: issuer.into(),
            subject: subject.into(),
            client_id: client.map(str::to_string),
            ..Caller::default()
        }
    }

    #[test]
    fn owners_differ_by_issuer_subject_and_client() {
        let alice = owner(Some(&caller("https://a", "alice", None)));
        assert_eq!(
            alice,
            owner(Some(&caller("https://a", "alice", Some("app"))))
        );
        assert_ne!(alice, owner(Some(&caller("https://a", "bob", None))));
        assert_ne!(alice, owner(Some(&caller("https://b", "alice", None))));
        assert_ne!(
            owner(Some(&caller("https://a", "", Some("app1")))),
            owner(Some(&caller("https://a", "", Some("app2"))))
        );
        assert_eq!(owner(None), None);
    }
}
