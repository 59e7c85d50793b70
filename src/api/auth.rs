//! HTTP Basic authentication: user `depserver`, password the API key (as
//! NanoDEP), compared in constant time over SHA-256 digests so neither the
//! key's content nor its length shows in the timing.

use super::AppState;
use super::error::ApiError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use openssl::sha::sha256;

pub const USER: &str = "depserver";

/// Whether an `Authorization` header value carries the right credentials.
pub fn check(header: Option<&[u8]>, api_key: &str) -> bool {
    let Some(value) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = openssl::base64::decode_block(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let user_ok = openssl::memcmp::eq(&sha256(user), &sha256(USER.as_bytes()));
    let key_ok = openssl::memcmp::eq(&sha256(password), &sha256(api_key.as_bytes()));
    user_ok & key_ok
}

/// Middleware: refuse the request with 401 unless authenticated.
pub async fn require(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let ok = match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let key = state.settings().api_key.clone();
            check(
                req.headers()
                    .get(actix_web::http::header::AUTHORIZATION)
                    .map(|h| h.as_bytes()),
                key.expose(),
            )
        }
        None => false,
    };
    if !ok {
        return Err(ApiError::unauthorized().into());
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::check;

    fn basic(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            openssl::base64::encode_block(user_pass.as_bytes())
        )
        .into_bytes()
    }

    #[test]
    fn accepts_only_the_right_user_and_key() {
        assert!(check(Some(&basic("depserver:k3y")), "k3y"));
        assert!(check(Some(&basic("depserver:with:colon")), "with:colon"));
        assert!(check(Some(b"basic ZGVwc2VydmVyOmszeQ=="), "k3y"));
        assert!(!check(Some(&basic("depserver:wrong")), "k3y"));
        assert!(!check(Some(&basic("admin:k3y")), "k3y"));
        assert!(!check(Some(&basic("depserver:")), "k3y"));
        assert!(!check(Some(&basic("depserver")), "k3y"));
        assert!(!check(Some(b"Bearer k3y"), "k3y"));
        assert!(!check(Some(b"Basic !!!"), "k3y"));
        assert!(!check(Some(b"Basic"), "k3y"));
        assert!(!check(Some(&[0xff, 0xfe]), "k3y"));
        assert!(!check(None, "k3y"));
    }
}
