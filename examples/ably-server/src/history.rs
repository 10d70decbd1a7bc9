//! History queries over a channel's stored messages: `start`/`end` (inclusive
//! ms), `limit` (default 100, at most 1000), `direction`, the page cursor and
//! the attach serial of `untilAttach` (`from_serial` as ably-js 2.28 sends it,
//! `fromSerial` as the spec spells it), plus the `Link` header ably-js
//! follows. Link URLs are relative (`./messages?…`) and fully percent-encoded
//! so they never contain a raw comma.

use std::collections::HashMap;

use crate::error::AblyError;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Backwards,
    Forwards,
}

/// A message as stored: its position in the channel plus the message itself.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub seq: u64,
    pub timestamp: i64,
    pub item: T,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub limit: usize,
    pub direction: Direction,
    /// Sequence number the page starts at (inclusive), from a `next` link.
    pub cursor: Option<u64>,
    /// `from_serial` / `fromSerial` (realtime `untilAttach`): nothing after
    /// this sequence.
    pub until_seq: Option<u64>,
}

fn parse_num<T: std::str::FromStr>(params: &HashMap<String, String>, name: &str) -> Result<Option<T>, AblyError> {
    match params.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| AblyError::invalid_parameter(format!("Invalid value for {name}: \"{v}\""))),
    }
}

