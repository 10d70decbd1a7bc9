//! The rules every publish passes before it reaches a channel, whether it came
//! over REST, batch REST or realtime: channel name, publish capability,
//! message action (only creates: updates, deletes and appends are not
//! supported), clientId, total size (§A6) and message ids (§A5). A publish
//! that passes has an id on every message; one that fails changes nothing.

use crate::auth::Principal;
use crate::capability::op;
use crate::channel_name;
use crate::error::AblyError;
use crate::message::Message;
use crate::message_id::{self, IdPlan};

/// The publish param Ably's sandbox uses to test NACK handling (RSL1l1).
pub const FORCE_NACK: &str = "_forceNack";

/// 40099 when the publish params ask for a forced rejection.
pub fn check_params<'a>(mut names: impl Iterator<Item = &'a String>) -> Result<(), AblyError> {
    if names.any(|n| n == FORCE_NACK) {
        return Err(AblyError::new(40099, 400, "Publish rejected as requested by the _forceNack param"));
    }
    Ok(())
}

/// A publish that passed the rules, ready for `Channels::publish`.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub messages: Vec<Message>,
    pub ids: IdPlan,
}

/// Applies the rules. `generated_base` names the ids of messages sent without
/// ids (realtime uses `<connectionId>:<msgSerial>`); `None` picks a random base.
pub fn prepare(
    channel: &str,
    mut messages: Vec<Message>,
    principal: &Principal,
    max_message_size: usize,
    generated_base: Option<String>,
) -> Result<Prepared, AblyError> {
    channel_name::validate(channel)?;
    principal.require(channel, op::PUBLISH)?;
    if messages.is_empty() {
        return Err(AblyError::invalid_body("A publish must contain at least one message"));
    }
    if let Some(action) = messages.iter().filter_map(|m| m.action).find(|a| *a != 0) {
        return Err(AblyError::bad_request(format!(
            "Message action {action} (update, delete, append, …) is not supported by this local server; only creates"
        )));
    }
    for m in &mut messages {
        m.client_id = principal.client_id_for(m.client_id.as_deref())?;
        // Used up by a REST publish on behalf of a connection; never stored.
        m.connection_key = None;
    }
    let size: usize = messages.iter().map(Message::size).sum();
    if size > max_message_size {
        return Err(AblyError::message_too_large(size, max_message_size));
    }
    let ids: Vec<Option<&str>> = messages.iter().map(|m| m.id.as_deref()).collect();
    let mut plan = message_id::plan(&ids)?;
    if let (IdPlan::Generated { base }, Some(given)) = (&mut plan, generated_base) {
        *base = given;
    }
    if let IdPlan::Generated { base } = &plan {
        for (i, m) in messages.iter_mut().enumerate() {
            m.id = Some(format!("{base}:{i}"));
        }
    }
    Ok(Prepared { messages, ids: plan })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;
    use crate::message::Data;

    fn principal(cap: &str) -> Principal {
        Principal {
            key_name: "a.b".into(),
            capability: Capability::parse(cap).unwrap(),
            client_id: None,
            expires: None,
            by_token: false,
        }
    }

    fn text(s: &str) -> Message {
        Message { data: Some(Data::String(s.into())), ..Default::default() }
    }

    #[test]
    fn assigns_ids_from_the_generated_base() {
        let p = prepare("ch", vec![text("a"), text("b")], &principal(r#"{"*":["*"]}"#), 100, Some("conn:3".into()))
            .unwrap();
        let ids: Vec<_> = p.messages.iter().map(|m| m.id.clone().unwrap()).collect();
        assert_eq!(ids, ["conn:3:0", "conn:3:1"]);
        assert_eq!(p.ids.message_id(), "conn:3");
    }

    #[test]
    fn size_is_summed_over_the_publish() {
        let all = principal(r#"{"*":["*"]}"#);
        assert!(prepare("ch", vec![text(&"x".repeat(50)), text(&"x".repeat(50))], &all, 100, None).is_ok());
        let e = prepare("ch", vec![text(&"x".repeat(50)), text(&"x".repeat(51))], &all, 100, None).unwrap_err();
        assert_eq!((e.code, e.status), (40009, 413));
    }

    #[test]
    fn rules_are_checked_in_order() {
        let narrow = principal(r#"{"chat:*":["subscribe"]}"#);
        assert_eq!(prepare(":bad", vec![text("a")], &narrow, 100, None).unwrap_err().code, 40010);
        assert_eq!(prepare("chat:x", vec![text("a")], &narrow, 100, None).unwrap_err().code, 40160);
        let all = principal(r#"{"*":["*"]}"#);
        let mut m = text("a");
        m.id = Some("a:1".into());
        assert_eq!(prepare("x", vec![text("b"), m], &all, 100, None).unwrap_err().code, 40031);
        let update = Message { action: Some(1), ..text("u") };
        assert_eq!(prepare("x", vec![update], &all, 100, None).unwrap_err().code, 40000);
        let params = ["_forceNack".to_string()];
        assert_eq!(check_params(params.iter()).unwrap_err().code, 40099);
    }
}
