//! Decoding and validating request input: query strings, databases, TTLs, keys, content
//! types and value encodings. Pure functions; every failure is a 4xx [`ApiError`].

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;

use crate::api::error::ApiError;

/// The longest TTL accepted (ten years): anything longer is almost surely a unit mistake.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Decodes `application/x-www-form-urlencoded` text (query strings, form bodies)
/// strictly: `+` is a space, every `%` must start a valid escape, and every name and
/// value must be UTF-8 after decoding — never silently replaced, so two different byte
/// strings can never name the same key.
pub fn form_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |part: &str| -> Result<String, ApiError> {
        let bytes = part.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                if !bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return Err(ApiError::bad_request("bad_query", format!("malformed percent-escape in `{part}`")));
                }
                i += 3;
            } else {
                i += 1;
            }
        }
        let spaced = part.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| ApiError::bad_request("bad_query", format!("`{part}` is not UTF-8 after percent-decoding")))
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Refuses a JSON body that is not an object: serde's derived decoders would also take
/// an array (`["v", "5s"]`) in field order, which no client means.
pub fn require_json_object(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(ApiError::bad_request("bad_json", "the JSON body must be an object")),
    }
}

/// Parses a query string, refusing parameters the route does not know.
pub fn query(raw: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let pairs = form_pairs(raw.unwrap_or(""))?;
    let mut out = HashMap::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("unknown query parameter `{k}` (allowed: {})", allowed.join(", ")),
            ));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::bad_request("bad_query", format!("query parameter `{k}` given twice")));
        }
    }
    Ok(out)
}

/// A TTL: a duration with units (`500ms`, `5s`, `10m`, `1h`, `1m30s`) or plain seconds
/// (`30`, `1.5`). Must be positive and at most [`MAX_TTL`].
pub fn ttl(s: &str) -> Result<Duration, ApiError> {
    let bad = |why: &str| ApiError::bad_request("bad_ttl", format!("bad ttl `{s}`: {why}"));
    let s = s.trim();
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = s.parse().map_err(|_| bad("not a number"))?;
        Duration::try_from_secs_f64(secs).map_err(|_| bad("out of range"))?
    } else {
        humantime::parse_duration(s).map_err(|_| bad("expected e.g. 500ms, 5s, 10m, 1h or plain seconds"))?
    };
    if d.is_zero() {
        return Err(bad("must be positive"));
    }
    if d > MAX_TTL {
        return Err(bad("longer than ten years"));
    }
    Ok(d)
}

/// An optional JSON integer, also written with a zero fraction (`4.0`: JSON Schema's
/// `integer` counts it, serde's integers do not); anything else is refused as before.
pub fn json_int<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(n) = <Option<serde_json::Number> as serde::Deserialize>::deserialize(d)? else { return Ok(None) };
    let whole = match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => Some(u),
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => Some(f as u64),
        _ => None,
    };
    let out = whole.and_then(|u| T::try_from(u).ok());
    out.map(Some)
        .ok_or_else(|| D::Error::custom(format!("invalid value: {n}, expected a non-negative integer in range")))
}

/// A TTL given in JSON: a string as [`ttl`], or a number of seconds.
pub fn json_ttl(v: &serde_json::Value) -> Result<Duration, ApiError> {
    match v {
        serde_json::Value::String(s) => ttl(s),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() && f > 0.0 => ttl(&format!("{f}")),
            _ => Err(ApiError::bad_request("bad_ttl", format!("bad ttl {n}: must be positive seconds"))),
        },
        other => Err(ApiError::bad_request("bad_ttl", format!("bad ttl {other}: expected a string or seconds"))),
    }
}

/// The largest revision a request may name: 2^53 - 1, the largest integer every JSON
/// reader (JavaScript's numbers among them) holds exactly. A shard's revisions grow by
/// one per write and never get there; a larger one in a request is a mistake.
pub const MAX_REVISION: u64 = (1 << 53) - 1;

/// Checks a key against the size limit; keys are non-empty.
pub fn key(k: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    if k.is_empty() {
        return Err(ApiError::bad_request("bad_key", "key must not be empty"));
    }
    if k.len() > max {
        return Err(ApiError::too_large("key_too_large", format!("key is {} bytes; the limit is {max}", k.len())));
    }
    Ok(k.as_bytes().to_vec())
}

/// Checks a value against the size limit.
pub fn value_len(len: usize, max: usize) -> Result<(), ApiError> {
    if len > max {
        return Err(ApiError::too_large("value_too_large", format!("value is {len} bytes; the limit is {max}")));
    }
    Ok(())
}

/// How a PUT body is to be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// The body is the value.
    Raw,
    /// The body is `{"value": ..., "ttl": ..., "encoding": ...}`.
    Json,
}

/// Classifies a request content type. Raw: none, `application/octet-stream`, `text/*`,
/// and `application/x-www-form-urlencoded` (what `curl -d` sends). JSON:
/// `application/json` and `+json`. Anything else is 415.
pub fn body_kind(content_type: Option<&str>) -> Result<BodyKind, ApiError> {
    let Some(ct) = content_type else { return Ok(BodyKind::Raw) };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        Ok(BodyKind::Json)
    } else if mime.is_empty()
        || mime == "application/octet-stream"
        || mime.starts_with("text/")
        || mime == "application/x-www-form-urlencoded"
    {
        Ok(BodyKind::Raw)
    } else {
        Err(ApiError::UnsupportedMediaType {
            message: format!(
                "unsupported content type `{mime}`: send the raw value (application/octet-stream, text/*) or application/json"
            ),
        })
    }
}

/// The JSON body of a PUT.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    pub value: String,
    #[serde(default)]
    pub ttl: Option<serde_json::Value>,
    /// `utf8` (default) or `base64` for binary values.
    #[serde(default)]
    pub encoding: Option<String>,
}

