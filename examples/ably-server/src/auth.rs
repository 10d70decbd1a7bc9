//! Turns credentials (Basic key, Bearer token, realtime `key`/`access_token`)
//! into a Principal: the key it derives from, its capability and its clientId.
//! Every REST request and every realtime connection goes through here, so the
//! error codes for bad, unknown and expired credentials are decided once.

use base64::Engine;

use crate::capability::Capability;
use crate::error::AblyError;
use crate::keys::KeyStore;
use crate::token::{TokenProblem, TokenStore};

/// Who is making a request, and what they may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_name: String,
    pub capability: Capability,
    /// The confirmed identity: `None` anonymous, `Some("*")` wildcard.
    pub client_id: Option<String>,
    /// Token expiry; `None` for key (Basic) auth.
    pub expires: Option<i64>,
    pub by_token: bool,
}

impl Principal {
    /// `Ok` if this principal may perform `operation` on `channel`, else 40160.
    pub fn require(&self, channel: &str, operation: &str) -> Result<(), AblyError> {
        if self.capability.allows(channel, operation) {
            Ok(())
        } else {
            Err(AblyError::capability_denied(format!(
                "Action not permitted: no {operation} capability on channel \"{channel}\""
            )))
        }
    }

    /// The clientId a message or presence member gets: the given one if this
    /// principal may use it, else its own identity. 40012 on a mismatch.
    /// Anonymous key holders and wildcard identities may use any clientId.
    pub fn client_id_for(&self, given: Option<&str>) -> Result<Option<String>, AblyError> {
        match (given, self.client_id.as_deref()) {
            (None, Some("*")) | (None, None) => Ok(None),
            (None, Some(own)) => Ok(Some(own.to_string())),
            (Some("*"), _) => Err(AblyError::invalid_client_id("clientId \"*\" cannot be used on a message")),
            (Some(g), Some(own)) if g == own => Ok(Some(g.to_string())),
            (Some(g), None) if !self.by_token => Ok(Some(g.to_string())),
            (Some(g), Some("*")) => Ok(Some(g.to_string())),
            (Some(g), own) => Err(AblyError::invalid_client_id(format!(
                "Mismatched clientId \"{g}\" for a client identified as {}",
                own.map_or("anonymous".to_string(), |o| format!("\"{o}\""))
            ))),
        }
    }

    /// Applies a clientId the client asks for (connection `clientId` param or
    /// REST `X-Ably-ClientId`) on top of the credential's own identity.
    pub fn with_requested_client_id(mut self, requested: Option<&str>) -> Result<Principal, AblyError> {
        let requested = requested.filter(|c| !c.is_empty());
        self.client_id = match (requested, self.by_token, self.client_id.take()) {
            (Some("*"), _, _) => {
                return Err(AblyError::invalid_client_id("clientId \"*\" cannot be requested by a client"))
            }
            (req, false, _) => req.map(String::from),
            (None, true, own) => own,
            (Some(req), true, Some(own)) if own == "*" || own == req => Some(req.to_string()),
            (Some(req), true, own) => {
                return Err(AblyError::incompatible_credentials(format!(
                    "Incompatible clientId \"{req}\" for a token {}",
                    own.map_or("without a clientId".to_string(), |o| format!("issued for \"{o}\""))
                )))
            }
        };
        Ok(self)
    }
}

/// Which code an unrecognised token gets: REST answers 40101 (ably-js would
/// otherwise retry REST calls with the stale header, see §B13), realtime
/// answers 40143 so the SDK fetches a fresh token, e.g. after a server restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Rest,
    Realtime,
}

/// Is `token` a JWT (`header.payload.signature`, header naming an `alg`)?
/// This server issues only Ably tokens; a JWT is refused by name (40144)
/// rather than reported as an unknown token.
fn is_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else { return false };
    if payload.is_empty() || signature.is_empty() {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h.get("alg").is_some())
}

pub struct Authenticator<'a> {
    pub keys: &'a KeyStore,
    pub tokens: &'a TokenStore,
}

