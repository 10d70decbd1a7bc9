//! The two wire encodings Ably speaks, JSON and msgpack, behind one enum so that
//! REST bodies and WebSocket frames are decoded and encoded the same way.
//! Decoding never panics: malformed input becomes a 40001 error.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::AblyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Msgpack,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Msgpack => "application/x-msgpack",
        }
    }

    /// Parses the `format` query/connection parameter (`json` or `msgpack`).
    pub fn from_param(value: &str) -> Option<Format> {
        match value {
            "json" => Some(Format::Json),
            "msgpack" => Some(Format::Msgpack),
            _ => None,
        }
    }

    /// Picks the format named by a media type such as an `Accept` or
    /// `Content-Type` value; anything that does not mention msgpack is JSON.
    pub fn from_media_type(value: &str) -> Format {
        if value.contains("msgpack") {
            Format::Msgpack
        } else {
            Format::Json
        }
    }

    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, AblyError> {
        match self {
            Format::Json => serde_json::to_vec(value)
                .map_err(|e| AblyError::internal(format!("Unable to encode JSON response: {e}"))),
            // Named (map) encoding: ably-js reads msgpack maps, never struct arrays.
            Format::Msgpack => rmp_serde::to_vec_named(value)
                .map_err(|e| AblyError::internal(format!("Unable to encode msgpack response: {e}"))),
        }
    }

    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, AblyError> {
        match self {
            Format::Json => serde_json::from_slice(bytes)
                .map_err(|e| AblyError::invalid_body(format!("Unable to parse JSON body: {e}"))),
            Format::Msgpack => rmp_serde::from_slice(bytes)
                .map_err(|e| AblyError::invalid_body(format!("Unable to parse msgpack body: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let r: Result<serde_json::Value, _> = Format::Msgpack.decode(&[0xc1, 0xff, 0x00]);
        assert_eq!(r.unwrap_err().code, 40001);
        let r: Result<serde_json::Value, _> = Format::Json.decode(b"{\"a\":");
        assert_eq!(r.unwrap_err().code, 40001);
    }

    #[test]
    fn media_types_pick_the_format() {
        assert_eq!(Format::from_media_type("application/x-msgpack"), Format::Msgpack);
        assert_eq!(Format::from_media_type("application/json"), Format::Json);
        assert_eq!(Format::from_media_type("*/*"), Format::Json);
    }
}
