//! Message and PresenceMessage as they travel on the wire and sit in history.
//! Payloads keep the form they were published in (string, binary or raw JSON);
//! only when written as JSON is binary data base64'd, with `base64` appended to
//! `encoding`, so msgpack and JSON clients read each other's binary payloads.

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lenient;

/// A message payload, in the shape it arrived in.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    String(String),
    Binary(Vec<u8>),
    /// A raw JSON value in a JSON body (SDKs stringify instead; DOCS allow it).
    Json(serde_json::Value),
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // rmpv::Value keeps the msgpack bin/str distinction that serde_json::Value loses.
        let value = rmpv::Value::deserialize(d)?;
        Ok(match value {
            rmpv::Value::String(s) => match s.into_str() {
                Some(s) => Data::String(s),
                None => return Err(serde::de::Error::custom("data is not valid UTF-8")),
            },
            rmpv::Value::Binary(b) => Data::Binary(b),
            other => Data::Json(
                serde_json::to_value(&other).map_err(serde::de::Error::custom)?,
            ),
        })
    }
}

/// `data` + `encoding` as written for one format: binary becomes base64 in JSON.
fn payload_for_wire<'a>(
    data: &'a Option<Data>,
    encoding: &'a Option<String>,
    human_readable: bool,
) -> (Option<WireData<'a>>, Option<String>) {
    match data {
        Some(Data::Binary(bytes)) if human_readable => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            let encoding = match encoding.as_deref() {
                Some(e) if !e.is_empty() => format!("{e}/base64"),
                _ => "base64".to_string(),
            };
            (Some(WireData::Text(std::borrow::Cow::Owned(encoded))), Some(encoding))
        }
        Some(Data::Binary(bytes)) => (Some(WireData::Bytes(bytes)), encoding.clone()),
        Some(Data::String(s)) => (Some(WireData::Text(std::borrow::Cow::Borrowed(s))), encoding.clone()),
        Some(Data::Json(v)) => (Some(WireData::Json(v)), encoding.clone()),
        None => (None, encoding.clone()),
    }
}

enum WireData<'a> {
    Text(std::borrow::Cow<'a, str>),
    Bytes(&'a [u8]),
    Json(&'a serde_json::Value),
}

impl Serialize for WireData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WireData::Text(t) => s.serialize_str(t),
            WireData::Bytes(b) => s.serialize_bytes(b),
            WireData::Json(v) => v.serialize(s),
        }
    }
}

/// Size of a payload per §A6: binary counts raw bytes (also when it arrived
/// base64'd over JSON), strings their UTF-8 length, JSON its stringified length.
fn data_size(data: &Option<Data>, encoding: &Option<String>) -> usize {
    match data {
        None => 0,
        Some(Data::Binary(b)) => b.len(),
        Some(Data::Json(v)) => v.to_string().len(),
        Some(Data::String(s)) => {
            let base64_last = encoding.as_deref().and_then(|e| e.rsplit('/').next()) == Some("base64");
            if base64_last {
                if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(s) {
                    return raw.len();
                }
            }
            s.len()
        }
    }
}

/// A channel message.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub data: Option<Data>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub connection_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub extras: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub action: Option<i64>,
    /// Assigned by the server; ignored on input.
    #[serde(skip_deserializing)]
    pub serial: Option<String>,
    /// A REST publish on behalf of a realtime connection (TM2h) names it by
    /// its key here. Consumed by the publish; never stored or sent on.
    #[serde(default)]
    pub connection_key: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<WireData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: &'a Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extras: &'a Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: &'a Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: &'a Option<String>,
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (data, encoding) = payload_for_wire(&self.data, &self.encoding, s.is_human_readable());
        MessageOut {
            id: &self.id,
            name: &self.name,
            data,
            encoding,
            client_id: &self.client_id,
            connection_id: &self.connection_id,
            timestamp: &self.timestamp,
            extras: &self.extras,
            action: &self.action,
            serial: &self.serial,
        }
        .serialize(s)
    }
}

