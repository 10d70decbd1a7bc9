//! The presence set of one channel: the members currently entered, keyed by
//! (connectionId, clientId). Members are stored with action PRESENT, the form
//! SYNC and REST `presence.get` report them in, and keep the id of the event
//! that made them so, which lets a re-entry after a resume be recognised.

use std::collections::BTreeMap;

use crate::message::{presence_action, PresenceMessage};

#[derive(Debug, Default)]
pub struct PresenceSet {
    members: BTreeMap<(String, String), PresenceMessage>,
}

impl PresenceSet {
    /// Applies an ENTER / UPDATE / PRESENT / LEAVE event that already carries
    /// its connectionId and clientId. A LEAVE without data takes the member's
    /// last data, as synthesised leaves do.
    pub fn apply(&mut self, event: &mut PresenceMessage) {
        let key = (
            event.connection_id.clone().unwrap_or_default(),
            event.client_id.clone().unwrap_or_default(),
        );
        if event.action == Some(presence_action::LEAVE) {
            if let Some(member) = self.members.remove(&key) {
                if event.data.is_none() {
                    event.data = member.data;
                    event.encoding = member.encoding;
                }
            }
        } else {
            let mut member = event.clone();
            member.action = Some(presence_action::PRESENT);
            self.members.insert(key, member);
        }
    }

    /// Is `id` the event that made (connection, client) the member it is now?
    /// ably-js re-sends a member's own ENTER, with its id, after a resume.
    pub fn is_current(&self, connection_id: &str, client_id: &str, id: &str) -> bool {
        self.members
            .get(&(connection_id.to_string(), client_id.to_string()))
            .is_some_and(|m| m.id.as_deref() == Some(id))
    }

    pub fn members(&self) -> Vec<PresenceMessage> {
        self.members.values().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Removes and returns every member entered by `connection_id`.
    pub fn remove_connection(&mut self, connection_id: &str) -> Vec<PresenceMessage> {
        let keys: Vec<_> = self.members.keys().filter(|(c, _)| c == connection_id).cloned().collect();
        keys.into_iter().filter_map(|k| self.members.remove(&k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: i64, conn: &str, client: &str) -> PresenceMessage {
        PresenceMessage {
            action: Some(action),
            connection_id: Some(conn.into()),
            client_id: Some(client.into()),
            ..Default::default()
        }
    }

    #[test]
    fn enter_update_leave_and_connection_removal() {
        let mut set = PresenceSet::default();
        set.apply(&mut event(presence_action::ENTER, "c1", "alice"));
        set.apply(&mut event(presence_action::ENTER, "c1", "bob"));
        let mut update = event(presence_action::UPDATE, "c2", "alice");
        update.data = Some(crate::message::Data::String("busy".into()));
        set.apply(&mut update);
        assert_eq!(set.members().len(), 3);
        assert!(set.members().iter().all(|m| m.action == Some(presence_action::PRESENT)));
        let mut leave = event(presence_action::LEAVE, "c2", "alice");
        set.apply(&mut leave);
        assert_eq!(leave.data, Some(crate::message::Data::String("busy".into())));
        assert_eq!(set.members().len(), 2);
        assert!(!set.is_current("c1", "alice", "x"));
        let gone = set.remove_connection("c1");
        assert_eq!(gone.len(), 2);
        assert!(set.is_empty());
    }
}
