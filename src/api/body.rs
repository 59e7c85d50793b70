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

/// One `application/x-www-form-urlencoded` key or value: `+` is a space,
/// `%XX` a byte. A `%` not followed by two hex digits is refused rather than
/// passed through (as the WHATWG parser does), and so is a result that is
/// not UTF-8.
fn decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(ApiError::bad_request(
            "bad-query",
            "malformed percent-encoding in the query: % must be followed by two hex digits",
        ));
    }
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| ApiError::bad_request("bad-query", "the query is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The encoder a client would use: `form_urlencoded`'s serializer.
    fn encode(pairs: &[(String, String)]) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        ser.finish()
    }

    proptest! {
        #[test]
        fn arbitrary_queries_decode_or_are_refused(query in ".{0,64}") {
            // Never a panic: a value or a typed error.
            let _ = query_pairs(&query);
        }

        #[test]
        fn encoded_pairs_come_back_unchanged(
            pairs in proptest::collection::vec(("[^&=]{1,12}", ".{0,16}"), 0..6)
        ) {
            let query = encode(&pairs);
            prop_assert_eq!(query_pairs(&query).expect("a well-formed query"), pairs);
        }
    }

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
        for bad in [
            "a=%", "a=%4", "a=%zz", "a=%ff%fe", "a=%+f", "a=%-1", "%+1=x", "a=%%41", "a=%4%41",
        ] {
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
