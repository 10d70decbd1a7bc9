//! Publish rules: the SQL surface an application developer uses.
//!
//! `ably.publish_table()` validates everything up front (events, templates,
//! columns, condition, ownership, duplicates), records the rule in
//! `ably.rules` and installs the row trigger that feeds the queue. A rule never
//! changes after creation; to change one, unpublish and publish again. Each
//! trigger depends on the extension (so DROP EXTENSION removes it) and on the
//! columns it reads (so a column in use cannot be dropped by accident).

use crate::channel::{channel_name_problem, Template};
use crate::errors::{raise, raise_detail, Code};
use crate::owner::as_extension_owner;
use crate::queue;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgTryBuilder;

pub const EVENTS: [&str; 4] = ["insert", "update", "delete", "truncate"];

/// A table as the rules see it.
pub struct TableInfo {
    pub relid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    pub relkind: String,
    pub rowtype: pg_sys::Oid,
    pub columns: Vec<String>,
}

impl TableInfo {
    pub fn load(relid: pg_sys::Oid) -> Option<TableInfo> {
        Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT n.nspname::text, c.relname::text, c.relkind::text, c.reltype \
                     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.oid = $1",
                    Some(1),
                    &[relid.into()],
                )
                .ok()?
                .first();
            if row.is_empty() {
                return None;
            }
            let schema: String = row.get(1).ok()??;
            let name: String = row.get(2).ok()??;
            let relkind: String = row.get(3).ok()??;
            let rowtype: pg_sys::Oid = row.get(4).ok()??;
            let columns = client
                .select(
                    "SELECT attname::text FROM pg_catalog.pg_attribute \
                     WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    None,
                    &[relid.into()],
                )
                .ok()?
                .filter_map(|r| r.get::<String>(1).ok().flatten())
                .collect();
            Some(TableInfo { relid, schema, name, relkind, rowtype, columns })
        })
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
    if table.relkind != "r" && table.relkind != "p" {
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
    if table.schema == "ably" {
        raise(
            Code::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{} belongs to ably_pg itself", table.qualified_name()),
            "Publish your application's tables, not the extension's.",
        );
    }
    if !unsafe { pg_sys::pg_class_ownercheck(relid, pg_sys::GetUserId()) } {
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

/// Compiles a condition against the table's row type, so that a typo is
/// reported now rather than at the first write.
fn check_condition(table: &TableInfo, condition: &str) {
    let query = queue::condition_query(condition);
    let cond = condition.to_string();
    let name = table.qualified_name();
    PgTryBuilder::new(|| {
        Spi::connect(|client| {
            client.prepare(query.as_str(), &[PgOid::from(table.rowtype)]).map(|_| ())
        })
    })
    .catch_others(move |e| {
        let (code, message) = match &e {
            pg_sys::panic::CaughtError::PostgresError(r)
            | pg_sys::panic::CaughtError::ErrorReport(r)
            | pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => (r.sql_error_code(), r.message().to_string()),
        };
        raise(
            code,
            format!("invalid condition \"{cond}\" for table {name}: {message}"),
            "A condition is a boolean SQL expression over the table's columns, e.g. status = 'public'.",
        )
    })
    .execute()
    .unwrap_or_else(|e| raise(Code::ERRCODE_SYNTAX_ERROR, format!("invalid condition \"{condition}\": {e}"), "A condition is a boolean SQL expression over the table's columns."));
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
    let condition = condition.map(str::trim).filter(|c| !c.is_empty());
    if let Some(condition) = condition {
        check_condition(&table, condition);
    }

    as_extension_owner(|| {
        if let Some(existing) = duplicate_of(&table, channel, &events, name, columns.as_deref(), condition) {
            raise(
                Code::ERRCODE_DUPLICATE_OBJECT,
                format!("table {} already has rule {existing} publishing to channel \"{channel}\"", table.qualified_name()),
                format!("Use ably.unpublish_table('{}', {existing}) first, or choose another channel or name.", table.qualified_name().replace('\'', "''")),
            );
        }
        let rule_id = Spi::get_one_with_args::<i64>(
            "INSERT INTO ably.rules (relid, events, channel, name, columns, condition) \
             VALUES ($1::oid::regclass, $2, $3, $4, $5, $6) RETURNING id",
            &[
                table.relid.into(),
                events.clone().into(),
                channel.into(),
                name.into(),
                columns.clone().into(),
                condition.into(),
            ],
        )
        .ok()
        .flatten()
        .expect("INSERT ... RETURNING returns the id");
        install_triggers(&table, rule_id, &events, channel_template.is_static());
        rule_id
    })
}

/// A rule of the same table that would publish the same change twice.
fn duplicate_of(
    table: &TableInfo,
    channel: &str,
    events: &[String],
    name: Option<&str>,
    columns: Option<&[String]>,
    condition: Option<&str>,
) -> Option<i64> {
    Spi::get_one_with_args::<i64>(
        "SELECT id FROM ably.rules WHERE relid = $1::oid::regclass AND channel = $2 \
         AND events && $3 AND name IS NOT DISTINCT FROM $4 \
         AND columns IS NOT DISTINCT FROM $5 AND condition IS NOT DISTINCT FROM $6 \
         ORDER BY id LIMIT 1",
        &[
            table.relid.into(),
            channel.into(),
            events.to_vec().into(),
            name.into(),
            columns.map(|c| c.to_vec()).into(),
            condition.into(),
        ],
    )
    .ok()
    .flatten()
}

fn trigger_name(rule_id: i64, truncate: bool) -> String {
    if truncate {
        format!("ably_rule_{rule_id}_truncate")
    } else {
        format!("ably_rule_{rule_id}")
    }
}

/// Creates the rule's triggers; `adopt_triggers` then ties them to the
/// extension and to the columns they read.
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

/// Makes every new `ably.capture()` trigger part of the extension's life
/// cycle (DROP EXTENSION drops it) and pins the columns its rule reads (so
/// they cannot be dropped while in use). Runs as an event trigger at the end
/// of CREATE TRIGGER, so triggers that pg_restore recreates are adopted
/// exactly like those `ably.publish_table()` creates.
#[pg_extern(
    sql = r#"
CREATE FUNCTION ably.adopt_triggers() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#
)]
fn adopt_triggers() {
    let triggers: Vec<(pg_sys::Oid, pg_sys::Oid, i64)> = Spi::connect(|client| {
        client
            .select(
                "SELECT t.oid, t.tgrelid, (regexp_match(encode(t.tgargs, 'escape'), '^(\\d+)'))[1]::bigint \
                 FROM pg_catalog.pg_event_trigger_ddl_commands() c \
                 JOIN pg_catalog.pg_trigger t ON t.oid = c.objid \
                 WHERE c.classid = 'pg_catalog.pg_trigger'::regclass \
                   AND t.tgfoid = 'ably.capture()'::regprocedure AND t.tgparentid = 0 AND t.tgnargs > 0",
                None,
                &[],
            )
            .map(|rows| {
                rows.filter_map(|r| Some((r.get::<pg_sys::Oid>(1).ok()??, r.get::<pg_sys::Oid>(2).ok()??, r.get::<i64>(3).ok()??)))
                    .collect()
            })
            .unwrap_or_default()
    });
    if triggers.is_empty() {
        return;
    }
    let Some(extension_oid) = crate::sql::select_one::<pg_sys::Oid>(
        "SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'ably_pg'",
        &[],
    ) else {
        return;
    };
    for (trigger_oid, relid, rule_id) in triggers {
        let attnums: Vec<i16> = Spi::connect(|client| {
            client
                .select(
                    "SELECT a.attnum FROM ably.rules r, pg_catalog.pg_attribute a \
                     WHERE r.id = $1 AND a.attrelid = $2 AND NOT a.attisdropped AND a.attnum > 0 \
                     AND (a.attname = ANY (r.columns) \
                          OR strpos(r.channel, '{' || a.attname || '}') > 0 \
                          OR strpos(coalesce(r.name, ''), '{' || a.attname || '}') > 0)",
                    None,
                    &[rule_id.into(), relid.into()],
                )
                .map(|rows| rows.filter_map(|r| r.get::<i16>(1).ok().flatten()).collect())
                .unwrap_or_default()
        });
        unsafe {
            let depender = pg_sys::ObjectAddress { classId: pg_sys::TriggerRelationId, objectId: trigger_oid, objectSubId: 0 };
            let extension = pg_sys::ObjectAddress { classId: pg_sys::ExtensionRelationId, objectId: extension_oid, objectSubId: 0 };
            pg_sys::recordDependencyOn(&depender, &extension, pg_sys::DependencyType::DEPENDENCY_AUTO);
            for attnum in attnums {
                let column = pg_sys::ObjectAddress { classId: pg_sys::RelationRelationId, objectId: relid, objectSubId: attnum as i32 };
                pg_sys::recordDependencyOn(&depender, &column, pg_sys::DependencyType::DEPENDENCY_NORMAL);
            }
        }
    }
    unsafe { pg_sys::CommandCounterIncrement() };
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
    as_extension_owner(|| {
        let ids: Vec<i64> = Spi::connect(|client| {
            client
                .select(
                    "SELECT id FROM ably.rules WHERE relid = $1::oid::regclass AND ($2::bigint IS NULL OR id = $2) ORDER BY id",
                    None,
                    &[table.relid.into(), rule_id.into()],
                )
                .map(|rows| rows.filter_map(|r| r.get::<i64>(1).ok().flatten()).collect())
                .unwrap_or_default()
        });
        if let (Some(wanted), true) = (rule_id, ids.is_empty()) {
            raise(
                Code::ERRCODE_UNDEFINED_OBJECT,
                format!("table {} has no rule {wanted}", table.qualified_name()),
                format!("See SELECT id, channel FROM ably.rules WHERE relid = '{}'::regclass;", table.qualified_name().replace('\'', "''")),
            );
        }
        for id in &ids {
            for truncate in [false, true] {
                Spi::run(&format!(
                    "DROP TRIGGER IF EXISTS {} ON {}",
                    quote_identifier(trigger_name(*id, truncate)),
                    table.qualified_name()
                ))
                .unwrap_or_else(|e| raise(Code::ERRCODE_INTERNAL_ERROR, format!("could not drop trigger: {e}"), "Report this as a bug."));
            }
            Spi::run_with_args("DELETE FROM ably.rules WHERE id = $1", &[(*id).into()])
                .unwrap_or_else(|e| raise(Code::ERRCODE_INTERNAL_ERROR, format!("could not delete rule: {e}"), "Report this as a bug."));
        }
        ids.len() as i32
    })
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
    let data = data.map(|d| d.0).unwrap_or(serde_json::Value::Null);
    let text = serde_json::to_string(&data).expect("a JSON value serializes");
    queue::enqueue_text(None, channel, name, &text)
}