/// Decodes a JSON PUT body into the value bytes and an optional TTL.
pub fn put_body(bytes: &[u8]) -> Result<(Vec<u8>, Option<Duration>), ApiError> {
    require_json_object(bytes)?;
    let body: PutBody = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("bad_json", format!("invalid JSON body: {e}")))?;
    let value = match body.encoding.as_deref() {
        None | Some("utf8") | Some("utf-8") => body.value.into_bytes(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(body.value.as_bytes())
            .map_err(|e| ApiError::bad_request("bad_json", format!("value is not valid base64: {e}")))?,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_json",
                format!("encoding must be `utf8` or `base64`, got `{other}`"),
            ))
        }
    };
    let ttl = body.ttl.as_ref().filter(|v| !v.is_null()).map(json_ttl).transpose()?;
    Ok((value, ttl))
}

/// A value for a JSON answer: the string itself when it is UTF-8, else base64 with
/// `"encoding": "base64"`.
pub fn encode_value(v: &[u8]) -> (String, Option<&'static str>) {
    match std::str::from_utf8(v) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(v), Some("base64")),
    }
}

/// Listing cursors: the last key returned, base64url without padding.
pub fn encode_cursor(key: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

pub fn decode_cursor(s: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| ApiError::bad_request("bad_cursor", "cursor is not one this server returned"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_accepts_units_and_plain_seconds() {
        assert_eq!(ttl("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(ttl("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(ttl("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(ttl("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(ttl("30").unwrap(), Duration::from_secs(30));
        assert_eq!(ttl("1.5").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn ttl_refuses_zero_negative_absurd_and_garbage() {
        for bad in ["0", "0s", "-5", "-5s", "abc", "", "5 parsecs", "99999999999", "1000000h", "NaN", "."] {
            let e = ttl(bad).unwrap_err();
            assert_eq!(e.code(), "bad_ttl", "{bad}");
        }
        assert!(json_ttl(&serde_json::json!(-1)).is_err());
        assert!(json_ttl(&serde_json::json!(true)).is_err());
        assert_eq!(json_ttl(&serde_json::json!(2)).unwrap(), Duration::from_secs(2));
    }

    #[test]
    fn limits_give_413_and_empty_key_400() {
        assert_eq!(key(&"k".repeat(4097), 4096).unwrap_err().status().as_u16(), 413);
        assert!(key(&"k".repeat(4096), 4096).is_ok());
        assert_eq!(key("", 4096).unwrap_err().status().as_u16(), 400);
        assert_eq!(value_len(11, 10).unwrap_err().status().as_u16(), 413);
    }

    #[test]
    fn query_refuses_unknown_and_repeated_parameters() {
        assert!(query(Some("db=1&ttl=5s"), &["db", "ttl"]).is_ok());
        assert_eq!(query(Some("tll=5s"), &["db", "ttl"]).unwrap_err().code(), "bad_query");
        assert_eq!(query(Some("db=1&db=2"), &["db"]).unwrap_err().code(), "bad_query");
    }

    #[test]
    fn form_text_decodes_strictly() {
        assert_eq!(
            form_pairs("a=1&b=x+y&c=%2F").unwrap(),
            [("a".into(), "1".into()), ("b".into(), "x y".into()), ("c".into(), "/".into())]
        );
        assert_eq!(form_pairs("flag").unwrap(), [("flag".to_string(), String::new())]);
        for bad in ["key=%FF", "key=%FE", "key=100%", "k%ZZ=v"] {
            assert_eq!(form_pairs(bad).unwrap_err().code(), "bad_query", "{bad}");
        }
    }

    #[test]
    fn json_arrays_are_not_objects() {
        assert!(put_body(br#"["hello","5s"]"#).is_err());
        assert!(require_json_object(b"  {}").is_ok());
        assert!(require_json_object(b"[1]").is_err());
    }

    #[test]
    fn content_types_are_classified() {
        assert_eq!(body_kind(None).unwrap(), BodyKind::Raw);
        assert_eq!(body_kind(Some("application/json; charset=utf-8")).unwrap(), BodyKind::Json);
        assert_eq!(body_kind(Some("text/plain")).unwrap(), BodyKind::Raw);
        assert_eq!(body_kind(Some("application/x-www-form-urlencoded")).unwrap(), BodyKind::Raw);
        assert_eq!(body_kind(Some("multipart/form-data; boundary=x")).unwrap_err().status().as_u16(), 415);
    }

    #[test]
    fn json_bodies_decode_or_say_why() {
        let (v, t) = put_body(br#"{"value":"hi","ttl":"5s"}"#).unwrap();
        assert_eq!((v.as_slice(), t), (&b"hi"[..], Some(Duration::from_secs(5))));
        let (v, _) = put_body(br#"{"value":"/w==","encoding":"base64"}"#).unwrap();
        assert_eq!(v, vec![0xff]);
        for bad in [&br#"{"value":1}"#[..], br#"{"valu":"x"}"#, b"{", br#"{"value":"x","ttl":"nope"}"#, b"\xff\xfe"] {
            assert!(put_body(bad).is_err());
        }
    }

    #[test]
    fn binary_values_round_trip_through_base64() {
        let raw = vec![0u8, 0xff, 0x80, 1];
        let (s, enc) = encode_value(&raw);
        assert_eq!(enc, Some("base64"));
        let body = serde_json::json!({"value": s, "encoding": "base64"}).to_string();
        assert_eq!(put_body(body.as_bytes()).unwrap().0, raw);
        assert_eq!(decode_cursor(&encode_cursor(b"a/b")).unwrap(), b"a/b");
    }
}
