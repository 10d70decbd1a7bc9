//! Keeps the API key out of the server log. PostgreSQL itself logs
//! `parameter "ably.api_key" changed to "<value>"` on reload, and
//! `log_statement` would log `ALTER SYSTEM SET ably.api_key = '<value>'`;
//! an `emit_log_hook` masks the value in both, and any occurrence of the
//! configured key's secret in any log line.

use crate::guc;
use pgrx::pg_sys;
use std::ffi::{CStr, CString};

const SETTING: &str = "ably.api_key";
const MASK: &str = "********";

static mut PREVIOUS_HOOK: pg_sys::emit_log_hook_type = None;

pub fn install() {
    unsafe {
        PREVIOUS_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(redact_hook);
    }
}

/// Masks quoted values that follow the setting's name, and the secret.
pub fn redact(text: &str, secret: Option<&str>) -> Option<String> {
    let mut out = text.to_string();
    let mut changed = false;
    if let Some(secret) = secret.filter(|s| s.len() >= 4) {
        if out.contains(secret) {
            out = out.replace(secret, MASK);
            changed = true;
        }
    }
    if let Some(at) = out.find(SETTING) {
        let (head, tail) = out.split_at(at + SETTING.len());
        let mut masked = String::with_capacity(tail.len());
        let mut chars = tail.chars().peekable();
        // the quote closing a quoted setting name is not a value
        if let Some(&q) = chars.peek() {
            if (q == '"' || q == '\'') && head.ends_with(&format!("{q}{SETTING}")) {
                masked.push(q);
                chars.next();
            }
        }
        while let Some(c) = chars.next() {
            if c == '\'' || c == '"' {
                masked.push(c);
                masked.push_str(MASK);
                for d in chars.by_ref() {
                    if d == c {
                        masked.push(c);
                        break;
                    }
                }
            } else {
                masked.push(c);
            }
        }
        if masked != tail {
            out = format!("{head}{masked}");
            changed = true;
        }
    }
    changed.then_some(out)
}

unsafe fn redact_field(field: *mut *mut std::ffi::c_char, secret: Option<&str>) {
    if (*field).is_null() {
        return;
    }
    let text = CStr::from_ptr(*field).to_string_lossy();
    if let Some(masked) = redact(&text, secret) {
        if let Ok(c) = CString::new(masked) {
            *field = pg_sys::pstrdup(c.as_ptr());
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn redact_hook(edata: *mut pg_sys::ErrorData) {
    let key = guc::string(&guc::API_KEY);
    let secret = key.as_deref().and_then(|k| k.split_once(':')).map(|(_, s)| s);
    for field in [
        &raw mut (*edata).message,
        &raw mut (*edata).detail,
        &raw mut (*edata).detail_log,
        &raw mut (*edata).hint,
        &raw mut (*edata).context,
        &raw mut (*edata).internalquery,
    ] {
        redact_field(field, secret);
    }
    if let Some(previous) = PREVIOUS_HOOK {
        previous(edata);
    }
}

#[cfg(test)]
mod unit_tests {
    use super::redact;

    #[test]
    fn masks_the_setting_value_and_the_secret() {
        assert_eq!(
            redact("parameter \"ably.api_key\" changed to \"app.key:s3cret\"", None).unwrap(),
            "parameter \"ably.api_key\" changed to \"********\""
        );
        assert_eq!(
            redact("statement: ALTER SYSTEM SET ably.api_key = 'app.key:s3cret'", None).unwrap(),
            "statement: ALTER SYSTEM SET ably.api_key = '********'"
        );
        assert_eq!(redact("oops app.key:s3cret here", Some("s3cret")).unwrap(), "oops app.key:******** here");
        assert!(redact("parameter \"work_mem\" changed to \"4MB\"", Some("s3cret")).is_none());
    }
}
