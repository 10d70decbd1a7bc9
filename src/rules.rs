//! Publish rules: the SQL surface an application developer uses.
//!
//! `ably.publish_table()` validates everything up front (events, templates,
//! columns, condition, ownership, channel grants, duplicates), records the
//! rule in `ably.rules` and installs the row trigger that feeds the queue. A
//! rule never changes after creation, except to follow a column rename;
//! to change one, unpublish and publish again.
//!
//! Who may do what: EXECUTE on these functions belongs to `ably_publisher`
//! (not PUBLIC); only a table's owner (or a superuser) manages its rules;
//! temporary tables cannot be published (their rules could outlive them
//! unnoticed); channels are limited by src/grants.rs. Everything is looked
//! up in the catalog, and the few statements run as the extension owner
//! (CREATE/DROP TRIGGER) run with search_path pinned (src/identity.rs).

use crate::catalog;
use crate::channel::{channel_name_problem, Template};
use crate::condition;
use crate::errors::{raise, raise_detail, Code};
use crate::grants;
use crate::identity::as_extension_owner;
use crate::queue;
use crate::rule_store::{self, Rule};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

pub const EVENTS: [&str; 4] = ["insert", "update", "delete", "truncate"];

/// A table as the rules see it, read from the relation cache.
pub struct TableInfo {
    pub relid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    pub relkind: u8,
    pub persistence: u8,
    pub columns: Vec<String>,
}

impl TableInfo {
    pub fn load(relid: pg_sys::Oid) -> Option<TableInfo> {
        unsafe {
            let rel = pg_sys::try_relation_open(relid, pg_sys::AccessShareLock as i32);
            if rel.is_null() {
                return None;
            }
            let form = (*rel).rd_rel;
            let desc = (*rel).rd_att;
            let mut columns = Vec::new();
            for i in 0..(*desc).natts {
                let attr = catalog::attr(desc, i as usize);
                if !(*attr).attisdropped {
                    columns.push(catalog::cstr((*attr).attname.data.as_ptr()));
                }
            }
            let info = TableInfo {
                relid,
                schema: catalog::cstr(pg_sys::get_namespace_name((*form).relnamespace)),
                name: catalog::cstr((*form).relname.data.as_ptr()),
                relkind: (*form).relkind as u8,
                persistence: (*form).relpersistence as u8,
                columns,
            };
            pg_sys::relation_close(rel, pg_sys::NoLock as i32);
            Some(info)
        }
    }

    pub fn qualified_name(&self) -> String {
        format!("{}.{}", quote_identifier(&self.schema), quote_identifier(&self.name))
    }

    fn require_column(&self, column: &str, context: &str) {
        if !self.columns.iter().any(|c| c == column) {
            raise_detail(
                Code::ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{column}\" of table {} does not exist", self.qualified_name()),
                format!("It is named in {context}."),
                format!("Columns of {} are: {}.", self.qualified_name(), self.columns.join(", ")),
            );
        }
    }
}

fn table_or_error(tbl: Option<pg_sys::Oid>) -> TableInfo {
    let Some(relid) = tbl else {
        raise(Code::ERRCODE_NULL_VALUE_NOT_ALLOWED, "table must not be NULL", "Pass a table name, e.g. 'public.messages'.");
    };
    let Some(table) = TableInfo::load(relid) else {
        raise(
            Code::ERRCODE_UNDEFINED_TABLE,
            format!("table with OID {} does not exist", relid.to_u32()),
            "Pass the name of an existing table.",
        );
    };
    if table.relkind != pg_sys::RELKIND_RELATION && table.relkind != pg_sys::RELKIND_PARTITIONED_TABLE {
        raise(
            Code::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{} is not a table", table.qualified_name()),
            "Only ordinary and partitioned tables can be published.",
        );
    }
    if matches!(table.schema.as_str(), "pg_catalog" | "information_schema" | "pg_toast") {
        raise(
            Code::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("cannot publish system catalog {}", table.qualified_name()),
            "Publish your application's tables; catalogs cannot have triggers.",
        );
    }
    if Some(table.schema.as_str()) == catalog::extension().map(|e| unsafe { catalog::cstr(pg_sys::get_namespace_name(e.namespace)) }).as_deref() {
        raise(
            Code::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{} belongs to ably_pg itself", table.qualified_name()),
            "Publish your application's tables, not the extension's.",
        );
    }
    if !catalog::owns_relation(relid) {
        raise(
            Code::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of table {} to publish or unpublish it", table.qualified_name()),
            "Ask the table's owner or a superuser to manage its rules.",
        );
    }
    table
}