impl Message {
    /// Size counted against `maxMessageSize` (§A6).
    pub fn size(&self) -> usize {
        self.name.as_deref().map_or(0, str::len)
            + self.client_id.as_deref().map_or(0, str::len)
            + data_size(&self.data, &self.encoding)
            + self.extras.as_ref().map_or(0, |e| e.to_string().len())
    }
}

/// Presence actions on the wire (TP2).
pub mod presence_action {
    pub const PRESENT: i64 = 1;
    pub const ENTER: i64 = 2;
    pub const LEAVE: i64 = 3;
    pub const UPDATE: i64 = 4;
}

/// A presence event or member.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceMessage {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub action: Option<i64>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub connection_id: Option<String>,
    #[serde(default)]
    pub data: Option<Data>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub extras: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub timestamp: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PresenceOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: &'a Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<WireData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extras: &'a Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: &'a Option<i64>,
}

impl Serialize for PresenceMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (data, encoding) = payload_for_wire(&self.data, &self.encoding, s.is_human_readable());
        PresenceOut {
            id: &self.id,
            action: &self.action,
            client_id: &self.client_id,
            connection_id: &self.connection_id,
            data,
            encoding,
            extras: &self.extras,
            timestamp: &self.timestamp,
        }
        .serialize(s)
    }
}

impl PresenceMessage {
    /// Size counted against `maxMessageSize`, as for messages (no name).
    pub fn size(&self) -> usize {
        self.client_id.as_deref().map_or(0, str::len)
            + data_size(&self.data, &self.encoding)
            + self.extras.as_ref().map_or(0, |e| e.to_string().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;

    fn msg(json: &str) -> Message {
        Format::Json.decode(json.as_bytes()).unwrap()
    }

    #[test]
    fn size_counts_name_client_id_data_and_extras() {
        let m = msg(r#"{"name":"évt","clientId":"bob","data":"héllo","extras":{"a":1},"size":99}"#);
        // "évt" = 4 bytes, "bob" = 3, "héllo" = 6, {"a":1} = 7
        assert_eq!(m.size(), 4 + 3 + 6 + 7);
    }

    #[test]
    fn size_counts_raw_bytes_of_base64_and_binary_data() {
        let m = msg(r#"{"data":"AAECAw==","encoding":"base64"}"#);
        assert_eq!(m.size(), 4);
        let m = msg(r#"{"data":"AAECAw==","encoding":"utf-8/cipher+aes-128-cbc/base64"}"#);
        assert_eq!(m.size(), 4);
        let m = Message { data: Some(Data::Binary(vec![0; 10])), ..Default::default() };
        assert_eq!(m.size(), 10);
    }

    #[test]
    fn size_counts_stringified_json_data() {
        let m = msg(r#"{"data":{"k":[1,2]}}"#);
        assert_eq!(m.size(), r#"{"k":[1,2]}"#.len());
    }

    #[test]
    fn binary_round_trips_through_msgpack_and_becomes_base64_in_json() {
        let m = Message {
            id: Some("x:0".into()),
            data: Some(Data::Binary(vec![1, 2, 3])),
            encoding: Some("utf-8".into()),
            ..Default::default()
        };
        let packed = Format::Msgpack.encode(&m).unwrap();
        let back: Message = Format::Msgpack.decode(&packed).unwrap();
        assert_eq!(back.data, Some(Data::Binary(vec![1, 2, 3])));
        assert_eq!(back.encoding.as_deref(), Some("utf-8"));

        let json: serde_json::Value =
            serde_json::from_slice(&Format::Json.encode(&m).unwrap()).unwrap();
        assert_eq!(json["data"], "AQID");
        assert_eq!(json["encoding"], "utf-8/base64");
    }

    #[test]
    fn null_fields_and_unknown_fields_are_tolerated() {
        let m = msg(r#"{"name":null,"data":null,"size":2,"action":0,"whatever":{"x":1}}"#);
        assert_eq!(m.name, None);
        assert_eq!(m.data, None);
        assert_eq!(m.action, Some(0));
    }
}
