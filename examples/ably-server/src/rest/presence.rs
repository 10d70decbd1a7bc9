//! `GET /channels/{channel}/presence`: the members present now (action
//! PRESENT), optionally filtered by `clientId` / `connectionId`, at most
//! `limit` of them (a single page).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{authenticate, PathParam, query_map, Reply};
use crate::app::App;
use crate::capability::op;
use crate::channel_name;
use crate::error::AblyError;
use crate::history::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::publish::check_capability;

pub async fn members(
    State(app): State<Arc<App>>,
    PathParam(channel): PathParam,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = query_map(q.as_deref());
    let reply = Reply::negotiate(&headers, &params);
    let result = (|| -> Result<_, AblyError> {
        let principal = authenticate(&app, &headers)?;
        channel_name::validate(&channel)?;
        check_capability(&principal, &channel, op::SUBSCRIBE)?;
        let limit = match params.get("limit") {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| AblyError::invalid_parameter(format!("Invalid limit \"{l}\"")))?,
        };
        let client_id = params.get("clientId");
        let connection_id = params.get("connectionId");
        let members: Vec<_> = app
            .channels
            .with(&channel, |c| c.presence_members())
            .into_iter()
            .filter(|m| client_id.is_none_or(|c| m.client_id.as_ref() == Some(c)))
            .filter(|m| connection_id.is_none_or(|c| m.connection_id.as_ref() == Some(c)))
            .take(limit)
            .collect();
        Ok(members)
    })();
    reply.result(StatusCode::OK, result)
}
