//! The prologue every channel-scoped REST read shares: credentials, then a
//! valid channel name, then the capability for the operation, in that order
//! (so a bad key is 40101 whatever the channel, and a bad name is 40010
//! whatever the capability).

use axum::http::HeaderMap;

use crate::app::App;
use crate::auth::Principal;
use crate::channel_name;
use crate::error::AblyError;
use crate::http::authenticate;

/// Authenticates the request and checks `operation` on `channel`.
pub fn authorize(app: &App, headers: &HeaderMap, channel: &str, operation: &str) -> Result<Principal, AblyError> {
    let principal = authenticate(app, headers)?;
    check(&principal, channel, operation)?;
    Ok(principal)
}

/// The channel checks alone, for requests naming several channels.
pub fn check(principal: &Principal, channel: &str, operation: &str) -> Result<(), AblyError> {
    channel_name::validate(channel)?;
    principal.require(channel, operation)
}
