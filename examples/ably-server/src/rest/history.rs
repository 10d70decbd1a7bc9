//! `GET /channels/{channel}/messages`: message history, newest first by
//! default, paginated with a relative `Link` header (or the envelope's
//! `headers.link` when `envelope=` is given).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{authenticate, PathParam, query_map, Reply};
use crate::app::App;
use crate::capability::op;
use crate::channel_name;
use crate::error::AblyError;
use crate::history::HistoryQuery;
use crate::publish::check_capability;

pub async fn history(
    State(app): State<Arc<App>>,
    PathParam(channel): PathParam,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = query_map(q.as_deref());
    let reply = Reply::negotiate(&headers, &params);
    let page = (|| -> Result<_, AblyError> {
        let principal = authenticate(&app, &headers)?;
        channel_name::validate(&channel)?;
        check_capability(&principal, &channel, op::HISTORY)?;
        let query = HistoryQuery::parse(&params)?;
        let (items, next) = app.channels.with(&channel, |c| c.history(&query));
        Ok((items, query.link_header("messages", next)))
    })();
    match page {
        Ok((items, link)) => reply.ok(StatusCode::OK, &items, Some(link)),
        Err(e) => reply.error(&e),
    }
}
