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

/// Reads a request body of at most `limit` bytes; larger bodies are 413 (a declared
/// `Content-Length` over the limit is refused before reading anything).
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::too_large("value_too_large", format!("{what} is larger than the {limit}-byte limit"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            ApiError::bad_request("bad_body", format!("could not read the request body: {e}"))
        }
    })
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
