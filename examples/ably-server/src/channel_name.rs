//! Channel-name rules enforced before anything touches a channel: not empty,
//! not starting with `:`, no line breaks (40010). Realtime names may carry a
//! params qualifier, `[?rewind=1]name`, which is split off here; any other
//! qualifier (`[meta]…`, `[filter=…]…`) is refused with 40010, and REST paths
//! take no qualifier at all.

use std::collections::BTreeMap;

use crate::error::AblyError;

fn invalid(name: &str, why: &str) -> AblyError {
    AblyError::invalid_channel_name(format!("Invalid channel name \"{}\": {why}", name.escape_debug()))
}

/// Checks a plain channel name (no qualifier).
pub fn validate(name: &str) -> Result<(), AblyError> {
    let why = if name.is_empty() {
        "channel name must not be empty"
    } else if name.starts_with('[') {
        "channel qualifiers ([...]) are only supported as [?params] on realtime channels"
    } else if name.starts_with(':') {
        "channel name must not start with ':'"
    } else if name.contains(['\n', '\r']) {
        "channel name must not contain a line break"
    } else {
        return Ok(());
    };
    Err(invalid(name, why))
}

/// A realtime channel name split into the channel and its qualifier params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qualified {
    /// The channel itself, e.g. `room` for `[?rewind=1]room`.
    pub channel: String,
    pub params: BTreeMap<String, String>,
}

/// Splits `[?k=v&…]channel` (or a plain name) and validates the channel.
pub fn parse_qualified(name: &str) -> Result<Qualified, AblyError> {
    let Some(rest) = name.strip_prefix('[') else {
        validate(name)?;
        return Ok(Qualified { channel: name.to_string(), params: BTreeMap::new() });
    };
    let Some((qualifier, channel)) = rest.split_once(']') else {
        return Err(invalid(name, "unterminated channel qualifier"));
    };
    let Some(query) = qualifier.strip_prefix('?') else {
        return Err(invalid(name, "only the [?params] qualifier is supported by this local server"));
    };
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| invalid(name, "malformed qualifier params"))?;
    validate(channel)?;
    Ok(Qualified { channel: channel.to_string(), params: params.into_iter().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["a", "chat:room-1", "a/b c", "x[y]", "ns:*"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names_with_40010() {
        for bad in ["", "[meta]x", ":x", "a\nb", "a\rb"] {
            let e = validate(bad).unwrap_err();
            assert_eq!((e.code, e.status), (40010, 400), "{bad:?}");
        }
    }

    #[test]
    fn splits_params_qualifiers_and_refuses_others() {
        let q = parse_qualified("[?rewind=2m&modes=subscribe]chat:a").unwrap();
        assert_eq!(q.channel, "chat:a");
        assert_eq!(q.params.get("rewind").map(String::as_str), Some("2m"));
        assert_eq!(q.params.get("modes").map(String::as_str), Some("subscribe"));
        assert_eq!(parse_qualified("plain").unwrap().params.len(), 0);
        for bad in ["[meta]x", "[?rewind=1", "[?rewind=1]", "[?a=1]:x", "[filter=x]y"] {
            assert_eq!(parse_qualified(bad).unwrap_err().code, 40010, "{bad}");
        }
    }
}
