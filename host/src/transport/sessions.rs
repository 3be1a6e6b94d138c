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
    /// Session ID → owner (see [`owner`]).
    owners: Mutex<HashMap<String, Owner>>,
    /// Prune ended sessions' owners once the map grows past this.
    prune_at: Mutex<usize>,
}

/// Who may use a session: the token's issuer and subject (or client, for
/// tokens without a subject); `None` on an endpoint without `[auth]`.
type Owner = Option<String>;

/// Owner entries kept before the first pruning.
const FIRST_PRUNE: usize = 1024;

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
            owners: Mutex::new(HashMap::new()),
            prune_at: Mutex::new(FIRST_PRUNE),
        }
    }

    /// Whether `id` is a live session of `owner`.
    pub async fn belongs(&self, id: &str, owner: &Owner) -> bool {
        let known = self.owners.lock().expect("session owners").get(id) == Some(owner);
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

    /// Records that `owner` created session `id`.
    pub async fn created(&self, id: String, owner: Owner) {
        let size = {
            let mut owners = self.owners.lock().expect("session owners");
            owners.insert(id, owner);
            owners.len()
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
        let size = self.owners.lock().expect("session owners").len();
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
