//! Dead letters: messages Ably refused for good (too large, invalid channel,
//! bad data) or that had no channel (a NULL template column). They are kept
//! with the reason, never dropped; `ably.retry_dead_letters()` queues them
//! again once the cause is fixed (for example a larger account limit).
//!
//! Invariant: a retry never puts an older version of a row after a newer one.
//! A row change is queued again only while it is still the row's latest
//! state — the row in the table still matches it (or, for a delete, is still
//! gone) — because otherwise a later change of that row already went out
//! and the old one would overwrite it at subscribers. Such superseded dead
//! letters stay where they are (`force => true` sends them anyway).
//! Application events (`ably.publish`) and truncates have no row to compare
//! and are queued again in their original order.

use crate::catalog;
use crate::errors::{raise, Code};
use crate::grants;
use crate::identity::as_role;
use crate::queue;
use crate::rule_store;
use crate::store::Table;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// One row of `ably.dead_letters`.
struct DeadLetter {
    id: i64,
    rule_id: Option<i64>,
    channel: Option<String>,
    name: Option<String>,
    data: String,
}

#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.retry_dead_letters(ids bigint[] DEFAULT NULL, channel text DEFAULT NULL, force boolean DEFAULT false)
RETURNS bigint VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.retry_dead_letters(bigint[], text, boolean) IS
    'Queue dead letters again (all, or those with the given ids), oldest first, skipping row changes a later change superseded unless force; channel gives those without one a channel. Returns how many were queued';
"#
)]
fn retry_dead_letters(ids: Option<Vec<Option<i64>>>, channel: Option<&str>, force: Option<bool>) -> i64 {
    let ids: Option<Vec<i64>> = ids.map(|v| v.into_iter().flatten().collect());
    let force = force.unwrap_or(false);
    if let Some(channel) = channel {
        if let Some(problem) = crate::channel::channel_name_problem(channel) {
            raise(
                Code::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid channel name \"{channel}\": {problem}"),
                "Ably channel names must not be empty, start with '[' or ':', or contain line breaks.",
            );
        }
        grants::check_channel(channel);
    }
    let table = Table::open("dead_letters", pg_sys::RowExclusiveLock);
    let mut letters: Vec<DeadLetter> = Vec::new();
    table.scan_all(|row| {
        let id = row.get::<i64>("id").unwrap_or(0);
        if ids.as_ref().is_none_or(|wanted| wanted.contains(&id)) {
            letters.push(DeadLetter {
                id,
                rule_id: row.get::<i64>("rule_id"),
                channel: row.get::<String>("channel"),
                name: row.get::<String>("name"),
                data: row.get::<String>("data").unwrap_or_else(|| "null".into()),
            });
        }
        false
    });
    letters.sort_by_key(|l| l.id);
    let mut queued = 0;
    let mut requeued_ids = Vec::new();
    for letter in letters {
        let Some(target) = letter.channel.clone().or_else(|| channel.map(str::to_string)) else {
            notice!(
                "dead letter {} has no channel (its channel template column was NULL); pass channel => '...' to send it",
                letter.id
            );
            continue;
        };
        if !force {
            if let Some(reason) = superseded(&letter) {
                notice!("dead letter {} is not queued again: {reason}; force => true sends it anyway", letter.id);
                continue;
            }
        }
        queue::enqueue_text(letter.rule_id, &target, letter.name.as_deref(), &letter.data);
        requeued_ids.push(letter.id);
        queued += 1;
    }
    table.scan_all(|row| row.get::<i64>("id").is_some_and(|id| requeued_ids.contains(&id)));
    queued
}

/// Why a row change is no longer its row's latest state, if it is not.
fn superseded(letter: &DeadLetter) -> Option<String> {
    let rule = rule_store::load(letter.rule_id?)?;
    let data: serde_json::Value = serde_json::from_str(&letter.data).ok()?;
    let event = data.get("event")?.as_str()?;
    let (row, expect_present) = match event {
        "insert" | "update" => (data.get("new")?, true),
        "delete" => (data.get("old")?, false),
        _ => return None,
    };
    let row = row.as_object()?;
    let key = primary_key(rule.relid)?;
    // The rule's columns may leave the key out: nothing to compare by.
    if !key.iter().all(|(name, _)| row.contains_key(name)) {
        return None;
    }
    match current_row_matches(rule.relid, &key, row) {
        Some(true) if expect_present => None,
        Some(false) if expect_present => Some("the row changed since (that change was published after it)".into()),
        None if expect_present => Some("the row was deleted since".into()),
        None => None,
        Some(_) => Some("the row exists again (it was inserted after this delete)".into()),
    }
}

