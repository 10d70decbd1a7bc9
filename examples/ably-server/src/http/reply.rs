//! Building REST responses in the format the client asked for (`Accept`, else
//! the `format` query parameter, else JSON), Ably's error shape with its
//! `X-Ably-Error*` headers, and the `envelope=` wrapper browsers use.
//! Content types are exact (`application/json`, no charset): ably-js in Node
//! only parses error bodies with exactly those types.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;

use crate::error::{AblyError, ErrorBody};
use crate::format::Format;

/// How to answer one request.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub format: Format,
    /// `envelope=json|msgpack` on paginated GETs: wrap status, body and headers.
    pub envelope: Option<Format>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T: Serialize> {
    status_code: u16,
    response: &'a T,
    headers: std::collections::BTreeMap<&'static str, String>,
}

/// Header values must be visible ASCII; anything else becomes '?'.
fn header_text(s: &str) -> HeaderValue {
    let clean: String = s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

impl Reply {
    pub fn negotiate(headers: &HeaderMap, query: &std::collections::HashMap<String, String>) -> Reply {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        let format = match (accept, query.get("format").and_then(|f| Format::from_param(f))) {
            (Some(a), _) if a.contains("msgpack") || a.contains("json") => Format::from_media_type(a),
            (_, Some(f)) => f,
            _ => Format::Json,
        };
        let envelope = query.get("envelope").and_then(|e| Format::from_param(e));
        Reply { format, envelope }
    }

    /// A plain JSON reply for endpoints that never negotiate.
    pub fn json() -> Reply {
        Reply { format: Format::Json, envelope: None }
    }

    fn raw(format: Format, status: StatusCode, body: Vec<u8>) -> Response {
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        r
    }

    /// Success with `body`; `link` becomes the `Link` header (or the envelope's).
    pub fn ok<T: Serialize>(self, status: StatusCode, body: &T, link: Option<String>) -> Response {
        if let Some(env_format) = self.envelope {
            let mut headers = std::collections::BTreeMap::new();
            if let Some(l) = &link {
                headers.insert("link", l.clone());
            }
            let wrapped = Envelope { status_code: status.as_u16(), response: body, headers };
            return match env_format.encode(&wrapped) {
                Ok(bytes) => Self::raw(env_format, StatusCode::OK, bytes),
                Err(e) => self.error(&e),
            };
        }
        match self.format.encode(body) {
            Ok(bytes) => {
                let mut r = Self::raw(self.format, status, bytes);
                if let Some(l) = link {
                    r.headers_mut().insert(header::LINK, header_text(&l));
                }
                r
            }
            Err(e) => self.error(&e),
        }
    }

    /// A failure whose body is not a plain `{error}`: the legacy batch
    /// response (`{error, batchResponse}`). Status and headers follow `err`.
    pub fn failure<T: Serialize>(self, err: &AblyError, body: &T) -> Response {
        let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = self.ok(status, body, None);
        Self::error_headers(&mut r, err);
        r
    }

    fn error_headers(r: &mut Response, err: &AblyError) {
        r.headers_mut().insert("x-ably-errorcode", header_text(&err.code.to_string()));
        r.headers_mut().insert("x-ably-errormessage", header_text(&err.message));
    }

    pub fn error(self, err: &AblyError) -> Response {
        let body = ErrorBody { error: err.info() };
        let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = if let Some(env_format) = self.envelope {
            let wrapped = Envelope { status_code: err.status, response: &body, headers: Default::default() };
            let bytes = env_format.encode(&wrapped).unwrap_or_default();
            Self::raw(env_format, StatusCode::OK, bytes)
        } else {
            // Encoding an ErrorBody cannot fail; fall back to JSON text regardless.
            let bytes = self.format.encode(&body).unwrap_or_else(|_| b"{}".to_vec());
            Self::raw(self.format, status, bytes)
        };
        Self::error_headers(&mut r, err);
        r
    }

    pub fn result<T: Serialize>(self, status: StatusCode, result: Result<T, AblyError>) -> Response {
        match result {
            Ok(body) => self.ok(status, &body, None),
            Err(e) => self.error(&e),
        }
    }
}
