//! SQL-surface tests, run inside a real PostgreSQL 15 with ably_pg preloaded
//! (`cargo pgrx test pg15`). Each test runs in its own transaction.

#[pgrx::pg_schema]
mod tests {
    use pgrx::pg_sys::panic::CaughtError;
    use pgrx::prelude::*;
    use pgrx::{PgSqlErrorCode, PgTryBuilder};

    fn run(sql: &str) {
        Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn json(sql: &str) -> serde_json::Value {
        one::<pgrx::JsonB>(sql).map(|j| j.0).unwrap_or(serde_json::Value::Null)
    }

    /// Runs `sql` in a subtransaction expecting an error; returns
    /// (SQLSTATE, message, hint). The subtransaction is rolled back as
    /// PostgreSQL requires after an error.
    fn error_of(sql: &str) -> (PgSqlErrorCode, String, Option<String>) {
        let context = unsafe { pg_sys::CurrentMemoryContext };
        let owner = unsafe { pg_sys::CurrentResourceOwner };
        unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
        let sql_owned = sql.to_string();
        let result = PgTryBuilder::new(move || {
            Spi::run(&sql_owned).unwrap();
            unsafe {
                pg_sys::ReleaseCurrentSubTransaction();
                pg_sys::MemoryContextSwitchTo(context);
                pg_sys::CurrentResourceOwner = owner;
            }
            None
        })
        .catch_others(move |e| {
            unsafe {
                pg_sys::MemoryContextSwitchTo(context);
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                pg_sys::MemoryContextSwitchTo(context);
                pg_sys::CurrentResourceOwner = owner;
            }
            match e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                    Some((r.sql_error_code(), r.message().to_string(), r.hint().map(str::to_string)))
                }
                CaughtError::RustPanic { ereport, .. } => panic!("panic, not an error: {}", ereport.message()),
            }
        })
        .execute();
        result.unwrap_or_else(|| panic!("expected an error from: {sql}"))
    }

    fn messages() -> serde_json::Value {
        json("SELECT coalesce(jsonb_agg(jsonb_build_object('channel', channel, 'name', name, 'data', data::jsonb) ORDER BY id), '[]') FROM ably.queue")
    }

    fn setup_chat() {
        run("CREATE TABLE public.messages (id bigserial PRIMARY KEY, room_id int, author text NOT NULL, body text, created_at timestamptz DEFAULT '2026-01-01 00:00:00+00')");
    }

    #[pg_test]
    fn insert_update_delete_are_queued_with_channel_name_and_data() {
        setup_chat();
        let rule = one::<i64>("SELECT ably.publish_table('public.messages', 'chat:{room_id}')").unwrap();
        assert!(rule > 0);
        run("INSERT INTO messages (room_id, author, body) VALUES (7, 'ann', 'hi')");
        run("UPDATE messages SET body = 'hello' WHERE author = 'ann'");
        run("DELETE FROM messages WHERE author = 'ann'");
        let m = messages();
        assert_eq!(m.as_array().unwrap().len(), 3, "{m}");
        assert_eq!(m[0]["channel"], "chat:7");
        assert_eq!(m[0]["name"], "messages.insert");
        assert_eq!(m[0]["data"]["event"], "insert");
        assert_eq!(m[0]["data"]["schema"], "public");
        assert_eq!(m[0]["data"]["table"], "messages");
        assert_eq!(m[0]["data"]["new"]["body"], "hi");
        assert_eq!(m[0]["data"]["old"], serde_json::Value::Null);
        assert_eq!(m[1]["name"], "messages.update");
        assert_eq!(m[1]["data"]["new"]["body"], "hello");
        assert_eq!(m[1]["data"]["old"]["body"], "hi");
        assert_eq!(m[2]["name"], "messages.delete");
        assert_eq!(m[2]["data"]["new"], serde_json::Value::Null);
        assert_eq!(m[2]["data"]["old"]["body"], "hello");
        assert_eq!(m[2]["channel"], "chat:7");
        // every column rendered as to_jsonb renders it
        assert_eq!(
            one::<bool>("SELECT (SELECT data::jsonb->'new' FROM ably.queue ORDER BY id LIMIT 1) = to_jsonb(r) FROM (SELECT 1::bigint AS id, 7 AS room_id, 'ann'::text AS author, 'hi'::text AS body, '2026-01-01 00:00:00+00'::timestamptz AS created_at) r"),
            Some(true)
        );
    }

    #[pg_test]
    fn rollbacks_leave_nothing() {
        setup_chat();
        run("SELECT ably.publish_table('messages', 'chat:{room_id}')");
        // ROLLBACK TO SAVEPOINT
        unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
        run("INSERT INTO messages (room_id, author) VALUES (1, 'x')");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue"), Some(1));
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        let (code, _, _) = error_of("INSERT INTO messages (room_id, author) VALUES (1, NULL)");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION);
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue"), Some(0));
        run("INSERT INTO messages (room_id, author) VALUES (1, 'kept')");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue"), Some(1));
    }

    #[pg_test]
    fn events_columns_name_and_condition() {
        setup_chat();
        run("SELECT ably.publish_table('messages', 'room-{room_id}', events => '{insert}', name => 'by-{author}', columns => '{id,body}', condition => $$body <> 'secret'$$)");
        run("INSERT INTO messages (room_id, author, body) VALUES (1, 'bob', 'public'), (1, 'bob', 'secret')");
        run("UPDATE messages SET body = 'x'");
        let m = messages();
        assert_eq!(m.as_array().unwrap().len(), 1, "{m}");
        assert_eq!(m[0]["name"], "by-bob", "{m}");
        assert_eq!(m[0]["channel"], "room-1", "{m}");
        let mut keys: Vec<&String> = m[0]["data"]["new"].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, vec!["body", "id"], "{m}");
    }

    #[pg_test]
    fn several_rules_per_table() {
        setup_chat();
        run("SELECT ably.publish_table('messages', 'chat:{room_id}')");
        run("SELECT ably.publish_table('messages', 'user:{author}')");
        run("INSERT INTO messages (room_id, author) VALUES (3, 'cy')");
        let m = messages();
        let channels: Vec<&str> = m.as_array().unwrap().iter().map(|x| x["channel"].as_str().unwrap()).collect();
        assert_eq!(channels, vec!["chat:3", "user:cy"]);
    }

    #[pg_test]
    fn bad_input_gets_sqlstate_message_and_hint() {
        setup_chat();
        let cases: Vec<(&str, PgSqlErrorCode, &str)> = vec![
            ("SELECT ably.publish_table('messages', 'chat:{nope}')", PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, "nope"),
            ("SELECT ably.publish_table('messages', 'chat', '{upsert}')", PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "upsert"),
            ("SELECT ably.publish_table('messages', '')", PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "invalid channel name"),
            ("SELECT ably.publish_table('messages', ':x')", PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, ":x"),
            ("SELECT ably.publish_table('messages', '[meta]x')", PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "[meta]x"),
            ("SELECT ably.publish_table('messages', 'chat:{room_id')", PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "chat:{room_id"),
            ("SELECT ably.publish_table('messages', 'c', columns => '{nope}')", PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, "nope"),
            ("SELECT ably.publish_table('messages', 'c', condition => 'nope > 1')", PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, "nope > 1"),
            ("SELECT ably.publish_table('messages', 'c', condition => 'body >')", PgSqlErrorCode::ERRCODE_SYNTAX_ERROR, "body >"),
            ("SELECT ably.publish_table('messages', 'chat:{room_id}', '{truncate}')", PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "truncate"),
            ("SELECT ably.publish_table('pg_class', 'c')", PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "pg_class"),
            ("SELECT ably.unpublish_table('messages', 424242)", PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, "424242"),
            ("SELECT ably.publish('', 'n', '{}')", PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "invalid channel name"),
        ];
        for (sql, code, needle) in cases {
            let (got, message, hint) = error_of(sql);
            assert_eq!(got, code, "{sql}: {message}");
            assert!(message.contains(needle), "{sql}: message {message:?} should name {needle:?}");
            assert!(hint.is_some(), "{sql}: no hint");
        }
        run("SELECT ably.publish_table('messages', 'chat:{room_id}')");
        let (code, message, hint) = error_of("SELECT ably.publish_table('messages', 'chat:{room_id}')");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT, "{message}");
        assert!(hint.unwrap().contains("unpublish_table"));
    }

    #[pg_test]
    fn only_the_owner_may_publish_and_publish_is_not_public() {
        setup_chat();
        run("CREATE ROLE ably_test_stranger");
        run("GRANT USAGE ON SCHEMA public TO ably_test_stranger");
        run("SET ROLE ably_test_stranger");
        let (code, _, _) = error_of("SELECT ably.publish_table('messages', 'c')");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE);
        let (code, _, _) = error_of("SELECT ably.publish('c', 'n', '{}')");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE);
        let (code, _, _) = error_of("INSERT INTO ably.queue_0 (part, channel, data) VALUES (0, 'c', '{}')");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE);
        let (code, _, _) = error_of("DELETE FROM ably.rules");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE);
        run("RESET ROLE");
        // a writer without any right on the ably schema still gets its change queued
        run("SELECT ably.publish_table('messages', 'chat:{room_id}')");
        run("GRANT INSERT ON messages TO ably_test_stranger");
        run("DO $$ BEGIN EXECUTE format('GRANT USAGE ON SEQUENCE %s TO ably_test_stranger', pg_get_serial_sequence('messages', 'id')); END $$");
        run("SET ROLE ably_test_stranger");
        run("INSERT INTO messages (room_id, author) VALUES (1, 'stranger')");
        run("RESET ROLE");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue"), Some(1));
    }

    #[pg_test]
    fn temporary_tables_cannot_be_published() {
        run("CREATE TEMP TABLE scratch (id int, room_id int)");
        let (code, message, hint) = error_of("SELECT ably.publish_table('scratch', 'chat:{room_id}')");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, "{message}");
        assert!(message.contains("temporary"), "{message}");
        assert!(hint.is_some());
    }

    #[pg_test]
    fn conditions_are_single_expressions_compiled_once() {
        setup_chat();
        for bad in ["true; DROP TABLE messages", "true FROM pg_authid", "body = 'a' UNION SELECT true", "true AS x"] {
            let (code, message, _) = error_of(&format!("SELECT ably.publish_table('messages', 'c', condition => $${bad}$$)"));
            assert_eq!(code, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "{bad}: {message}");
        }
        // an unqualified user function does not resolve: the path is pinned
        run("CREATE FUNCTION public.is_public(text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT $1 <> 'secret' $$");
        let (code, _, hint) = error_of("SELECT ably.publish_table('messages', 'c', condition => 'is_public(body)')");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION);
        assert!(hint.unwrap().contains("schema"));
        let rule = one::<i64>("SELECT ably.publish_table('messages', 'c', condition => 'public.is_public(body)')").unwrap();
        // stored as PostgreSQL deparses it, and compiled into ably.conditions
        let text = one::<String>(&format!("SELECT condition FROM ably.rules WHERE id = {rule}")).unwrap();
        assert!(text.contains("public.is_public(body)"), "{text}");
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM ably.conditions WHERE rule_id = {rule}")), Some(1));
        run("INSERT INTO messages (room_id, author, body) VALUES (1, 'a', 'hello'), (1, 'a', 'secret')");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue"), Some(1));
        // the function it calls cannot be dropped from under it
        let (code, _, _) = error_of("DROP FUNCTION public.is_public(text)");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST);
    }

    #[pg_test]
    fn conditions_run_with_the_owners_rights_for_every_writer() {
        run("CREATE ROLE ably_test_owner");
        run("CREATE ROLE ably_test_writer");
        run("GRANT ably_publisher TO ably_test_owner");
        run("CREATE SCHEMA owner_only AUTHORIZATION ably_test_owner");
        run("GRANT CREATE, USAGE ON SCHEMA public TO ably_test_owner");
        run("GRANT USAGE ON SCHEMA public TO ably_test_writer");
        run("SET ROLE ably_test_owner");
        run("CREATE TABLE public.owned (id int, body text)");
        run("CREATE FUNCTION owner_only.allowed(text) RETURNS boolean LANGUAGE sql AS $$ SELECT $1 <> 'hidden' $$");
        run("SELECT ably.publish_table('public.owned', 'owned', condition => 'owner_only.allowed(body)')");
        run("GRANT INSERT ON public.owned TO ably_test_writer");
        run("RESET ROLE");
        run("SET ROLE ably_test_writer");
        run("INSERT INTO public.owned VALUES (1, 'shown'), (2, 'hidden')");
        run("RESET ROLE");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue WHERE channel = 'owned'"), Some(1));
    }

    #[pg_test]
    fn channel_grants_limit_rules_and_publish() {
        setup_chat();
        run("CREATE ROLE ably_test_app");
        run("GRANT ably_publisher TO ably_test_app");
        run("ALTER TABLE messages OWNER TO ably_test_app");
        run("GRANT USAGE ON SCHEMA public TO ably_test_app");
        assert_eq!(one::<i32>("SELECT ably.grant_channels('ably_test_app', '{chat:*,notices}')"), Some(2));
        run("SET ROLE ably_test_app");
        run("SELECT ably.publish_table('messages', 'chat:{room_id}')");
        run("SELECT ably.publish('notices', 'n', '{}')");
        for sql in [
            "SELECT ably.publish_table('messages', '{author}')",
            "SELECT ably.publish_table('messages', 'chatter{room_id}')",
            "SELECT ably.publish('admin', 'n', '{}')",
        ] {
            let (code, message, hint) = error_of(sql);
            assert_eq!(code, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "{sql}: {message}");
            assert!(hint.unwrap().contains("grant_channels"), "{sql}");
        }
        run("RESET ROLE");
        let (code, _, _) = error_of("SELECT ably.grant_channels('ably_test_app', '{ch*at}')");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        assert_eq!(one::<i32>("SELECT ably.revoke_channels('ably_test_app')"), Some(2));
        run("SET ROLE ably_test_app");
        run("SELECT ably.publish('admin', 'n', '{}')");
        run("RESET ROLE");
    }

    #[pg_test]
    fn publishing_needs_ably_publisher() {
        run("CREATE ROLE ably_test_nobody");
        run("SET ROLE ably_test_nobody");
        for sql in [
            "SELECT ably.publish('c', 'n', '{}')",
            "SELECT ably.publish_table('pg_class', 'c')",
            "SELECT ably.unpublish_table('pg_class')",
            "SELECT ably.grant_channels('ably_test_nobody', '{*}')",
            "SELECT ably.create_token_request('x')",
        ] {
            let (code, message, _) = error_of(sql);
            assert_eq!(code, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "{sql}: {message}");
        }
        run("RESET ROLE");
    }

    #[pg_test]
    fn retrying_dead_letters_never_sends_an_older_version_after_a_newer_one() {
        setup_chat();
        let rule = one::<i64>("SELECT ably.publish_table('messages', 'chat:{room_id}')").unwrap();
        run("INSERT INTO messages (id, room_id, author, body) VALUES (1, 1, 'a', 'v1'), (2, 1, 'a', 'v1')");
        // Both inserts were refused by Ably (say); row 1 changed since.
        run(&format!(
            "INSERT INTO ably.dead_letters (id, rule_id, channel, name, data, enqueued_at, error_message) \
             SELECT -id, {rule}, channel, name, data, enqueued_at, 'refused' FROM ably.queue"
        ));
        run("UPDATE messages SET body = 'v2' WHERE id = 1");
        let queued_before = one::<i64>("SELECT count(*) FROM ably.queue").unwrap();
        assert_eq!(one::<i64>("SELECT ably.retry_dead_letters()"), Some(1), "only row 2's insert is still current");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue").unwrap(), queued_before + 1);
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.dead_letters"), Some(1), "row 1's old version stays");
        assert_eq!(one::<i64>("SELECT ably.retry_dead_letters(force => true)"), Some(1));
        // A change with no channel is sent only to a channel given for it.
        run("INSERT INTO messages (id, room_id, author, body) VALUES (3, NULL, 'a', 'x')");
        assert_eq!(one::<i64>("SELECT ably.retry_dead_letters()"), Some(0));
        assert_eq!(one::<i64>("SELECT ably.retry_dead_letters(channel => 'chat:lost')"), Some(1));
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue WHERE channel = 'chat:lost'"), Some(1));
    }

    #[pg_test]
    fn rules_follow_renames_and_type_changes_are_refused_with_a_hint() {
        setup_chat();
        run("SELECT ably.publish_table('messages', 'chat:{room_id}', columns => '{id,room_id,body}', condition => $$body <> 'x'$$)");
        run("ALTER TABLE messages RENAME COLUMN room_id TO room");
        run("ALTER TABLE messages RENAME COLUMN body TO text");
        assert_eq!(one::<String>("SELECT channel FROM ably.rules").as_deref(), Some("chat:{room}"));
        assert_eq!(one::<String>("SELECT columns::text FROM ably.rules").as_deref(), Some("{id,room,text}"));
        assert_eq!(one::<String>("SELECT condition FROM ably.rules").as_deref(), Some("(text <> 'x'::text)"));
        run("INSERT INTO messages (room, author, text) VALUES (4, 'a', 'hi')");
        assert_eq!(one::<String>("SELECT channel FROM ably.queue").as_deref(), Some("chat:4"));
        let (code, _, hint) = error_of("ALTER TABLE messages ALTER COLUMN room TYPE bigint");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED);
        assert!(hint.unwrap().contains("unpublish_table"));
        // DROP COLUMN ... CASCADE takes the rule with its trigger.
        run("ALTER TABLE messages DROP COLUMN room CASCADE");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.rules"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ably_rule_%'"), Some(0));
    }

    #[pg_test]
    fn hostile_identifiers_are_plain_names() {
        run(r#"CREATE TABLE "x""; DROP TABLE t; --" ("y""; DROP TABLE t; --" int, "}" text)"#);
        run(r#"SELECT ably.publish_table('"x""; DROP TABLE t; --"', 'c:{y"; DROP TABLE t; --}')"#);
        run(r#"INSERT INTO "x""; DROP TABLE t; --" VALUES (5, 'z')"#);
        let m = messages();
        assert_eq!(m[0]["channel"], "c:5");
        assert_eq!(m[0]["data"]["table"], "x\"; DROP TABLE t; --");
        assert_eq!(one::<i32>(r#"SELECT ably.unpublish_table('"x""; DROP TABLE t; --"')"#), Some(1));
        assert_eq!(one::<i64>(r#"SELECT count(*) FROM pg_trigger WHERE tgrelid = '"x""; DROP TABLE t; --"'::regclass"#), Some(0));
    }

    #[pg_test]
    fn null_template_column_is_dead_lettered_not_lost() {
        setup_chat();
        run("SELECT ably.publish_table('messages', 'chat:{room_id}')");
        run("INSERT INTO messages (room_id, author) VALUES (NULL, 'nobody')");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue"), Some(0));
        let reason = one::<String>("SELECT error_message FROM ably.dead_letters").unwrap();
        assert!(reason.contains("room_id"), "{reason}");
    }

    #[pg_test]
    fn every_type_renders_like_to_jsonb() {
        run("CREATE TYPE public.pair AS (a int, b text)");
        run("CREATE DOMAIN public.positive AS int CHECK (VALUE > 0)");
        run("CREATE TABLE public.kinds (id int PRIMARY KEY, u text, big text, b bytea, arr int[], n numeric, j json, jb jsonb, ts timestamptz, d date, c pair, p positive, g int GENERATED ALWAYS AS (id * 2) STORED, f float8, bo boolean)");
        run("SELECT ably.publish_table('kinds', 'kinds')");
        run("INSERT INTO kinds (id, u, big, b, arr, n, j, jb, ts, d, c, p, f, bo) VALUES (1, 'héllo ✓ 日本', repeat('x', 200000), '\\x00ff', '{1,NULL,3}', 12345678901234567890.123, '{\"k\": [1, 2]}', '{\"z\": 1, \"a\": null}', '2026-11-28 12:00:00+00', '2026-11-28', ROW(1, 'q'), 9, 'NaN', true)");
        assert_eq!(
            one::<bool>("SELECT (SELECT data::jsonb->'new' FROM ably.queue) = (SELECT to_jsonb(k) FROM kinds k)"),
            Some(true)
        );
        let m = messages();
        assert_eq!(m[0]["data"]["new"]["g"], 2);
        assert_eq!(m[0]["data"]["new"]["big"].as_str().unwrap().len(), 200000);
        assert_eq!(m[0]["data"]["new"]["u"], "héllo ✓ 日本");
    }

    #[pg_test]
    fn partitions_copy_and_multi_row_insert() {
        run("CREATE TABLE public.events (id int, region text) PARTITION BY LIST (region)");
        run("CREATE TABLE public.events_eu PARTITION OF events FOR VALUES IN ('eu')");
        run("SELECT ably.publish_table('events', 'region:{region}')");
        // a partition whose attribute numbers differ from the parent's
        run("CREATE TABLE public.events_us (region text, extra int, id int)");
        run("ALTER TABLE events_us DROP COLUMN extra");
        run("ALTER TABLE events ATTACH PARTITION events_us FOR VALUES IN ('us')");
        run("INSERT INTO events (id, region) SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 4) g");
        run("COPY events (id, region) FROM PROGRAM 'printf \"10,eu\\n11,us\\n\"' WITH (FORMAT csv)");
        let m = messages();
        let got: Vec<(String, i64)> = m
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["channel"].as_str().unwrap().to_string(), x["data"]["new"]["id"].as_i64().unwrap()))
            .collect();
        assert_eq!(got.len(), 6, "{m}");
        assert!(got.contains(&("region:us".to_string(), 11)));
        assert!(got.contains(&("region:eu".to_string(), 10)));
        assert_eq!(m[0]["data"]["table"], "events");
    }

    #[pg_test]
    fn truncate_publishes_once_per_fixed_channel_rule() {
        setup_chat();
        run("SELECT ably.publish_table('messages', 'all-messages')");
        run("SELECT ably.publish_table('messages', 'chat:{room_id}')");
        run("TRUNCATE messages");
        let m = messages();
        assert_eq!(m.as_array().unwrap().len(), 1, "{m}");
        assert_eq!(m[0]["channel"], "all-messages");
        assert_eq!(m[0]["name"], "messages.truncate");
        assert_eq!(m[0]["data"]["event"], "truncate");
    }

    #[pg_test]
    fn publish_queues_application_events() {
        let id = one::<i64>("SELECT ably.publish('notices', 'hello', '{\"a\": 1}')").unwrap();
        assert!(id > 0);
        let m = messages();
        assert_eq!(m[0]["channel"], "notices");
        assert_eq!(m[0]["name"], "hello");
        assert_eq!(m[0]["data"]["a"], 1);
    }

    #[pg_test]
    fn unpublish_and_drop_column_and_drop_table() {
        setup_chat();
        let r1 = one::<i64>("SELECT ably.publish_table('messages', 'chat:{room_id}')").unwrap();
        run("SELECT ably.publish_table('messages', 'user:{author}')");
        let (code, _, _) = error_of("ALTER TABLE messages DROP COLUMN room_id");
        assert_eq!(code, PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST);
        assert_eq!(one::<i32>(&format!("SELECT ably.unpublish_table('messages', {r1})")), Some(1));
        run("ALTER TABLE messages DROP COLUMN room_id");
        run("INSERT INTO messages (author) VALUES ('dee')");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue"), Some(1));
        run("DROP TABLE messages");
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.rules"), Some(0));
    }

    #[pg_test]
    fn a_backend_survives_many_queue_invalidations() {
        // Each TRUNCATE of a queue part invalidates the backend's cached
        // queue target; resolving it again must not use up a callback slot.
        setup_chat();
        run("SELECT ably.publish_table('messages', 'chat:{room_id}')");
        for i in 0..25 {
            run("TRUNCATE ably.queue_2");
            run(&format!("INSERT INTO messages (room_id, author) VALUES ({i}, 'loop')"));
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM ably.queue WHERE name = 'messages.insert'"), Some(25));
    }

    #[pg_test]
    fn rules_are_dumped_and_queue_is_wal_logged() {
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'ably_pg' AND c = 'ably.rules'::regclass"),
            Some(1)
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_class WHERE relnamespace = 'ably'::regnamespace AND relpersistence <> 'p'"),
            Some(0)
        );
    }

    #[pg_test]
    fn status_reports_queue_and_never_the_key() {
        run("SELECT ably.publish('s', 'n', '{}')");
        assert_eq!(one::<i64>("SELECT queue_depth FROM ably.status()"), Some(1));
        let state = one::<String>("SELECT state FROM ably.status").unwrap();
        assert!(!state.is_empty());
    }
}
