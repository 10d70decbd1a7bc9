//! Capabilities: which operations a key or token may perform on which channels.
//! Resources are `*` (every channel), `prefix*` such as `ns:*` (every channel
//! starting with `prefix`) or an exact channel name; the operation `*` means
//! every operation and stands alone. Operation names are Ably's; an unknown
//! one is refused (400), as Ably does. Canonical text has sorted resources and
//! sorted operations.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::AblyError;

pub mod op {
    pub const PUBLISH: &str = "publish";
    pub const SUBSCRIBE: &str = "subscribe";
    pub const PRESENCE: &str = "presence";
    pub const HISTORY: &str = "history";

    /// Every operation Ably knows (ably-js `capabilityOp`), plus `*`.
    pub const KNOWN: [&str; 18] = [
        "*",
        PUBLISH,
        SUBSCRIBE,
        PRESENCE,
        HISTORY,
        "object-subscribe",
        "object-publish",
        "annotation-subscribe",
        "annotation-publish",
        "message-update-any",
        "message-update-own",
        "message-delete-any",
        "message-delete-own",
        "stats",
        "channel-metadata",
        "push-subscribe",
        "push-admin",
        "privileged-headers",
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability(BTreeMap<String, BTreeSet<String>>);

impl Default for Capability {
    /// Everything allowed, the default for a key without an explicit capability.
    fn default() -> Self {
        Capability::parse(r#"{"*":["*"]}"#).expect("literal capability is valid")
    }
}

/// Does `resource` (possibly a wildcard) cover the channel or resource `name`?
/// A wildcard resource covers another wildcard when its prefix is a prefix of it.
fn covers(resource: &str, name: &str) -> bool {
    match resource.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => resource == name,
    }
}

fn intersect_ops(a: &BTreeSet<String>, b: &BTreeSet<String>) -> BTreeSet<String> {
    if a.contains("*") {
        b.clone()
    } else if b.contains("*") {
        a.clone()
    } else {
        a.intersection(b).cloned().collect()
    }
}

impl Capability {
    /// Parses capability JSON text: an object mapping resources to arrays of
    /// operation names. Anything else is 40003 (never a panic).
    pub fn parse(text: &str) -> Result<Capability, AblyError> {
        let invalid = |why: &str| AblyError::invalid_parameter(format!("Invalid capability: {why}"));
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| invalid("not valid JSON"))?;
        let object = value.as_object().ok_or_else(|| invalid("expected a JSON object"))?;
        let mut map = BTreeMap::new();
        for (resource, ops) in object {
            let ops = ops
                .as_array()
                .ok_or_else(|| invalid("each resource must map to an array of operations"))?;
            let mut set = BTreeSet::new();
            for op in ops {
                let op = op.as_str().ok_or_else(|| invalid("operations must be strings"))?;
                if !op::KNOWN.contains(&op) {
                    return Err(invalid(&format!("unknown operation \"{op}\"")));
                }
                set.insert(op.to_string());
            }
            if set.is_empty() {
                return Err(invalid("empty operation list"));
            }
            if set.len() > 1 && set.contains("*") {
                return Err(invalid("\"*\" must be the only operation of a resource"));
            }
            map.insert(resource.clone(), set);
        }
        if map.is_empty() {
            return Err(invalid("no resources"));
        }
        Ok(Capability(map))
    }

    /// Canonical JSON: no whitespace, sorted resources, sorted operations.
    pub fn canonical(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_string())
    }

    /// May `operation` be performed on `channel`?
    pub fn allows(&self, channel: &str, operation: &str) -> bool {
        self.0.iter().any(|(resource, ops)| {
            covers(resource, channel) && (ops.contains("*") || ops.contains(operation))
        })
    }

    /// Is any operation at all granted on `channel`?
    pub fn allows_any(&self, channel: &str) -> bool {
        self.0.keys().any(|resource| covers(resource, channel))
    }

    /// The part of `requested` that `self` also grants (used to narrow a token
    /// request to its key). `None` when nothing is left.
    pub fn intersect(&self, requested: &Capability) -> Option<Capability> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (req_res, req_ops) in &requested.0 {
            for (key_res, key_ops) in &self.0 {
                let resource = if covers(key_res, req_res) {
                    req_res
                } else if covers(req_res, key_res) {
                    key_res
                } else {
                    continue;
                };
                let ops = intersect_ops(req_ops, key_ops);
                if !ops.is_empty() {
                    out.entry(resource.clone()).or_default().extend(ops);
                }
            }
        }
        (!out.is_empty()).then_some(Capability(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_namespace_and_exact_resources_match() {
        let c = Capability::parse(r#"{"chat:*":["subscribe","presence"],"news":["publish"]}"#).unwrap();
        assert!(c.allows("chat:room1", op::SUBSCRIBE));
        assert!(c.allows("chat:room1", op::PRESENCE));
        assert!(!c.allows("chat:room1", op::PUBLISH));
        assert!(!c.allows("chatroom", op::SUBSCRIBE));
        assert!(c.allows("news", op::PUBLISH));
        assert!(!c.allows("news:x", op::PUBLISH));
        assert!(!c.allows("other", op::SUBSCRIBE));
        assert!(c.allows_any("chat:x"));
        assert!(!c.allows_any("other"));

        let all = Capability::default();
        assert!(all.allows("anything", op::HISTORY));
    }

    #[test]
    fn canonical_text_is_sorted_without_whitespace() {
        let c = Capability::parse(r#"{ "b": ["subscribe", "publish"], "a": ["*"], "c": ["channel-metadata"] }"#).unwrap();
        assert_eq!(c.canonical(), r#"{"a":["*"],"b":["publish","subscribe"],"c":["channel-metadata"]}"#);
    }

    #[test]
    fn intersection_narrows_to_the_key() {
        let key = Capability::parse(r#"{"chat:*":["subscribe","presence"]}"#).unwrap();
        let req = Capability::parse(r#"{"*":["*"]}"#).unwrap();
        assert_eq!(key.intersect(&req).unwrap().canonical(), r#"{"chat:*":["presence","subscribe"]}"#);

        let req = Capability::parse(r#"{"chat:a":["publish","subscribe"]}"#).unwrap();
        assert_eq!(key.intersect(&req).unwrap().canonical(), r#"{"chat:a":["subscribe"]}"#);

        let req = Capability::parse(r#"{"other":["subscribe"]}"#).unwrap();
        assert_eq!(key.intersect(&req), None);

        let all = Capability::default();
        let req = Capability::parse(r#"{"x":["publish"]}"#).unwrap();
        assert_eq!(all.intersect(&req).unwrap(), req);
    }

    #[test]
    fn invalid_capabilities_are_rejected() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"a":"publish"}"#,
            r#"{"a":[]}"#,
            r#"{"a":[1]}"#,
            r#"{"channel0":["publish_"]}"#,
            r#"{"channel0":["*","publish"]}"#,
        ] {
            assert_eq!(Capability::parse(bad).unwrap_err().code, 40003, "{bad}");
        }
    }
}
