//! The registry of sessions by client id: sharded, so connects on different client ids do
//! not contend.

use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::Session;
use crate::message::ClientId;

#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: DashMap<ClientId, Arc<Session>>,
}

impl Registry {
    /// The session of `id`, created if there is none. The flag says whether it was created.
    pub(crate) fn get_or_create(&self, id: &ClientId) -> (Arc<Session>, bool) {
        match self.sessions.entry(id.clone()) {
            Entry::Occupied(e) => (e.get().clone(), false),
            Entry::Vacant(e) => {
                let s = Arc::new(Session::new(id.clone()));
                e.insert(s.clone());
                (s, true)
            }
        }
    }

    pub(crate) fn get(&self, id: &ClientId) -> Option<Arc<Session>> {
        self.sessions.get(id).map(|s| s.clone())
    }

    /// Removes the entry for the session's id only if it is this very session.
    pub(crate) fn remove_if_same(&self, s: &Arc<Session>) {
        self.sessions
            .remove_if(&s.client_id, |_, v| Arc::ptr_eq(v, s));
    }

    /// A snapshot of all sessions (for shutdown and metrics).
    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        self.sessions.iter().map(|e| e.value().clone()).collect()
    }
}
