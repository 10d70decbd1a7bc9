//! Dead letters: messages Ably refused for good (too large, invalid channel,
//! bad data) or that had no channel (a NULL template column). They are kept
//! with the reason, never dropped; `ably.retry_dead_letters()` queues them
//! again once the cause is fixed (for example a larger account limit).

use crate::identity::as_extension_owner;
use crate::queue;
use pgrx::prelude::*;

#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.retry_dead_letters(ids bigint[] DEFAULT NULL)
RETURNS bigint VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.retry_dead_letters(bigint[]) IS
    'Queue dead letters again (all, or those with the given ids) at the end of the queue; returns how many';
"#
)]
fn retry_dead_letters(ids: Option<Vec<Option<i64>>>) -> i64 {
    let ids: Option<Vec<i64>> = ids.map(|v| v.into_iter().flatten().collect());
    let rows: Vec<(i64, Option<i64>, Option<String>, Option<String>, String)> = as_extension_owner(|| {
        Spi::connect_mut(|client| {
            client
                .update(
                    "DELETE FROM ably.dead_letters \
                     WHERE ($1::pg_catalog.int8[] IS NULL OR id OPERATOR(pg_catalog.=) ANY ($1)) AND channel IS NOT NULL \
                     RETURNING id, rule_id, channel, name, data::pg_catalog.text",
                    None,
                    &[ids.clone().into()],
                )
                .map(|table| {
                    table
                        .filter_map(|r| {
                            Some((
                                r.get::<i64>(1).ok()??,
                                r.get::<i64>(2).ok()?,
                                r.get::<String>(3).ok()?,
                                r.get::<String>(4).ok()?,
                                r.get::<String>(5).ok()??,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_else(|e| pgrx::error!("could not read dead letters: {e}"))
        })
    });
    let mut rows = rows;
    rows.sort_by_key(|r| r.0);
    for (_, rule_id, channel, name, data) in &rows {
        if let Some(channel) = channel {
            queue::enqueue_text(*rule_id, channel, name.as_deref(), data);
        }
    }
    rows.len() as i64
}
