//! Channel names and the templates that build them from a row.
//!
//! A template such as `chat:{room_id}` is literal text with `{column}`
//! placeholders; `{{` and `}}` stand for literal braces. Column names are only
//! ever looked up, never spliced into SQL, so any name works.

/// Why a channel name is not one Ably accepts (Ably error 40010).
pub fn channel_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.starts_with('[') {
        Some("it starts with '[' (reserved for channel qualifiers)")
    } else if name.starts_with(':') {
        Some("it starts with ':'")
    } else if name.contains(['\n', '\r']) {
        Some("it contains a line break")
    } else {
        None
    }
}

/// Whether an Ably capability resource pattern covers a channel: equal, `*`
/// or `[*]*` (every channel), or `ns:*` covering every name that starts
/// with `ns:` (also `ns:*` itself and `ns:a:b`). Other qualified patterns
/// (`[…]name`) only cover themselves.
pub fn pattern_covers(pattern: &str, channel: &str) -> bool {
    if pattern == channel || pattern == "*" || pattern == "[*]*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with(':') && !prefix.starts_with('[') => channel.starts_with(prefix),
        _ => false,
    }
}

/// Why a capability resource pattern is not one ably_pg accepts.
pub fn pattern_problem(pattern: &str) -> Option<&'static str> {
    if pattern.is_empty() {
        Some("it is empty")
    } else if pattern.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if pattern.contains('*') && !(pattern == "*" || pattern == "[*]*" || (pattern.ends_with(":*") && pattern.matches('*').count() == 1)) {
        Some("a wildcard is only allowed as '*' or at the end of a namespace, as in 'chat:*'")
    } else {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Column(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub segments: Vec<Segment>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut column = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => column.push(c),
                            None => return Err(format!("placeholder \"{{{column}\" is not closed")),
                        }
                    }
                    if column.is_empty() {
                        return Err("empty placeholder \"{}\"".into());
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Column(column));
                }
                '}' => return Err("unmatched \"}\" (write \"}}\" for a literal brace)".into()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Column(c) => Some(c.as_str()),
            Segment::Literal(_) => None,
        })
    }

    pub fn is_static(&self) -> bool {
        self.columns().next().is_none()
    }

    /// The text of a template without placeholders.
    pub fn static_text(&self) -> Option<String> {
        self.is_static().then(|| {
            self.segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => l.as_str(),
                    Segment::Column(_) => "",
                })
                .collect()
        })
    }

    /// The same template with placeholder `old` renamed to `new`.
    pub fn renamed(&self, old: &str, new: &str) -> Template {
        let segments = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Column(c) if c == old => Segment::Column(new.to_string()),
                other => other.clone(),
            })
            .collect();
        Template { segments }
    }

    /// The literal text every rendering starts with.
    pub fn static_prefix(&self) -> &str {
        match self.segments.first() {
            Some(Segment::Literal(l)) => l,
            _ => "",
        }
    }

    /// Whether every channel this template can render is covered by
    /// `pattern`: a static template by matching, a templated one only by a
    /// pattern that covers anything after its literal prefix.
    pub fn fits(&self, pattern: &str) -> bool {
        if let Some(text) = self.static_text() {
            return pattern_covers(pattern, &text);
        }
        if pattern == "*" || pattern == "[*]*" {
            return true;
        }
        match pattern.strip_suffix('*') {
            Some(prefix) if prefix.ends_with(':') && !prefix.starts_with('[') => self.static_prefix().starts_with(prefix),
            _ => false,
        }
    }

    /// Checks what can be checked before any row exists: a static name must
    /// be valid, and the literal parts of a templated one must not make every
    /// rendering invalid.
    pub fn channel_problem(&self) -> Option<&'static str> {
        if let Some(text) = self.static_text() {
            return channel_name_problem(&text);
        }
        if let Some(Segment::Literal(first)) = self.segments.first() {
            if first.starts_with('[') || first.starts_with(':') {
                return channel_name_problem(first);
            }
        }
        self.segments.iter().find_map(|s| match s {
            Segment::Literal(l) if l.contains(['\n', '\r']) => Some("it contains a line break"),
            _ => None,
        })
    }
}

impl std::fmt::Display for Template {
    /// The template text (parsing it gives this template back).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => f.write_str(&l.replace('{', "{{").replace('}', "}}"))?,
                Segment::Column(c) => write!(f, "{{{c}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn parses_placeholders_and_escapes() {
        let t = Template::parse("chat:{room_id}:{{x}}").unwrap();
        assert_eq!(
            t.segments,
            vec![
                Segment::Literal("chat:".into()),
                Segment::Column("room_id".into()),
                Segment::Literal(":{x}".into()),
            ]
        );
        assert!(!t.is_static());
        let t = Template::parse("{x\"; DROP TABLE t; --}").unwrap();
        assert_eq!(t.columns().collect::<Vec<_>>(), vec!["x\"; DROP TABLE t; --"]);
    }

    #[test]
    fn renaming_a_placeholder_keeps_the_rest() {
        let t = Template::parse("room-{room}:{{x}}").unwrap();
        assert_eq!(t.renamed("room", "room_id").to_string(), "room-{room_id}:{{x}}");
        assert_eq!(Template::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn rejects_malformed_templates() {
        assert!(Template::parse("chat:{room").is_err());
        assert!(Template::parse("chat:{}").is_err());
        assert!(Template::parse("chat:}").is_err());
    }

    #[test]
    fn channel_rules() {
        assert!(channel_name_problem("chat:1").is_none());
        assert!(channel_name_problem("").is_some());
        assert!(channel_name_problem("[meta]x").is_some());
        assert!(channel_name_problem(":x").is_some());
        assert!(channel_name_problem("a\nb").is_some());
        assert_eq!(Template::parse(":{id}").unwrap().channel_problem(), Some("it starts with ':'"));
        assert!(Template::parse("{id}").unwrap().channel_problem().is_none());
    }

    #[test]
    fn templates_fit_patterns_only_when_every_rendering_does() {
        let fits = |t: &str, p: &str| Template::parse(t).unwrap().fits(p);
        assert!(fits("chat:{room_id}", "chat:*"));
        assert!(fits("chat:{room_id}", "*"));
        assert!(!fits("chat{room_id}", "chat:*"));
        assert!(!fits("{author}", "chat:*"));
        assert!(!fits("chat:{room_id}", "chat:1"));
        assert!(fits("chat:1", "chat:1"));
        assert!(fits("chat:1", "chat:*"));
        assert!(!fits("chatter", "chat:*"));
        assert!(pattern_problem("chat:*").is_none());
        assert!(pattern_problem("ch*at").is_some());
        assert!(pattern_problem("a\nb").is_some());
    }
}