fn parse_events(events: Option<Vec<Option<String>>>) -> Vec<String> {
    let events = events.unwrap_or_else(|| vec![Some("insert".into()), Some("update".into()), Some("delete".into())]);
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let Some(e) = e else {
            raise(Code::ERRCODE_NULL_VALUE_NOT_ALLOWED, "events must not contain NULL", "Use any of insert, update, delete, truncate.");
        };
        let lower = e.trim().to_lowercase();
        if !EVENTS.contains(&lower.as_str()) {
            raise(
                Code::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown event \"{e}\""),
                "Events are insert, update, delete and truncate.",
            );
        }
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    if out.is_empty() {
        raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, "events must not be empty", "Use any of insert, update, delete, truncate.");
    }
    out.sort_by_key(|e| EVENTS.iter().position(|x| x == e));
    out
}

fn parse_template(text: &str, what: &str) -> Template {
    Template::parse(text).unwrap_or_else(|problem| {
        raise(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid {what} template \"{text}\": {problem}"),
            "Templates are text with {column} placeholders; write {{ and }} for literal braces.",
        )
    })
}

#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.publish_table(
    tbl regclass,
    channel text,
    events text[] DEFAULT '{insert,update,delete}',
    name text DEFAULT NULL,
    columns text[] DEFAULT NULL,
    condition text DEFAULT NULL
) RETURNS bigint VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.publish_table(regclass, text, text[], text, text[], text) IS
    'Publish row changes of a table to an Ably channel (template with {column} placeholders); returns the rule id';
"#
)]
fn publish_table(
    tbl: Option<pg_sys::Oid>,
    channel: Option<&str>,
    events: Option<Vec<Option<String>>>,
    name: Option<&str>,
    columns: Option<Vec<Option<String>>>,
    condition: Option<&str>,
) -> i64 {
    let table = table_or_error(tbl);
    if table.persistence == pg_sys::RELPERSISTENCE_TEMP {
        raise(
            Code::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot publish temporary table {}", table.qualified_name()),
            "Publish a permanent (or unlogged) table; a temporary table's rules would outlive it unnoticed.",
        );
    }
    let Some(channel) = channel else {
        raise(Code::ERRCODE_NULL_VALUE_NOT_ALLOWED, "channel must not be NULL", "Pass a channel name or template such as 'chat:{room_id}'.");
    };
    let events = parse_events(events);

    let channel_template = parse_template(channel, "channel");
    if let Some(problem) = channel_template.channel_problem() {
        raise(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid channel name \"{channel}\": {problem}"),
            "Ably channel names must not be empty, start with '[' or ':', or contain line breaks.",
        );
    }
    for column in channel_template.columns() {
        table.require_column(column, &format!("channel template \"{channel}\""));
    }
    if let Some(name) = name {
        let name_template = parse_template(name, "name");
        for column in name_template.columns() {
            table.require_column(column, &format!("name template \"{name}\""));
        }
        if name.is_empty() {
            raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, "message name must not be empty", "Pass NULL for the default '<table>.<event>'.");
        }
    }
    if events.iter().any(|e| e == "truncate") && !channel_template.is_static() {
        raise_detail(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cannot publish truncate to templated channel \"{channel}\""),
            "A TRUNCATE has no rows to fill the template from.",
            "Publish truncate with a second rule on a fixed channel.",
        );
    }
    grants::check_template(&channel_template, channel);

    let columns: Option<Vec<String>> = columns.map(|cols| {
        let mut out: Vec<String> = Vec::new();
        for c in cols {
            let Some(c) = c else {
                raise(Code::ERRCODE_NULL_VALUE_NOT_ALLOWED, "columns must not contain NULL", "List column names, or pass NULL for all columns.");
            };
            table.require_column(&c, "columns");
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if out.is_empty() {
            raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, "columns must not be empty", "List column names, or pass NULL for all columns.");
        }
        out
    });
    // Stored as PostgreSQL deparses it, so the text in ably.rules (and in a
    // dump) is exactly what was compiled.
    let condition = condition
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| condition::parse(table.relid, c).text);

    let candidate = Rule {
        id: 0,
        relid: table.relid,
        events: events.clone(),
        channel: channel.to_string(),
        name: name.map(str::to_string),
        columns: columns.clone(),
        condition: condition.clone(),
    };
    if let Some(existing) = rule_store::of_table(table.relid).into_iter().find(|r| duplicates(r, &candidate)) {
        raise(
            Code::ERRCODE_DUPLICATE_OBJECT,
            format!("table {} already has rule {} publishing to channel \"{channel}\"", table.qualified_name(), existing.id),
            format!("Use ably.unpublish_table('{}', {}) first, or choose another channel or name.", table.qualified_name().replace('\'', "''"), existing.id),
        );
    }
    let rule_id = rule_store::insert(table.relid, &events, channel, name, columns.as_deref(), condition.as_deref());
    as_extension_owner(|| install_triggers(&table, rule_id, &events, channel_template.is_static()));
    rule_id
}

