//! ProtocolMessage, the unit of the realtime protocol (one per WebSocket
//! frame), with its action codes and flag bits (§B3–B5). Unknown fields and
//! actions from clients are tolerated; empty fields are omitted on output.
//! Channels build the frames they deliver with these types and connections
//! decode what clients send with them, so both sides share this one module.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::capability::{op, Capability};
use crate::error::ErrorInfo;
use crate::lenient;
use crate::message::{Message, PresenceMessage};

pub mod action {
    pub const HEARTBEAT: i64 = 0;
    pub const ACK: i64 = 1;
    pub const NACK: i64 = 2;
    pub const CONNECTED: i64 = 4;
    pub const DISCONNECT: i64 = 5;
    pub const DISCONNECTED: i64 = 6;
    pub const CLOSE: i64 = 7;
    pub const CLOSED: i64 = 8;
    pub const ERROR: i64 = 9;
    pub const ATTACH: i64 = 10;
    pub const ATTACHED: i64 = 11;
    pub const DETACH: i64 = 12;
    pub const DETACHED: i64 = 13;
    pub const PRESENCE: i64 = 14;
    pub const MESSAGE: i64 = 15;
    pub const SYNC: i64 = 16;
    pub const AUTH: i64 = 17;
    pub const OBJECT: i64 = 19;
    pub const ANNOTATION: i64 = 21;
}

pub mod flag {
    pub const HAS_PRESENCE: i64 = 1;
    /// On ATTACHED: backlog (rewind) messages follow.
    pub const HAS_BACKLOG: i64 = 2;
    pub const RESUMED: i64 = 4;
    /// On ATTACH (ably-js ≤ 2.26): a re-attach, not an initial attach.
    pub const ATTACH_RESUME: i64 = 32;
    pub const PRESENCE: i64 = 1 << 16;
    pub const PUBLISH: i64 = 1 << 17;
    pub const SUBSCRIBE: i64 = 1 << 18;
    pub const PRESENCE_SUBSCRIBE: i64 = 1 << 19;
    /// The channel modes this server knows how to honour.
    pub const MODES: i64 = PRESENCE | PUBLISH | SUBSCRIBE | PRESENCE_SUBSCRIBE;
}

/// The mode names of `params.modes` and their flag bits.
pub const MODE_NAMES: [(&str, i64); 4] = [
    ("presence", flag::PRESENCE),
    ("publish", flag::PUBLISH),
    ("subscribe", flag::SUBSCRIBE),
    ("presence_subscribe", flag::PRESENCE_SUBSCRIBE),
];

/// Channel modes a capability grants on `channel`. Presence subscription
/// comes with `subscribe`, as in Ably.
pub fn modes_for(capability: &Capability, channel: &str) -> i64 {
    let mut modes = 0;
    if capability.allows(channel, op::PUBLISH) {
        modes |= flag::PUBLISH;
    }
    if capability.allows(channel, op::SUBSCRIBE) {
        modes |= flag::SUBSCRIBE | flag::PRESENCE_SUBSCRIBE;
    }
    if capability.allows(channel, op::PRESENCE) {
        modes |= flag::PRESENCE;
    }
    modes
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionDetails {
    pub connection_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub max_message_size: usize,
    pub max_frame_size: usize,
    pub max_inbound_rate: u32,
    pub connection_state_ttl: u64,
    pub max_idle_interval: u64,
    pub server_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishResult {
    pub serials: Vec<Option<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthDetails {
    #[serde(default)]
    pub access_token: Option<String>,
}

impl Serialize for AuthDetails {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Never echo a token back out.
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMessage {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub action: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_i64")]
    pub flags: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_details: Option<ConnectionDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_i64")]
    pub msg_serial: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_i64")]
    pub count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_i64")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Vec<PresenceMessage>>,
    #[serde(default, skip_serializing)]
    pub auth: Option<AuthDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub res: Option<Vec<PublishResult>>,
}

impl ProtocolMessage {
    pub fn new(action: i64) -> Self {
        Self { action: Some(action), ..Default::default() }
    }

    pub fn channel_error(channel: &str, error: ErrorInfo) -> Self {
        Self { channel: Some(channel.to_string()), error: Some(error), ..Self::new(action::ERROR) }
    }

    /// A frame about `channel` at position `channel_serial`: the common part
    /// of ATTACHED, MESSAGE, PRESENCE and DETACHED.
    pub fn for_channel(action: i64, channel: &str, channel_serial: Option<String>) -> Self {
        Self { channel: Some(channel.to_string()), channel_serial, ..Self::new(action) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;

    #[test]
    fn decodes_an_ably_js_publish_frame() {
        let text = r#"{"action":15,"channel":"test:chan","messages":[{"name":"evt","data":"{\"hello\":\"world\"}","encoding":"json","action":0,"size":20}],"msgSerial":0}"#;
        let pm: ProtocolMessage = Format::Json.decode(text.as_bytes()).unwrap();
        assert_eq!(pm.action, Some(action::MESSAGE));
        assert_eq!(pm.msg_serial, Some(0));
        assert_eq!(pm.messages.unwrap()[0].name.as_deref(), Some("evt"));
    }

    #[test]
    fn omits_empty_fields_and_never_echoes_tokens() {
        let pm = ProtocolMessage { auth: Some(AuthDetails { access_token: Some("t".into()) }), ..ProtocolMessage::new(action::HEARTBEAT) };
        assert_eq!(String::from_utf8(Format::Json.encode(&pm).unwrap()).unwrap(), r#"{"action":0}"#);
    }

    #[test]
    fn modes_follow_capabilities() {
        let c = Capability::parse(r#"{"chat:*":["subscribe","presence"]}"#).unwrap();
        assert_eq!(modes_for(&c, "chat:a"), flag::SUBSCRIBE | flag::PRESENCE_SUBSCRIBE | flag::PRESENCE);
        assert_eq!(modes_for(&c, "other"), 0);
        assert_eq!(modes_for(&Capability::default(), "x"), 983_040);
    }
}
