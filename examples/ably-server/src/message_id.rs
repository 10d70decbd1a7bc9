//! Message-id rules for one publish (§A5): either no message has an id (the
//! server picks a random base), or a single message has any non-empty id, or
//! every message has `<base>:<index>` with index = position. The publish's
//! idempotency key is that base (a lone id without `:0` is its own key).

use base64::Engine;
use rand::RngCore;

use crate::error::AblyError;

/// A fresh random base: 9 random bytes as URL-safe base64 (12 characters, no `:`).
pub fn random_base() -> String {
    let mut bytes = [0u8; 9];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How the ids of one publish were assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPlan {
    /// No client ids: the server names them `<base>:<index>`; nothing to dedupe.
    Generated { base: String },
    /// Client ids: `key` identifies the publish for deduplication and is
    /// reported as `messageId`.
    ClientSupplied { key: String },
}

impl IdPlan {
    pub fn message_id(&self) -> &str {
        match self {
            IdPlan::Generated { base } => base,
            IdPlan::ClientSupplied { key } => key,
        }
    }

    pub fn dedupe_key(&self) -> Option<&str> {
        match self {
            IdPlan::Generated { .. } => None,
            IdPlan::ClientSupplied { key } => Some(key),
        }
    }
}

/// Checks the ids of one publish (`ids[i]` is message i's id) and says how to
/// treat them. Errors are 40031.
pub fn plan(ids: &[Option<&str>]) -> Result<IdPlan, AblyError> {
    if ids.iter().all(Option::is_none) {
        return Ok(IdPlan::Generated { base: random_base() });
    }
    let invalid = |why: String| AblyError::invalid_message_id(format!("Invalid message id: {why}"));
    if ids.iter().any(|id| matches!(id, Some(""))) {
        return Err(invalid("ids must not be empty".into()));
    }
    if let [Some(id)] = ids {
        let key = id.strip_suffix(":0").filter(|base| !base.is_empty()).unwrap_or(id);
        return Ok(IdPlan::ClientSupplied { key: key.to_string() });
    }
    let Some(first) = ids.first().copied().flatten() else {
        return Err(invalid("either all or none of the messages in a publish must have an id".into()));
    };
    let base = match first.strip_suffix(":0") {
        Some(base) if !base.is_empty() => base,
        _ => {
            return Err(invalid(format!(
                "messages published together must have ids <base>:<index>; got \"{first}\" at index 0"
            )))
        }
    };
    for (index, id) in ids.iter().enumerate() {
        let expected = format!("{base}:{index}");
        if *id != Some(expected.as_str()) {
            return Err(invalid(format!(
                "messages published together must share the base \"{base}\"; expected \"{expected}\" at index {index}"
            )));
        }
    }
    Ok(IdPlan::ClientSupplied { key: base.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ids_get_a_generated_base() {
        let p = plan(&[None, None]).unwrap();
        let IdPlan::Generated { base } = &p else { panic!("{p:?}") };
        assert_eq!(base.len(), 12);
        assert!(!base.contains(':'));
        assert_eq!(p.dedupe_key(), None);
    }

    #[test]
    fn shared_base_is_the_dedupe_key() {
        let p = plan(&[Some("abc:0"), Some("abc:1"), Some("abc:2")]).unwrap();
        assert_eq!(p, IdPlan::ClientSupplied { key: "abc".into() });
        assert_eq!(p.message_id(), "abc");
        // A base may itself contain colons.
        let p = plan(&[Some("a:b:0"), Some("a:b:1")]).unwrap();
        assert_eq!(p.dedupe_key(), Some("a:b"));
    }

    #[test]
    fn single_message_may_have_any_id() {
        assert_eq!(plan(&[Some("row-42")]).unwrap().dedupe_key(), Some("row-42"));
        assert_eq!(plan(&[Some("XRVjyzZjkWXO:0")]).unwrap().dedupe_key(), Some("XRVjyzZjkWXO"));
        assert_eq!(plan(&[Some(":0")]).unwrap().dedupe_key(), Some(":0"));
    }

    #[test]
    fn bad_multi_message_ids_are_40031() {
        for ids in [
            vec![Some("a:0"), Some("b:1")],
            vec![Some("a:1"), Some("a:0")],
            vec![Some("a:0"), None],
            vec![None, Some("a:1")],
            vec![Some("x"), Some("y")],
            vec![Some("")],
        ] {
            let e = plan(&ids).unwrap_err();
            assert_eq!((e.code, e.status), (40031, 400), "{ids:?}");
        }
    }
}