impl HistoryQuery {
    pub fn parse(params: &HashMap<String, String>) -> Result<HistoryQuery, AblyError> {
        let limit = parse_num::<usize>(params, "limit")?.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(AblyError::invalid_parameter(format!(
                "Invalid limit {limit}: must be between 1 and {MAX_LIMIT}"
            )));
        }
        let direction = match params.get("direction").map(String::as_str) {
            None | Some("") | Some("backwards") => Direction::Backwards,
            Some("forwards") => Direction::Forwards,
            Some(other) => {
                return Err(AblyError::invalid_parameter(format!(
                    "Invalid direction \"{other}\": must be backwards or forwards"
                )))
            }
        };
        let query = HistoryQuery {
            start: parse_num(params, "start")?,
            end: parse_num(params, "end")?,
            limit,
            direction,
            cursor: parse_num(params, "cursor")?,
            until_seq: match parse_num(params, "from_serial")? {
                Some(seq) => Some(seq),
                None => parse_num(params, "fromSerial")?,
            },
        };
        if let (Some(s), Some(e)) = (query.start, query.end) {
            if s > e {
                return Err(AblyError::invalid_parameter("start must not be later than end"));
            }
        }
        Ok(query)
    }

    fn matches<T>(&self, s: &Stored<T>) -> bool {
        self.start.is_none_or(|start| s.timestamp >= start)
            && self.end.is_none_or(|end| s.timestamp <= end)
            && self.until_seq.is_none_or(|until| s.seq <= until)
    }

    /// One page of `items` (stored oldest first) and the cursor of the next
    /// page, if there is one.
    pub fn page<'a, T>(&self, items: impl DoubleEndedIterator<Item = &'a Stored<T>>) -> (Vec<&'a T>, Option<u64>)
    where
        T: 'a,
    {
        let candidates: Box<dyn Iterator<Item = &'a Stored<T>>> = match self.direction {
            Direction::Backwards => {
                Box::new(items.rev().filter(move |s| self.cursor.is_none_or(|c| s.seq <= c)))
            }
            Direction::Forwards => Box::new(items.filter(move |s| self.cursor.is_none_or(|c| s.seq >= c))),
        };
        let mut page = Vec::with_capacity(self.limit.min(64));
        for s in candidates.filter(|s| self.matches(s)) {
            if page.len() == self.limit {
                return (page, Some(s.seq));
            }
            page.push(&s.item);
        }
        (page, None)
    }

    fn link(&self, resource: &str, cursor: Option<u64>, rel: &str) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(s) = self.start {
            pairs.push(("start", s.to_string()));
        }
        if let Some(e) = self.end {
            pairs.push(("end", e.to_string()));
        }
        pairs.push(("limit", self.limit.to_string()));
        pairs.push((
            "direction",
            match self.direction {
                Direction::Backwards => "backwards",
                Direction::Forwards => "forwards",
            }
            .to_string(),
        ));
        if let Some(u) = self.until_seq {
            pairs.push(("fromSerial", u.to_string()));
        }
        if let Some(c) = cursor {
            pairs.push(("cursor", c.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("<./{resource}?{query}>; rel=\"{rel}\"")
    }

    /// `Link` header value: `first` and `current` always, `next` when more remain.
    pub fn link_header(&self, resource: &str, next: Option<u64>) -> String {
        let mut links = vec![self.link(resource, None, "first"), self.link(resource, self.cursor, "current")];
        if let Some(n) = next {
            links.push(self.link(resource, Some(n), "next"));
        }
        links.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn store(n: u64) -> Vec<Stored<u64>> {
        (1..=n).map(|seq| Stored { seq, timestamp: 1000 + seq as i64, item: seq }).collect()
    }

    #[test]
    fn defaults_and_limits() {
        let q = HistoryQuery::parse(&params(&[])).unwrap();
        assert_eq!((q.limit, q.direction), (100, Direction::Backwards));
        for bad in [("limit", "1001"), ("limit", "0"), ("limit", "x"), ("direction", "up"), ("start", "abc")] {
            assert_eq!(HistoryQuery::parse(&params(&[bad])).unwrap_err().code, 40003, "{bad:?}");
        }
    }

    #[test]
    fn pages_backwards_and_forwards() {
        let items = store(5);
        let q = HistoryQuery::parse(&params(&[("limit", "2")])).unwrap();
        let (page, next) = q.page(items.iter());
        assert_eq!((page, next), (vec![&5, &4], Some(3)));
        let q2 = HistoryQuery { cursor: next, ..q.clone() };
        assert_eq!(q2.page(items.iter()), (vec![&3, &2], Some(1)));
        let q3 = HistoryQuery { cursor: Some(1), ..q };
        assert_eq!(q3.page(items.iter()), (vec![&1], None));

        let f = HistoryQuery::parse(&params(&[("limit", "3"), ("direction", "forwards")])).unwrap();
        assert_eq!(f.page(items.iter()), (vec![&1, &2, &3], Some(4)));
        let f2 = HistoryQuery { cursor: Some(4), ..f };
        assert_eq!(f2.page(items.iter()), (vec![&4, &5], None));
    }

    #[test]
    fn start_end_and_from_serial_filter() {
        let items = store(5);
        let q = HistoryQuery::parse(&params(&[("start", "1002"), ("end", "1004")])).unwrap();
        assert_eq!(q.page(items.iter()).0, vec![&4, &3, &2]);
        let q = HistoryQuery::parse(&params(&[("fromSerial", "2")])).unwrap();
        assert_eq!(q.page(items.iter()).0, vec![&2, &1]);
        // ably-js 2.28 spells it from_serial, with the zero-padded channelSerial.
        let q = HistoryQuery::parse(&params(&[("from_serial", "0000000000000003")])).unwrap();
        assert_eq!(q.page(items.iter()).0, vec![&3, &2, &1]);
    }

    #[test]
    fn link_header_is_relative_and_comma_free_inside_urls() {
        let q = HistoryQuery::parse(&params(&[("limit", "2"), ("start", "5")])).unwrap();
        let h = q.link_header("messages", Some(7));
        assert_eq!(
            h,
            "<./messages?start=5&limit=2&direction=backwards>; rel=\"first\", \
             <./messages?start=5&limit=2&direction=backwards>; rel=\"current\", \
             <./messages?start=5&limit=2&direction=backwards&cursor=7>; rel=\"next\""
        );
        // ably-js splits the header on ',' and needs each part to match its regex.
        let re_ok = h.split(',').all(|part| {
            let p = part.trim();
            p.starts_with("<./messages?") && p.contains(">; rel=\"")
        });
        assert!(re_ok);
        assert!(!q.link_header("messages", None).contains("next"));
    }
}
