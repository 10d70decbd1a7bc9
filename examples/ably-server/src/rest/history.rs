//! `GET /channels/{channel}/messages`: message history, newest first by
//! default, paginated with a relative `Link` header (or the envelope's
//! `headers.link` when `envelope=` is given). Reading never creates a channel.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::channel_access;
use crate::app::App;
use crate::capability::op;
use crate::error::AblyError;
use crate::history::HistoryQuery;
use crate::http::{query_map, PathParam, Reply};

pub async fn history(
    State(app): State<Arc<App>>,
    PathParam(channel): PathParam,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = query_map(q.as_deref());
    let reply = Reply::negotiate(&headers, &params);
    let page = (|| -> Result<_, AblyError> {
        channel_access::authorize(&app, &headers, &channel, op::HISTORY)?;
        let query = HistoryQuery::parse(&params)?;
        let (items, next) = app.channels.read(&channel, |c| c.map(|c| c.history(&query)).unwrap_or_default());
        Ok((items, query.link_header("messages", next)))
    })();
    match page {
        Ok((items, link)) => reply.ok(StatusCode::OK, &items, Some(link)),
        Err(e) => reply.error(&e),
    }
}
