//! Deserialisers for integer fields that clients send in more than one shape:
//! msgpack may carry an integral float, and TokenRequests built by hand may
//! carry `ttl`/`timestamp` as decimal strings. Non-integral values are errors.

use serde::{de, Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberLike {
    Int(i64),
    Uint(u64),
    Float(f64),
    Text(String),
}

fn to_i64<E: de::Error>(n: NumberLike) -> Result<i64, E> {
    match n {
        NumberLike::Int(i) => Ok(i),
        NumberLike::Uint(u) => i64::try_from(u).map_err(|_| E::custom("integer out of range")),
        NumberLike::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        NumberLike::Float(_) => Err(E::custom("expected an integer")),
        NumberLike::Text(s) => s.trim().parse().map_err(|_| E::custom("expected an integer")),
    }
}

pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<NumberLike>::deserialize(d)? {
        None => Ok(None),
        Some(n) => to_i64(n).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_i64")]
        v: Option<i64>,
    }

    #[test]
    fn accepts_integers_integral_floats_and_decimal_strings() {
        for (text, want) in [
            (r#"{"v":5}"#, Some(5)),
            (r#"{"v":5.0}"#, Some(5)),
            (r#"{"v":"3600000"}"#, Some(3_600_000)),
            (r#"{"v":null}"#, None),
            (r#"{}"#, None),
        ] {
            let t: T = serde_json::from_str(text).unwrap();
            assert_eq!(t.v, want, "{text}");
        }
        assert!(serde_json::from_str::<T>(r#"{"v":5.5}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"v":"x"}"#).is_err());
    }
}