impl Authenticator<'_> {
    pub fn with_key(&self, full_key: &str) -> Result<Principal, AblyError> {
        let key = self.keys.verify_full(full_key)?;
        Ok(Principal {
            key_name: key.name.clone(),
            capability: key.capability.clone(),
            client_id: None,
            expires: None,
            by_token: false,
        })
    }

    pub fn with_token(&self, token: &str, now: i64, surface: Surface) -> Result<Principal, AblyError> {
        if is_jwt(token) {
            return Err(AblyError::new(40144, 401, "JWTs are not supported by this local server; use Ably tokens"));
        }
        match self.tokens.lookup(token, now) {
            Ok(t) => Ok(Principal {
                key_name: t.key_name,
                capability: t.capability,
                client_id: t.client_id,
                expires: Some(t.expires),
                by_token: true,
            }),
            Err(TokenProblem::Expired) => Err(AblyError::token_expired()),
            Err(TokenProblem::Unknown) => Err(match surface {
                Surface::Rest => AblyError::invalid_credentials("Invalid credentials: token not recognised"),
                Surface::Realtime => AblyError::new(40143, 401, "Token not recognised"),
            }),
        }
    }

    /// Resolves an HTTP `Authorization` header (`Basic` or `Bearer`).
    pub fn with_authorization(&self, header: Option<&str>, now: i64) -> Result<Principal, AblyError> {
        let header = header.ok_or_else(|| AblyError::invalid_credentials("Invalid credentials: no credentials"))?;
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
        let value = value.trim();
        let b64 = base64::engine::general_purpose::STANDARD;
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = b64
                .decode(value)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AblyError::invalid_credentials("Invalid credentials: malformed Basic authorization"))?;
            self.with_key(&decoded)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            // ably-js base64s every token; a raw token (e.g. a JWT) is accepted too.
            let decoded = b64.decode(value).ok().and_then(|b| String::from_utf8(b).ok());
            match decoded {
                Some(token) if is_jwt(&token) || !matches!(self.tokens.lookup(&token, now), Err(TokenProblem::Unknown)) => {
                    self.with_token(&token, now, Surface::Rest)
                }
                _ => self.with_token(value, now, Surface::Rest),
            }
        } else {
            Err(AblyError::invalid_credentials("Invalid credentials: unsupported authorization scheme"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ApiKey;
    use crate::token::TokenRequest;

    fn principal(by_token: bool, client_id: Option<&str>) -> Principal {
        Principal {
            key_name: "a.b".into(),
            capability: Capability::default(),
            client_id: client_id.map(String::from),
            expires: None,
            by_token,
        }
    }

    #[test]
    fn message_client_ids() {
        let key = principal(false, None);
        assert_eq!(key.client_id_for(Some("x")).unwrap().as_deref(), Some("x"));
        assert_eq!(key.client_id_for(None).unwrap(), None);

        let bob = principal(true, Some("bob"));
        assert_eq!(bob.client_id_for(None).unwrap().as_deref(), Some("bob"));
        assert_eq!(bob.client_id_for(Some("bob")).unwrap().as_deref(), Some("bob"));
        assert_eq!(bob.client_id_for(Some("eve")).unwrap_err().code, 40012);

        let anon_token = principal(true, None);
        assert_eq!(anon_token.client_id_for(Some("eve")).unwrap_err().code, 40012);
        let wild = principal(true, Some("*"));
        assert_eq!(wild.client_id_for(Some("eve")).unwrap().as_deref(), Some("eve"));
        // A key-authenticated client that asserted an identity keeps it.
        let key_bob = principal(false, Some("bob"));
        assert_eq!(key_bob.client_id_for(Some("eve")).unwrap_err().code, 40012);
    }

    #[test]
    fn requested_client_ids() {
        let p = principal(false, None).with_requested_client_id(Some("alice")).unwrap();
        assert_eq!(p.client_id.as_deref(), Some("alice"));
        let p = principal(true, Some("*")).with_requested_client_id(Some("alice")).unwrap();
        assert_eq!(p.client_id.as_deref(), Some("alice"));
        let p = principal(true, Some("*")).with_requested_client_id(None).unwrap();
        assert_eq!(p.client_id.as_deref(), Some("*"));
        let e = principal(true, Some("bob")).with_requested_client_id(Some("alice")).unwrap_err();
        assert_eq!(e.code, 40102);
        let e = principal(true, None).with_requested_client_id(Some("alice")).unwrap_err();
        assert_eq!(e.code, 40102);
    }

    #[test]
    fn authorization_headers() {
        let keys = KeyStore::new(vec![ApiKey::parse_spec("app.key:secret").unwrap()]);
        let tokens = TokenStore::default();
        let auth = Authenticator { keys: &keys, tokens: &tokens };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

        assert!(auth.with_authorization(Some(&format!("Basic {}", b64("app.key:secret"))), 0).is_ok());
        let e = auth.with_authorization(Some(&format!("Basic {}", b64("app.key:nope"))), 0).unwrap_err();
        assert_eq!((e.code, e.status), (40101, 401));
        assert_eq!(auth.with_authorization(None, 0).unwrap_err().code, 40101);
        assert_eq!(auth.with_authorization(Some("Basic %%%"), 0).unwrap_err().code, 40101);

        let key = keys.get("app.key").unwrap();
        let d = tokens.issue(key, &TokenRequest { ttl: Some(1000), ..Default::default() }, 0).unwrap();
        let p = auth.with_authorization(Some(&format!("Bearer {}", b64(&d.token))), 10).unwrap();
        assert!(p.by_token);
        assert!(auth.with_authorization(Some(&format!("Bearer {}", d.token)), 10).is_ok());
        let e = auth.with_authorization(Some(&format!("Bearer {}", b64(&d.token))), 1000).unwrap_err();
        assert_eq!(e.code, 40142);
        let e = auth.with_authorization(Some("Bearer bm9wZQ=="), 10).unwrap_err();
        assert_eq!(e.code, 40101);
        assert_eq!(auth.with_token("nope", 10, Surface::Realtime).unwrap_err().code, 40143);
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ4IjoxfQ.c2ln";
        assert_eq!(auth.with_token(jwt, 10, Surface::Realtime).unwrap_err().code, 40144);
        let e = auth.with_authorization(Some(&format!("Bearer {}", b64(jwt))), 10).unwrap_err();
        assert_eq!(e.code, 40144);
        assert!(!is_jwt(&d.token), "our own tokens are not JWTs");
    }
}
