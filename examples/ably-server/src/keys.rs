//! The API keys this server accepts, from `--key` flags of the form
//! `appId.keyId:secret` optionally followed by `=<capability JSON>`.
//! Secrets stay in this module's structs and are never logged or displayed.

use std::collections::HashMap;

use crate::capability::Capability;
use crate::error::AblyError;

#[derive(Clone)]
pub struct ApiKey {
    /// `appId.keyId`, the public half.
    pub name: String,
    secret: String,
    pub capability: Capability,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey").field("name", &self.name).field("capability", &self.capability).finish()
    }
}

impl ApiKey {
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Parses a `--key` value.
    pub fn parse_spec(spec: &str) -> Result<ApiKey, String> {
        let (key, capability) = match spec.split_once('=') {
            Some((key, cap)) => {
                let cap = Capability::parse(cap).map_err(|e| format!("bad capability in --key: {}", e.message))?;
                (key, cap)
            }
            None => (spec, Capability::default()),
        };
        let (name, secret) = key
            .split_once(':')
            .ok_or_else(|| "a key must look like appId.keyId:secret".to_string())?;
        let valid_name = name.split_once('.').is_some_and(|(app, id)| !app.is_empty() && !id.is_empty());
        if !valid_name || secret.is_empty() {
            return Err("a key must look like appId.keyId:secret".to_string());
        }
        Ok(ApiKey { name: name.to_string(), secret: secret.to_string(), capability })
    }
}

#[derive(Debug, Default)]
pub struct KeyStore {
    keys: HashMap<String, ApiKey>,
}

impl KeyStore {
    pub fn new(keys: Vec<ApiKey>) -> Self {
        Self { keys: keys.into_iter().map(|k| (k.name.clone(), k)).collect() }
    }

    pub fn get(&self, name: &str) -> Option<&ApiKey> {
        self.keys.get(name)
    }

    /// Checks a full `keyName:secret` pair.
    pub fn verify(&self, name: &str, secret: &str) -> Result<&ApiKey, AblyError> {
        match self.keys.get(name) {
            Some(k) if constant_time_eq(k.secret.as_bytes(), secret.as_bytes()) => Ok(k),
            Some(_) => Err(AblyError::invalid_credentials("Invalid credentials: key secret does not match")),
            None => Err(AblyError::invalid_credentials(format!("Invalid credentials: key \"{name}\" not found"))),
        }
    }

    /// Checks a full `appId.keyId:secret` string.
    pub fn verify_full(&self, full: &str) -> Result<&ApiKey, AblyError> {
        let (name, secret) = full
            .split_once(':')
            .ok_or_else(|| AblyError::invalid_credentials("Invalid credentials: malformed key"))?;
        self.verify(name, secret)
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_specs() {
        let k = ApiKey::parse_spec("app.key:sec:ret").unwrap();
        assert_eq!((k.name.as_str(), k.secret()), ("app.key", "sec:ret"));
        assert_eq!(k.capability, Capability::default());

        let k = ApiKey::parse_spec(r#"app.k2:s2={"chat:*":["subscribe","presence"]}"#).unwrap();
        assert_eq!(k.capability.canonical(), r#"{"chat:*":["presence","subscribe"]}"#);

        for bad in ["nokey", "app:secret", "app.key:", ".k:s", r#"a.b:c={"x":1}"#] {
            assert!(ApiKey::parse_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let k = ApiKey::parse_spec("app.key:topsecret").unwrap();
        assert!(!format!("{k:?}").contains("topsecret"));
    }

    #[test]
    fn verify_checks_name_and_secret() {
        let store = KeyStore::new(vec![ApiKey::parse_spec("app.key:secret").unwrap()]);
        assert!(store.verify_full("app.key:secret").is_ok());
        assert_eq!(store.verify_full("app.key:wrong").unwrap_err().code, 40101);
        assert_eq!(store.verify_full("app.nokey:secret").unwrap_err().code, 40101);
        assert_eq!(store.verify_full("garbage").unwrap_err().code, 40101);
    }
}
