//! Channel-name rules enforced before anything touches a channel: not empty,
//! not starting with `[` (channel qualifiers are not supported) or `:`, and no
//! line breaks. Violations are 40010.

use crate::error::AblyError;

pub fn validate(name: &str) -> Result<(), AblyError> {
    let why = if name.is_empty() {
        "channel name must not be empty"
    } else if name.starts_with('[') {
        "channel qualifiers ([...]) are not supported"
    } else if name.starts_with(':') {
        "channel name must not start with ':'"
    } else if name.contains(['\n', '\r']) {
        "channel name must not contain a line break"
    } else {
        return Ok(());
    };
    Err(AblyError::invalid_channel_name(format!("Invalid channel name \"{}\": {why}", name.escape_debug())))
}

#[cfg(test)]
mod tests {
    use super::validate;

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
}
