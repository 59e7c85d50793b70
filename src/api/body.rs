//! Reading request input with limits and clear errors: bodies up to a size
//! (413 beyond it, before reading it all when `Content-Length` says so), and
//! query strings with repeated keys (which `web::Query` cannot express).

use super::error::ApiError;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

/// Largest body accepted by the JSON configuration endpoints.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

pub async fn read(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request("bad-body", format!("could not read the request body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The query string as decoded `(key, value)` pairs, in order.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The single value of `key`, refusing a key given twice.
pub fn single<'a>(pairs: &'a [(String, String)], key: &str) -> Result<Option<&'a str>, ApiError> {
    let mut found = pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(ApiError::bad_request(
            "bad-query",
            format!("query parameter {key} is given more than once"),
        ));
    }
    Ok(first)
}

/// `force=1` (also `true`, `yes`); absent or `0`/`false`/`no` is false.
pub fn flag(pairs: &[(String, String)], key: &str) -> Result<bool, ApiError> {
    match single(pairs, key)? {
        None | Some("0") | Some("false") | Some("no") => Ok(false),
        Some("1") | Some("true") | Some("yes") | Some("") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "bad-query",
            format!("query parameter {key}={other:?} must be 1 or 0"),
        )),
    }
}

fn decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "bad-query",
                            "malformed percent-encoding in the query",
                        )
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("bad-query", "the query is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_repeated_keys_in_order() {
        let pairs = query_pairs("dep_name=a&dep_name=b%20c&limit=5&x+y=1%2B1&&flag").expect("ok");
        let want = [
            ("dep_name", "a"),
            ("dep_name", "b c"),
            ("limit", "5"),
            ("x y", "1+1"),
            ("flag", ""),
        ];
        assert_eq!(
            pairs,
            want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
        );
    }

    #[test]
    fn rejects_malformed_queries() {
        for bad in ["a=%", "a=%4", "a=%zz", "a=%ff%fe"] {
            assert!(query_pairs(bad).is_err(), "{bad}");
        }
        let pairs = query_pairs("force=1&force=0").expect("ok");
        assert!(single(&pairs, "force").is_err());
        let pairs = query_pairs("force=maybe").expect("ok");
        assert!(flag(&pairs, "force").is_err());
        let pairs = query_pairs("force=1").expect("ok");
        assert_eq!(flag(&pairs, "force").ok(), Some(true));
        assert_eq!(flag(&[], "force").ok(), Some(false));
    }
}
