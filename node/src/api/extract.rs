//! Reading request parts the same way on every route: keys from the raw path and bodies
//! under a size limit.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};

use crate::api::error::ApiError;

/// The key in a raw (still percent-encoded) request path after `prefix`.
///
/// Every `%` must start a valid two-hex-digit escape and the decoded bytes must be UTF-8;
/// otherwise 400. (Decoding leniently would make `/v1/kv/100%` and `/v1/kv/100%25` the
/// same key.)
pub fn key_from_path(path: &str, prefix: &str) -> Result<String, ApiError> {
    let raw = path.strip_prefix(prefix).unwrap_or("");
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if !ok {
                return Err(ApiError::bad_request(
                    "bad_key",
                    format!("key has a malformed percent-escape at byte {i}"),
                ));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| ApiError::bad_request("bad_key", "key is not valid UTF-8 after percent-decoding"))
}

/// How much of an over-limit body is read and thrown away so that the 413 reaches the
/// client (see [`read_body`]); past this the connection is closed with the body unread.
const DRAIN_MAX: usize = 64 << 20;

/// Reads a request body of at most `limit` bytes; larger bodies are 413 (a declared
/// `Content-Length` over the limit is refused before reading anything).
///
/// A client that does not send `Expect: 100-continue` (Python's urllib, `requests`, most
/// libraries) writes the whole body before it reads any answer. Were the node to answer
/// and close with the body still arriving, the kernel would reset the connection over the
/// unread bytes and the client would see a broken pipe, not the 413. So the 413 goes out
/// at once and the rest of such a body is read and discarded afterwards, up to
/// [`DRAIN_MAX`] (a lingering close): the connection closes once the client has sent it
/// all. A client that asked `Expect: 100-continue` sent nothing yet: nothing to drain.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || ApiError::too_large("value_too_large", format!("{what} is larger than the {limit}-byte limit"));
    let waits_for_continue =
        headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        if !waits_for_continue && declared.is_some_and(|len| len <= DRAIN_MAX) {
            tokio::spawn(drain(body, DRAIN_MAX));
        }
        return Err(too_large());
    }
    let bad = |e: axum::Error| ApiError::bad_request("bad_body", format!("could not read the request body: {e}"));
    let mut body = body;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(bad)?.into_data() else { continue };
        len += data.len();
        if len > limit {
            if !waits_for_continue {
                tokio::spawn(drain(body, DRAIN_MAX.saturating_sub(len)));
            }
            return Err(too_large());
        }
        chunks.push(data);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Reads and discards what is left of `body`, at most `max` bytes (and no longer than
/// the body deadline of `serve.rs` allows).
async fn drain(mut body: Body, max: usize) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            seen += d.len();
            if seen > max {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_strictly() {
        assert_eq!(key_from_path("/v1/kv/app/config", "/v1/kv/").unwrap(), "app/config");
        assert_eq!(key_from_path("/v1/kv/100%25", "/v1/kv/").unwrap(), "100%");
        assert_eq!(key_from_path("/v1/kv/a%20b%2Fc", "/v1/kv/").unwrap(), "a b/c");
        for bad in ["/v1/kv/100%", "/v1/kv/%ZZ", "/v1/kv/%4", "/v1/kv/%FF"] {
            assert_eq!(key_from_path(bad, "/v1/kv/").unwrap_err().code(), "bad_key", "{bad}");
        }
    }
}
