//! Channel params on ATTACH (`channelOptions.params` or a `[?…]` qualifier):
//! `rewind` (a message count, at most 100 as in Ably, or a duration such as
//! `10s`, `2m`, `1h`) and `modes` (a comma list that overrides the mode
//! flags). Every other param, `delta` included, is refused with 40002: a
//! param this server would not honour must never be silently dropped. The
//! params that were applied are echoed back in ATTACHED.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::AblyError;
use crate::protocol::MODE_NAMES;

/// At most this many messages are rewound, as in Ably.
pub const MAX_REWIND: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewind {
    /// The last `n` messages.
    Count(usize),
    /// The messages of the last `d`.
    Since(Duration),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachOptions {
    pub rewind: Option<Rewind>,
    /// Modes asked for in `params.modes`; they win over the ATTACH flags.
    pub modes: Option<i64>,
    /// The params as applied, for ATTACHED.
    pub echo: BTreeMap<String, String>,
}

fn invalid(name: &str, value: &str, why: &str) -> AblyError {
    AblyError::invalid_parameter(format!("Invalid channel param {name}=\"{value}\": {why}"))
}

fn parse_rewind(value: &str) -> Result<Rewind, AblyError> {
    if let Ok(n) = value.parse::<usize>() {
        return Ok(Rewind::Count(n.min(MAX_REWIND)));
    }
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: u64 = number.parse().map_err(|_| invalid("rewind", value, "expected a count or a duration like 10s"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(invalid("rewind", value, "duration units are s, m and h")),
    };
    Ok(Rewind::Since(Duration::from_secs(seconds)))
}

fn parse_modes(value: &str) -> Result<i64, AblyError> {
    let mut modes = 0;
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let (_, bit) = MODE_NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .ok_or_else(|| invalid("modes", value, &format!("unknown or unsupported mode \"{name}\"")))?;
        modes |= bit;
    }
    if modes == 0 {
        return Err(invalid("modes", value, "no mode given"));
    }
    Ok(modes)
}

pub fn parse(params: &BTreeMap<String, String>) -> Result<AttachOptions, AblyError> {
    let mut options = AttachOptions::default();
    for (name, value) in params {
        match name.as_str() {
            "rewind" => options.rewind = Some(parse_rewind(value)?),
            "modes" => options.modes = Some(parse_modes(value)?),
            other => {
                return Err(AblyError::new(
                    40002,
                    400,
                    format!("Channel param \"{other}\" is not supported by this local server"),
                ))
            }
        }
        options.echo.insert(name.clone(), value.clone());
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flag;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn rewind_is_a_capped_count_or_a_duration() {
        let rewind = |v: &str| parse(&params(&[("rewind", v)])).map(|o| o.rewind.unwrap());
        assert_eq!(rewind("1").unwrap(), Rewind::Count(1));
        assert_eq!(rewind("500").unwrap(), Rewind::Count(MAX_REWIND));
        assert_eq!(rewind("10s").unwrap(), Rewind::Since(Duration::from_secs(10)));
        assert_eq!(rewind("2m").unwrap(), Rewind::Since(Duration::from_secs(120)));
        assert_eq!(rewind("1h").unwrap(), Rewind::Since(Duration::from_secs(3600)));
        for bad in ["", "x", "10d", "-1", "1.5s", "s"] {
            assert_eq!(rewind(bad).unwrap_err().code, 40003, "{bad}");
        }
    }

    #[test]
    fn modes_param_and_echo() {
        let o = parse(&params(&[("modes", "subscribe,presence"), ("rewind", "2")])).unwrap();
        assert_eq!(o.modes, Some(flag::SUBSCRIBE | flag::PRESENCE));
        assert_eq!(o.echo, params(&[("modes", "subscribe,presence"), ("rewind", "2")]));
        assert_eq!(parse(&params(&[("modes", "object_publish")])).unwrap_err().code, 40003);
    }

    #[test]
    fn unsupported_params_are_refused() {
        for name in ["delta", "occupancy", "whatever"] {
            let e = parse(&params(&[(name, "x")])).unwrap_err();
            assert_eq!((e.code, e.status), (40002, 400), "{name}");
        }
    }
}