/// The primary key's columns: (name, qualified type name).
fn primary_key(relid: pg_sys::Oid) -> Option<Vec<(String, String)>> {
    unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as i32);
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        let index = pg_sys::RelationGetPrimaryKeyIndex(rel);
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        let index = pg_sys::RelationGetPrimaryKeyIndex(rel, false);
        let mut out = Vec::new();
        if index != pg_sys::InvalidOid {
            let index_rel = pg_sys::index_open(index, pg_sys::AccessShareLock as i32);
            let form = (*index_rel).rd_index;
            let keys = (*form).indnkeyatts as usize;
            for i in 0..keys {
                let attnum = *(*form).indkey.values.as_ptr().add(i);
                let attr = catalog::attr((*rel).rd_att, (attnum - 1) as usize);
                out.push((
                    catalog::cstr((*attr).attname.data.as_ptr()),
                    catalog::cstr(pg_sys::format_type_be_qualified((*attr).atttypid)),
                ));
            }
            pg_sys::index_close(index_rel, pg_sys::AccessShareLock as i32);
        }
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
        (!out.is_empty()).then_some(out)
    }
}

/// Whether the row with the dead letter's key still holds the dead
/// letter's values (`None`: no such row). Read as the table's owner, with
/// the search path pinned; every name is quoted and qualified, and the
/// key's equality is its type's own operator, found in the type cache.
fn current_row_matches(relid: pg_sys::Oid, key: &[(String, String)], row: &serde_json::Map<String, serde_json::Value>) -> Option<bool> {
    let (owner, table) = unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as i32);
        let owner = (*(*rel).rd_rel).relowner;
        let namespace = catalog::cstr(pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace));
        let name = catalog::cstr((*(*rel).rd_rel).relname.data.as_ptr());
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
        (owner, format!("{}.{}", quote_identifier(&namespace), quote_identifier(&name)))
    };
    let mut conditions = Vec::new();
    for (i, (name, type_name)) in key.iter().enumerate() {
        let operator = equality_operator(relid, name)?;
        conditions.push(format!(
            "t.{} OPERATOR({operator}) ($1 OPERATOR(pg_catalog.->>) {})::{type_name}",
            quote_identifier(name),
            crate::store::quote_literal(name),
        ));
        let _ = i;
    }
    let query = format!(
        "SELECT pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.@>) $2 FROM {table} AS t WHERE {}",
        conditions.join(" AND ")
    );
    let values = serde_json::Value::Object(row.clone());
    let key_values = serde_json::Value::Object(key.iter().filter_map(|(k, _)| Some((k.clone(), row.get(k)?.clone()))).collect());
    as_role(owner, || {
        Spi::connect(|client| {
            let rows = client
                .select(&query, Some(1), &[pgrx::JsonB(key_values).into(), pgrx::JsonB(values).into()])
                .unwrap_or_else(|e| raise(Code::ERRCODE_INTERNAL_ERROR, format!("could not read the current row: {e}"), "Report this as a bug."));
            if rows.is_empty() {
                None
            } else {
                rows.first().get_one::<bool>().ok().flatten()
            }
        })
    })
}

/// `schema.op` of the `=` of a column's type (its default btree opclass).
fn equality_operator(relid: pg_sys::Oid, column: &str) -> Option<String> {
    unsafe {
        let name = std::ffi::CString::new(column).ok()?;
        let attnum = pg_sys::get_attnum(relid, name.as_ptr());
        let typid = pg_sys::get_atttype(relid, attnum);
        let cache = pg_sys::lookup_type_cache(typid, pg_sys::TYPECACHE_EQ_OPR as i32);
        let op = (*cache).eq_opr;
        if op == pg_sys::InvalidOid {
            return None;
        }
        let op_name = catalog::cstr(pg_sys::get_opname(op));
        let namespace = pg_sys::get_namespace_name(get_operator_namespace(op)?);
        Some(format!("{}.{op_name}", quote_identifier(&catalog::cstr(namespace))))
    }
}

fn get_operator_namespace(op: pg_sys::Oid) -> Option<pg_sys::Oid> {
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::OPEROID as i32, pg_sys::Datum::from(op));
        if tuple.is_null() {
            return None;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_operator>(tuple);
        let namespace = (*form).oprnamespace;
        pg_sys::ReleaseSysCache(tuple);
        Some(namespace)
    }
}
