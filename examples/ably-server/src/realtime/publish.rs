//! Client MESSAGE and PRESENCE frames. The same rules as REST apply
//! (`publish::prepare`), plus channel modes: on a channel attached without
//! the PUBLISH (or PRESENCE) mode the capability would allow, the frame is
//! refused with 40165, as Ably does. Publishing needs no attachment (RTL6c5);
//! a `[?…]`-qualified name publishes to its channel.

use super::session::Session;
use crate::app::now_ms;
use crate::capability::op;
use crate::channel::Origin;
use crate::channel_name;
use crate::connection::{ConnectionState, Outcome};
use crate::error::AblyError;
use crate::message::{presence_action, PresenceMessage};
use crate::message_id::random_base;
use crate::protocol::{flag, ProtocolMessage, PublishResult};
use crate::publish;
use crate::stats::Stats;

impl Session {
    fn origin(&self, msg_serial: Option<i64>) -> Origin {
        Origin {
            connection_id: Some(self.id().to_string()),
            protocol_id: msg_serial.map(|s| format!("{}:{s}", self.id())),
        }
    }

    /// 40165 when `name` is attached without `mode` although the capability
    /// would allow `operation` (without the capability, that check answers).
    fn require_mode(state: &ConnectionState, name: &str, channel: &str, mode: i64, operation: &str) -> Result<(), AblyError> {
        let attached_without = state.attachments.get(name).is_some_and(|a| a.modes & mode == 0);
        if attached_without && state.principal.capability.allows(channel, operation) {
            return Err(AblyError::new(
                40165,
                401,
                format!("Unable to {operation} on channel \"{channel}\": the {operation} mode was not requested when attaching"),
            ));
        }
        Ok(())
    }

    pub(super) fn publish(&self, state: &mut ConnectionState, pm: ProtocolMessage) -> Outcome {
        let name = pm.channel.unwrap_or_default();
        let origin = self.origin(pm.msg_serial);
        let result = channel_name::parse_qualified(&name).and_then(|q| {
            Self::require_mode(state, &name, &q.channel, flag::PUBLISH, op::PUBLISH)?;
            publish::check_params(pm.params.iter().flat_map(|p| p.keys()))?;
            let prepared = publish::prepare(
                &q.channel,
                pm.messages.unwrap_or_default(),
                &state.principal,
                self.app.settings.max_message_size,
                origin.protocol_id.clone(),
            )?;
            let count = prepared.messages.len();
            let published = self.app.channels.with(&q.channel, |c| c.publish(prepared, &origin, now_ms()))?;
            if !published.duplicate {
                Stats::bump(&self.app.stats.messages_stored, count as u64);
            }
            tracing::debug!(connection_id = %self.id(), channel = q.channel, "realtime publish");
            Ok(published)
        });
        match result {
            Ok(published) => Outcome::Ack(Some(PublishResult { serials: published.serials })),
            Err(e) => Outcome::Nack(e),
        }
    }

    pub(super) fn presence(&self, state: &mut ConnectionState, pm: ProtocolMessage) -> Outcome {
        let name = pm.channel.unwrap_or_default();
        let origin = self.origin(pm.msg_serial);
        let now = now_ms();
        let prepared = (|| -> Result<(String, Vec<PresenceMessage>), AblyError> {
            let channel = channel_name::parse_qualified(&name)?.channel;
            state.principal.require(&channel, op::PRESENCE)?;
            Self::require_mode(state, &name, &channel, flag::PRESENCE, op::PRESENCE)?;
            let events = pm.presence.unwrap_or_default();
            let size: usize = events.iter().map(PresenceMessage::size).sum();
            if size > self.app.settings.max_message_size {
                return Err(AblyError::message_too_large(size, self.app.settings.max_message_size));
            }
            let events = events
                .into_iter()
                .map(|mut e| {
                    let client_id = state.principal.client_id_for(e.client_id.as_deref())?.ok_or_else(|| {
                        AblyError::invalid_client_id("Presence requires an identified client (a clientId)")
                    })?;
                    match e.action {
                        Some(presence_action::ENTER | presence_action::UPDATE | presence_action::LEAVE) => {}
                        Some(presence_action::PRESENT) => e.action = Some(presence_action::ENTER),
                        other => return Err(AblyError::bad_request(format!("Invalid presence action {other:?}"))),
                    }
                    e.client_id = Some(client_id);
                    e.connection_id = Some(self.id().to_string());
                    e.timestamp = Some(now);
                    Ok(e)
                })
                .collect::<Result<_, _>>()?;
            Ok((channel, events))
        })();
        match prepared {
            Ok((channel, events)) => {
                tracing::debug!(connection_id = %self.id(), channel, count = events.len(), "presence");
                let id_base = origin.protocol_id.clone().unwrap_or_else(|| format!("{}:{}", self.id(), random_base()));
                self.app.channels.with(&channel, |c| c.presence(events, &id_base, &origin, now));
                state.present_in.insert(channel);
                Outcome::Ack(None)
            }
            Err(e) => Outcome::Nack(e),
        }
    }
}
