//! HTTP Basic authentication: user `depserver` (as NanoDEP) or `nanomdm`
//! (as NanoMDM, so its tools and scripts work unchanged), password the API
//! key, compared in constant time over SHA-256 digests so neither the
//! key's content nor its length shows in the timing.
//!
//! The digest compared is that of the whole decoded `user:password`: since
//! `depserver` has no colon, it equals `depserver:{key}` exactly when the
//! user is `depserver` and the password the key. The expected digest is
//! computed once per settings (see `AppState`), so a request costs one
//! SHA-256 of what the caller sent.

use super::AppState;
use super::error::ApiError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use openssl::sha::Sha256;

pub const USER: &str = "depserver";
/// NanoMDM's API user, accepted as well.
pub const MDM_USER: &str = "nanomdm";

/// SHA-256 of `depserver:{api key}` and of `nanomdm:{api key}`, what valid
/// credentials decode to.
pub type Digest = [[u8; 32]; 2];

/// The digests valid credentials hash to, for `api_key`.
pub fn expected(api_key: &str) -> Digest {
    [USER, MDM_USER].map(|user| {
        let mut h = Sha256::new();
        h.update(user.as_bytes());
        h.update(b":");
        h.update(api_key.as_bytes());
        h.finish()
    })
}

/// Whether an `Authorization` header value carries the credentials whose
/// digest is `expected`.
pub fn check_digest(header: Option<&[u8]>, expected: &Digest) -> bool {
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
    // Low-level SHA-256 (no algorithm fetch per call, unlike the one-shot
    // `openssl::sha::sha256` on OpenSSL 3).
    let mut h = Sha256::new();
    h.update(&decoded);
    let got = h.finish();
    // Both compared, in constant time, whichever matches.
    let a = openssl::memcmp::eq(&got, &expected[0]);
    let b = openssl::memcmp::eq(&got, &expected[1]);
    a | b
}

/// Whether an `Authorization` header value carries the right credentials.
#[cfg(test)]
pub fn check(header: Option<&[u8]>, api_key: &str) -> bool {
    check_digest(header, &expected(api_key))
}

/// Middleware: refuse the request with 401 unless authenticated. The
/// refusal is a response rather than an `Err`, so the middlewares around
/// it (metrics, log) still have the request it answers.
pub async fn require(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req
            .error_response(ApiError::unauthorized())
            .map_into_right_body());
    };
    let peer = req.peer_addr().map(|a| a.ip());
    if let Some(wait) = peer.and_then(|ip| state.auth_failures.refused_for(ip)) {
        return Ok(req
            .error_response(too_many_failures(wait))
            .map_into_right_body());
    }
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|h| h.as_bytes());
    let sent_credentials = header.is_some();
    if !check_digest(header, &state.credentials()) {
        let mut error = ApiError::unauthorized();
        if let (true, Some(ip)) = (sent_credentials, peer) {
            crate::metrics::auth_failure();
            let limit = state.settings().auth_failure_limit;
            if let Some(wait) = state.auth_failures.failed(ip, limit) {
                tracing::warn!(client = %ip, limit, "wrong credentials {limit} times within a minute: this address is refused for a minute");
                error = too_many_failures(wait);
            }
        }
        return Ok(req.error_response(error).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// 429 with `Retry-After` in whole seconds (at least 1).
fn too_many_failures(wait: std::time::Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::new(
        actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        "too-many-auth-failures",
        format!(
            "too many wrong credentials from this address; try again in {} s",
            secs.max(1)
        ),
    )
    .header("Retry-After", secs.max(1).to_string())
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
        assert!(check(Some(&basic("nanomdm:k3y")), "k3y"));
        assert!(!check(Some(&basic("nanomdm:wrong")), "k3y"));
        assert!(!check(Some(&basic("micromdm:k3y")), "k3y"));
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
        assert!(!check(Some(&basic("depserver:k3yk3y")), "k3y"));
        assert!(!check(Some(&basic("depserverk3y")), "k3y"));
        assert!(!check(Some(&basic(":depserver:k3y")), "k3y"));
    }
}
