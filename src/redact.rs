//! Keeps the API key out of the server log.
//!
//! PostgreSQL itself logs `parameter "ably.api_key" changed to "<value>"` on
//! reload, `log_statement` logs `ALTER SYSTEM SET ably.api_key = '<value>'`,
//! and an error in such a statement echoes it in a `STATEMENT:` line (or in
//! the message: "syntax error at or near ..."). An `emit_log_hook` treats
//! every log line about a statement that names the setting — and every line
//! that names it itself — as sensitive: the statement text is not logged,
//! the `STATEMENT:` line is suppressed, and every quoted literal in the
//! line's fields is masked.
//!
//! Invariant: masking depends only on whether the setting is named, never on
//! the configured value, so the log cannot be used to test a guess of the
//! secret.

use pgrx::pg_sys;
use std::ffi::{CStr, CString};

const SETTING: &str = "ably.api_key";
const MASK: &str = "********";
const HIDDEN_STATEMENT: &str = "<a statement that sets ably.api_key, not logged>";

static mut PREVIOUS_HOOK: pg_sys::emit_log_hook_type = None;

pub fn install() {
    unsafe {
        PREVIOUS_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(redact_hook);
    }
}

/// Whether SQL text names the setting, however it is spelled:
/// `ably.api_key`, `"ably"."api_key"`, `ABLY . API_KEY`, ...
pub fn names_setting(text: &str) -> bool {
    let normalized: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"')
        .flat_map(char::to_lowercase)
        .collect();
    normalized.contains(SETTING) || normalized.contains("api_key")
}

/// Masks every quoted literal ('…', "…", E'…', $tag$…$tag$) except the
/// setting's own name.
pub fn mask_literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            // find the closing quote ('' and "" are escaped quotes)
            let mut j = i + 1;
            let mut inner = String::new();
            while j < chars.len() {
                if chars[j] == c {
                    if j + 1 < chars.len() && chars[j + 1] == c {
                        inner.push(c);
                        j += 2;
                        continue;
                    }
                    break;
                }
                if c == '\'' && chars[j] == '\\' && j + 1 < chars.len() {
                    inner.push(chars[j]);
                    inner.push(chars[j + 1]);
                    j += 2;
                    continue;
                }
                inner.push(chars[j]);
                j += 1;
            }
            let keep = c == '"' && matches!(inner.to_lowercase().as_str(), "ably.api_key" | "ably" | "api_key");
            out.push(c);
            out.push_str(if keep { &inner } else { MASK });
            if j < chars.len() {
                out.push(c);
            }
            i = j + 1;
            continue;
        }
        if c == '$' {
            // dollar quoting: $tag$ ... $tag$
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            if j < chars.len() && chars[j] == '$' && !chars[i + 1..j].first().is_some_and(|d| d.is_ascii_digit()) {
                let tag: String = chars[i..=j].iter().collect();
                let rest: String = chars[j + 1..].iter().collect();
                if let Some(end) = rest.find(&tag) {
                    out.push_str(&tag);
                    out.push_str(MASK);
                    out.push_str(&tag);
                    i = j + 1 + rest[..end].chars().count() + tag.chars().count();
                    continue;
                }
                out.push_str(&tag);
                out.push_str(MASK);
                break;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The redacted text of one field of a sensitive line.
pub fn redact(text: &str, statement: Option<&str>) -> String {
    let text = match statement {
        Some(s) if !s.is_empty() && text.contains(s) => text.replace(s, HIDDEN_STATEMENT),
        _ => text.to_string(),
    };
    mask_literals(&text)
}

unsafe fn field_text(field: *mut std::ffi::c_char) -> Option<String> {
    (!field.is_null()).then(|| unsafe { CStr::from_ptr(field) }.to_string_lossy().into_owned())
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn redact_hook(edata: *mut pg_sys::ErrorData) {
    unsafe {
        let statement = field_text(pg_sys::debug_query_string as *mut _);
        let fields = [
            &raw mut (*edata).message,
            &raw mut (*edata).detail,
            &raw mut (*edata).detail_log,
            &raw mut (*edata).hint,
            &raw mut (*edata).context,
            &raw mut (*edata).internalquery,
        ];
        let sensitive = statement.as_deref().is_some_and(names_setting)
            || fields.iter().any(|f| field_text(**f).is_some_and(|t| names_setting(&t)));
        if sensitive {
            (*edata).hide_stmt = true;
            for field in fields {
                if let Some(text) = field_text(*field) {
                    let masked = redact(&text, statement.as_deref());
                    if masked != text {
                        if let Ok(c) = CString::new(masked) {
                            *field = pg_sys::pstrdup(c.as_ptr());
                        }
                    }
                }
            }
        }
        if let Some(previous) = PREVIOUS_HOOK {
            previous(edata);
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn sensitive_statements_are_recognised_however_spelled() {
        assert!(names_setting("ALTER SYSTEM SET ably.api_key = 'x'"));
        assert!(names_setting("alter system set \"ably\".\"api_key\" to 'x'"));
        assert!(names_setting("SET ABLY . API_KEY = 'x'"));
        assert!(names_setting("select set_config('ably.api_key', 'x', false)"));
        assert!(!names_setting("SELECT 'x'::int"));
    }

    #[test]
    fn literals_are_masked_but_the_setting_name_is_kept() {
        assert_eq!(
            mask_literals("parameter \"ably.api_key\" changed to \"app.key:s3cret\""),
            "parameter \"ably.api_key\" changed to \"********\""
        );
        assert_eq!(mask_literals("SET ably.api_key = 'it''s'"), "SET ably.api_key = '********'");
        assert_eq!(mask_literals("x = $q$sec$q$ and $$s$$"), "x = $q$********$q$ and $$********$$");
        assert_eq!(mask_literals("syntax error at or near \"'app.key:s3c\""), "syntax error at or near \"********\"");
        assert_eq!(mask_literals("$1 = 'a', $2 = 'b'"), "$1 = '********', $2 = '********'");
    }

    #[test]
    fn the_statement_itself_is_not_logged() {
        let st = "ALTER SYSTEM SET ably.api_key = foo";
        assert_eq!(redact(&format!("statement: {st}"), Some(st)), format!("statement: {HIDDEN_STATEMENT}"));
    }
}
