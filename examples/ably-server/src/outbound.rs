//! What a connection's writer is asked to send. A frame fanned out to many
//! subscribers is shared (`Arc`) and encoded at most once per wire format,
//! however many connections send it: fan-out costs a queue push, not an encode.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::ws::Utf8Bytes;

use crate::format::Format;
use crate::protocol::ProtocolMessage;

/// One protocol message plus its encodings, made on first use.
#[derive(Debug)]
pub struct Frame {
    pub message: ProtocolMessage,
    json: OnceLock<Option<Utf8Bytes>>,
    msgpack: OnceLock<Option<Bytes>>,
}

/// A frame as it goes on the socket: JSON as a text frame, msgpack as binary.
#[derive(Debug, Clone)]
pub enum Wire {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Frame {
    pub fn new(message: ProtocolMessage) -> Arc<Frame> {
        Arc::new(Frame { message, json: OnceLock::new(), msgpack: OnceLock::new() })
    }

    /// The encoded frame, or `None` (logged) if it cannot be encoded.
    pub fn wire(&self, format: Format) -> Option<Wire> {
        let encode = || match format.encode(&self.message) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(error = %e, "could not encode a protocol message");
                None
            }
        };
        match format {
            Format::Json => self
                .json
                .get_or_init(|| encode().and_then(|b| String::from_utf8(b).ok()).map(Utf8Bytes::from))
                .clone()
                .map(Wire::Text),
            Format::Msgpack => self.msgpack.get_or_init(|| encode().map(Bytes::from)).clone().map(Wire::Binary),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outbound {
    Frame(Arc<Frame>),
    /// Close the WebSocket after everything queued before it was sent.
    Close,
}

impl Outbound {
    pub fn message(pm: ProtocolMessage) -> Outbound {
        Outbound::Frame(Frame::new(pm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::action;

    #[test]
    fn encodes_once_per_format() {
        let frame = Frame::new(ProtocolMessage::new(action::HEARTBEAT));
        let Some(Wire::Text(a)) = frame.wire(Format::Json) else { panic!("json is text") };
        let Some(Wire::Text(b)) = frame.wire(Format::Json) else { panic!("json is text") };
        assert_eq!(a.as_str(), r#"{"action":0}"#);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the second send reuses the first encoding");
        assert!(matches!(frame.wire(Format::Msgpack), Some(Wire::Binary(_))));
    }
}
