//! ATTACH, DETACH and SYNC requests, and keeping attachments within the
//! capability. How an attachment starts is decided here:
//!
//! - a channel this connection already has, with the channelSerial the
//!   client last saw: resumed, with every message after it (§B14);
//! - otherwise from now, after a `rewind` backlog if one is asked for on an
//!   initial attach (no channelSerial, no ATTACH_RESUME flag).
//!
//! Modes are what the capability grants, narrowed to what the client asks
//! (`params.modes` first, else the mode flags); a denied channel, a bad name
//! or an unsupported param fails that channel only.

use super::session::Session;
use crate::app::now_ms;
use crate::capability::op;
use crate::channel::{parse_serial, Attach, Start, Subscriber};
use crate::channel_name::{self, Qualified};
use crate::channel_params;
use crate::connection::{Attachment, ConnectionState};
use crate::error::AblyError;
use crate::protocol::{action, flag, modes_for, ProtocolMessage};

impl Session {
    fn channel_error(&self, name: &str, error: AblyError) {
        tracing::debug!(connection_id = %self.id(), channel = name, code = error.code, "channel refused");
        self.send(ProtocolMessage::channel_error(name, error.info()));
    }

    pub(super) fn attach(&self, state: &mut ConnectionState, pm: ProtocolMessage) {
        let Some(name) = pm.channel else { return };
        let Qualified { channel, mut params } = match channel_name::parse_qualified(&name) {
            Ok(q) => q,
            Err(e) => return self.channel_error(&name, e),
        };
        if !state.principal.capability.allows_any(&channel) {
            // A resume may have brought a narrower token: the old attachment ends too.
            if state.attachments.remove(&name).is_some() {
                self.app.channels.with(&channel, |c| c.detach(self.id(), &name, now_ms()));
            }
            let e = AblyError::capability_denied(format!(
                "Channel denied access based on given capability (channel \"{channel}\")"
            ));
            return self.channel_error(&name, e);
        }
        params.extend(pm.params.unwrap_or_default());
        let options = match channel_params::parse(&params) {
            Ok(o) => o,
            Err(e) => return self.channel_error(&name, e),
        };
        let granted = modes_for(&state.principal.capability, &channel);
        let requested = options.modes.or_else(|| pm.flags.map(|f| f & flag::MODES).filter(|f| *f != 0));
        let modes = requested.map_or(granted, |r| granted & r);
        let reattach = pm.channel_serial.is_some() || pm.flags.is_some_and(|f| f & flag::ATTACH_RESUME != 0);
        let known = state.attachments.contains_key(&name);
        let start = match (known, pm.channel_serial.as_deref().and_then(parse_serial), options.rewind) {
            (true, Some(seq), _) => Start::After(seq),
            (_, _, Some(rewind)) if !reattach => Start::Rewind(rewind),
            _ => Start::Now,
        };
        tracing::debug!(connection_id = %self.id(), channel = name, modes, ?start, "attach");
        let subscriber = Subscriber { tx: Some(self.tx.clone()), modes, echo: state.echo };
        self.app.channels.with(&channel, |c| {
            c.attach(Attach { connection_id: self.id(), name: &name, subscriber, start, params: options.echo })
        });
        state.attachments.insert(name, Attachment { channel, modes });
    }

    pub(super) fn detach(&self, state: &mut ConnectionState, pm: ProtocolMessage) {
        let Some(name) = pm.channel else { return };
        if let Some(attachment) = state.attachments.remove(&name) {
            self.app.channels.with(&attachment.channel, |c| c.detach(self.id(), &name, now_ms()));
        }
        self.send(ProtocolMessage::for_channel(action::DETACHED, &name, None));
    }

    /// A client asking for the presence set again.
    pub(super) fn sync(&self, state: &ConnectionState, pm: ProtocolMessage) {
        let Some(name) = pm.channel else { return };
        if let Some(attachment) = state.attachments.get(&name) {
            let sync = self.app.channels.with(&attachment.channel, |c| c.sync_message(&name));
            self.send(sync);
        }
    }

    /// After re-authentication: attachments to channels the capability no
    /// longer covers end (channel ERROR 40160, the client's channel fails),
    /// the others lose the modes it no longer grants, and presence goes
    /// where presence is no longer allowed.
    pub(super) fn enforce_capability(&self, state: &mut ConnectionState) {
        let capability = state.principal.capability.clone();
        let now = now_ms();
        let names: Vec<String> = state.attachments.keys().cloned().collect();
        for name in names {
            let Some(attachment) = state.attachments.get_mut(&name) else { continue };
            let channel = attachment.channel.clone();
            if !capability.allows_any(&channel) {
                state.attachments.remove(&name);
                self.app.channels.with(&channel, |c| c.detach(self.id(), &name, now));
                self.channel_error(
                    &name,
                    AblyError::capability_denied(format!(
                        "Channel access withdrawn: the new token's capability does not cover \"{channel}\""
                    )),
                );
                continue;
            }
            let modes = attachment.modes & modes_for(&capability, &channel);
            if modes != attachment.modes {
                attachment.modes = modes;
                self.app.channels.with(&channel, |c| c.restrict(self.id(), &name, modes));
            }
        }
        let (keep, gone): (Vec<String>, Vec<String>) =
            std::mem::take(&mut state.present_in).into_iter().partition(|c| capability.allows(c, op::PRESENCE));
        state.present_in = keep.into_iter().collect();
        self.app.channels.each(&gone, |c| c.leave_connection(self.id(), now));
    }
}