/// Two rules of one table that would publish the same change twice.
fn duplicates(a: &Rule, b: &Rule) -> bool {
    a.channel == b.channel
        && a.events.iter().any(|e| b.events.contains(e))
        && a.name == b.name
        && a.columns == b.columns
        && a.condition == b.condition
}

pub fn trigger_name(rule_id: i64, truncate: bool) -> String {
    if truncate {
        format!("ably_rule_{rule_id}_truncate")
    } else {
        format!("ably_rule_{rule_id}")
    }
}

/// Creates the rule's triggers; the `adopt_triggers` event trigger then
/// ties them to the extension, compiles the condition and records what the
/// rule depends on. Runs as the extension owner with the path pinned; every
/// name in the statement is quoted and schema-qualified.
fn install_triggers(table: &TableInfo, rule_id: i64, events: &[String], static_channel: bool) {
    let row_events: Vec<String> = events
        .iter()
        .filter(|e| *e != "truncate")
        .map(|e| e.to_uppercase())
        .collect();
    if !row_events.is_empty() {
        let name = trigger_name(rule_id, false);
        Spi::run(&format!(
            "CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW EXECUTE FUNCTION ably.capture('{rule_id}')",
            quote_identifier(&name),
            row_events.join(" OR "),
            table.qualified_name()
        ))
        .unwrap_or_else(|e| raise(Code::ERRCODE_INTERNAL_ERROR, format!("could not create trigger: {e}"), "Report this as a bug."));
    }
    // A TRUNCATE removes every row: rules on a fixed channel that publish
    // deletes (or ask for truncate explicitly) hear about it.
    let wants_truncate = events.iter().any(|e| e == "truncate") || (static_channel && events.iter().any(|e| e == "delete"));
    if wants_truncate {
        let name = trigger_name(rule_id, true);
        Spi::run(&format!(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION ably.capture('{rule_id}')",
            quote_identifier(&name),
            table.qualified_name()
        ))
        .unwrap_or_else(|e| raise(Code::ERRCODE_INTERNAL_ERROR, format!("could not create trigger: {e}"), "Report this as a bug."));
    }
}

/// Drops a rule's triggers (as the extension owner, path pinned).
pub fn drop_triggers(table_name: &str, rule_id: i64) {
    as_extension_owner(|| {
        for truncate in [false, true] {
            Spi::run(&format!("DROP TRIGGER IF EXISTS {} ON {}", quote_identifier(trigger_name(rule_id, truncate)), table_name))
                .unwrap_or_else(|e| raise(Code::ERRCODE_INTERNAL_ERROR, format!("could not drop trigger: {e}"), "Report this as a bug."));
        }
    });
}

#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.unpublish_table(tbl regclass, rule_id bigint DEFAULT NULL)
RETURNS integer VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.unpublish_table(regclass, bigint) IS
    'Remove one rule (or all rules) of a table and their triggers; returns how many rules were removed';
"#
)]
fn unpublish_table(tbl: Option<pg_sys::Oid>, rule_id: Option<i64>) -> i32 {
    let table = table_or_error(tbl);
    let ids: Vec<i64> = rule_store::of_table(table.relid)
        .into_iter()
        .map(|r| r.id)
        .filter(|id| rule_id.is_none_or(|wanted| wanted == *id))
        .collect();
    if let (Some(wanted), true) = (rule_id, ids.is_empty()) {
        raise(
            Code::ERRCODE_UNDEFINED_OBJECT,
            format!("table {} has no rule {wanted}", table.qualified_name()),
            format!("See SELECT id, channel FROM ably.rules WHERE relid = '{}'::regclass;", table.qualified_name().replace('\'', "''")),
        );
    }
    for id in &ids {
        drop_triggers(&table.qualified_name(), *id);
        rule_store::delete(*id);
    }
    ids.len() as i32
}

#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.publish(channel text, name text, data jsonb)
RETURNS bigint VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.publish(text, text, jsonb) IS
    'Queue one message in the current transaction; it is published after COMMIT. Returns the queue id';
"#
)]
fn publish(channel: Option<&str>, name: Option<&str>, data: Option<pgrx::JsonB>) -> i64 {
    let Some(channel) = channel else {
        raise(Code::ERRCODE_NULL_VALUE_NOT_ALLOWED, "channel must not be NULL", "Pass an Ably channel name.");
    };
    if let Some(problem) = channel_name_problem(channel) {
        raise(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid channel name \"{channel}\": {problem}"),
            "Ably channel names must not be empty, start with '[' or ':', or contain line breaks.",
        );
    }
    grants::check_channel(channel);
    let data = data.map(|d| d.0).unwrap_or(serde_json::Value::Null);
    let text = serde_json::to_string(&data).expect("a JSON value serializes");
    queue::enqueue_text(None, channel, name, &text)
}
