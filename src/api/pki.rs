//! Token PKI and the tools built on it: `GET/PUT /v1/tokenpki/{name}`
//! (staging certificate out, Apple's encrypted token file in),
//! `GET /v1/maidjwt/{name}` and `GET /v1/bypasscode`.
//!
//! Key generation, decryption, signing and PBKDF2 are CPU work: they run on
//! the blocking pool, never on the async workers or in a name's mailbox.

use super::AppState;
use super::body;
use super::error::ApiError;
use super::names::{actor, mailbox, parse_name, reject_unknown_params};
use crate::actors::{
    AcceptTokenFile, GetPki, Now, PkiOpError, PkiSlot, PutStagingPki, Resolve, ServerUuid,
    ServerUuidError,
};
use crate::domain::name::DepName;
use crate::domain::state::{PkiRuleError, RuleError};
use crate::domain::tokens;
use crate::domain::tokens::PkiPem;
use crate::pki::bypass::BypassCode;
use crate::pki::jwt;
use crate::pki::{self, KeyPair, MAX_VALIDITY_DAYS, P7mError};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};

/// Largest token file accepted; Apple's are a few kilobytes.
const P7M_BODY_LIMIT: usize = 64 * 1024;
const DEFAULT_CN: &str = "depserver";
const DEFAULT_VALIDITY_DAYS: u32 = 1;
/// Longest accepted `server_uuid` query value.
const MAX_SERVER_UUID_CHARS: usize = 64;

/// Runs CPU-heavy work on the blocking pool.
async fn cpu<T, E, F>(what: &'static str, f: F) -> Result<Result<T, E>, ApiError>
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    web::block(f)
        .await
        .map_err(|e| ApiError::internal(what, &e))
}

fn no_staging(name: &DepName) -> ApiError {
    ApiError::bad_request(
        "no-staging-pki",
        format!(
            "DEP name {:?} has no certificate to decrypt the token file with; download one with GET /v1/tokenpki/{{name}} and upload it to Apple first",
            name.as_str()
        ),
    )
}

/// The stored pair as a usable key pair; unreadable means depd's own
/// storage is damaged.
fn load_pair(pki: &PkiPem) -> Result<KeyPair, ApiError> {
    KeyPair::from_pem(&pki.cert_pem, &pki.key_pem, None)
        .map_err(|e| ApiError::internal("the stored token-PKI key pair is unreadable", &e))
}

/// `Content-Disposition` for `<name>.pem`: a plain ASCII `filename` and,
/// for names that need it, the exact UTF-8 one as `filename*` (RFC 6266).
fn attachment(name: &DepName) -> String {
    let file = format!("{}.pem", name.as_str());
    let ascii: String = file
        .chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '_',
        })
        .collect();
    if ascii == file {
        return format!("attachment; filename=\"{file}\"");
    }
    let encoded: String = file
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                char::from(b).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

fn parse_validity(raw: Option<&str>) -> Result<u32, ApiError> {
    let Some(text) = raw else {
        return Ok(DEFAULT_VALIDITY_DAYS);
    };
    text.parse::<u32>()
        .ok()
        .filter(|d| (1..=MAX_VALIDITY_DAYS).contains(d))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid-validity-days",
                format!(
                    "validity_days={text:?} must be a whole number from 1 to {MAX_VALIDITY_DAYS}"
                ),
            )
        })
}

/// `GET /v1/tokenpki/{name}?cn=..&validity_days=..`: a new key pair,
/// stored as the name's staging pair (creating the name); answers the
/// certificate to upload to Apple's portal.
pub async fn get_tokenpki(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["cn", "validity_days"])?;
    let cn = body::single(&pairs, "cn")?.unwrap_or(DEFAULT_CN).to_owned();
    pki::validate_cn(&cn).map_err(|e| ApiError::bad_request("invalid-cn", format!("cn: {e}")))?;
    let days = parse_validity(body::single(&pairs, "validity_days")?)?;

    let addr = actor(&state, &name, true).await?;
    let now = addr.send(Now).await.map_err(mailbox)?;
    let generated = cpu("generating a key pair failed", move || {
        let pair = KeyPair::generate(&cn, days, now)?;
        Ok::<_, pki::KeyError>(PkiPem {
            cert_pem: pair.cert_pem()?,
            key_pem: pair.key_pem(None)?,
        })
    })
    .await?
    .map_err(|e| ApiError::internal("generating a key pair failed", &e))?;
    let cert_pem = generated.cert_pem.clone();
    addr.send(PutStagingPki(generated))
        .await
        .map_err(mailbox)?
        .map_err(|e| ApiError::internal("storing the staging key pair failed", &e))?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/x-pem-file"))
        .insert_header((CONTENT_DISPOSITION, attachment(&name)))
        .body(cert_pem))
}

fn p7m_error(e: P7mError) -> ApiError {
    let code = match &e {
        P7mError::NotTokenFile(_) => "p7m-not-token-file",
        P7mError::BadBase64(_) => "p7m-bad-base64",
        P7mError::Truncated { .. } => "p7m-truncated",
        P7mError::NotCms(_) => "p7m-not-cms",
        P7mError::DifferentCertificate | P7mError::WrongKey => "p7m-wrong-certificate",
        P7mError::Decrypt(_) => "p7m-decrypt-failed",
        P7mError::NoMessage => "p7m-no-message",
        P7mError::BadTokens(_) => "p7m-bad-tokens",
    };
    ApiError::bad_request(code, e.to_string())
}

/// `PUT /v1/tokenpki/{name}[?force=1]` with Apple's `.p7m`: decrypt with
/// the pair the file is addressed to (staging first, then current), then
/// (one commit in the actor) consumer-key check and store the tokens;
/// from staging, the pair is also promoted to current. A file from the
/// current pair is a renewal: Apple encrypts each year's token file to the
/// certificate already registered. Answers the token JSON.
pub async fn put_tokenpki(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["force"])?;
    let force = body::flag(&pairs, "force")?;
    let file = body::read(&req, payload, P7M_BODY_LIMIT).await?;

    // An unknown name has no key pair either; it is not created.
    let addr = state
        .registry
        .send(Resolve {
            name: name.clone(),
            create: false,
        })
        .await
        .map_err(mailbox)?
        .ok_or_else(|| no_staging(&name))?;
    let mut candidates: Vec<(PkiSlot, PkiPem)> = Vec::with_capacity(2);
    for slot in [PkiSlot::Staging, PkiSlot::Current] {
        if let Some(pki) = addr.send(GetPki(slot)).await.map_err(mailbox)? {
            candidates.push((slot, pki));
        }
    }
    if candidates.is_empty() {
        return Err(no_staging(&name));
    }
    let pairs = candidates
        .iter()
        .map(|(_, pki)| load_pair(pki))
        .collect::<Result<Vec<_>, _>>()?;
    let (index, parsed) = cpu("decrypting the token file failed", move || {
        let refs: Vec<&KeyPair> = pairs.iter().collect();
        pki::decrypt_token_file_with(&file, &refs)
    })
    .await?
    .map_err(p7m_error)?;
    let (slot, used) = candidates.swap_remove(index);

    let stored = addr
        .send(AcceptTokenFile {
            tokens: parsed,
            slot,
            cert_pem: used.cert_pem,
            force,
        })
        .await
        .map_err(mailbox)?
        .map_err(|e| match e {
            PkiOpError::Rule(PkiRuleError::NoStaging) => no_staging(&name),
            PkiOpError::Rule(
                rule @ (PkiRuleError::StagingChanged | PkiRuleError::CurrentChanged),
            ) => {
                let code = if matches!(rule, PkiRuleError::StagingChanged) {
                    "staging-pki-changed"
                } else {
                    "current-pki-changed"
                };
                ApiError::new(StatusCode::CONFLICT, code, rule.to_string())
            }
            PkiOpError::Rule(PkiRuleError::Tokens(
                rule @ RuleError::ConsumerKeyMismatch { .. },
            )) => ApiError::new(
                StatusCode::CONFLICT,
                "consumer-key-mismatch",
                format!("{rule}; the tokens were not stored and no certificate was promoted"),
            ),
            PkiOpError::Store(e) => ApiError::internal("storing the tokens failed", &e),
        })?;
    Ok(HttpResponse::Ok().json(tokens::to_json(&stored)))
}

fn validate_server_uuid(raw: &str) -> Result<(), ApiError> {
    let ok = (1..=MAX_SERVER_UUID_CHARS).contains(&raw.len())
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid-server-uuid",
            format!(
                "server_uuid {raw:?} must be 1 to {MAX_SERVER_UUID_CHARS} letters, digits or dashes"
            ),
        ))
    }
}

/// `GET /v1/maidjwt/{name}[?server_uuid=..]`: an RS256 JWT signed with the
/// name's current token-PKI key.
pub async fn get_maidjwt(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = parse_name(&path)?;
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["server_uuid"])?;
    let given = body::single(&pairs, "server_uuid")?.map(str::to_owned);
    if let Some(uuid) = &given {
        validate_server_uuid(uuid)?;
    }
    let (token, server_uuid, jti) = maid_jwt(&state, &name, given).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/jwt"))
        .insert_header(("X-Server-Uuid", server_uuid))
        .insert_header(("X-Jwt-Jti", jti))
        .body(token))
}

/// A MAID JWT of `name` (for `server_uuid`, else the name's own from
/// Apple's `/account`): the token, the server UUID and the JWT id. Also
/// what answers an MDM `GetToken` for `com.apple.maid`.
pub(crate) async fn maid_jwt(
    state: &AppState,
    name: &DepName,
    given: Option<String>,
) -> Result<(String, String, String), ApiError> {
    let addr = actor(state, name, false).await?;
    let current = addr
        .send(GetPki(PkiSlot::Current))
        .await
        .map_err(mailbox)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no-current-pki",
                format!(
                    "DEP name {:?} has no current token-PKI key: upload a token file with PUT /v1/tokenpki/{{name}} first",
                    name.as_str()
                ),
            )
        })?;
    let server_uuid = match given {
        Some(uuid) => uuid,
        None => addr
            .send(ServerUuid)
            .await
            .map_err(mailbox)?
            .map_err(|e| match e {
                ServerUuidError::Unavailable(message) => {
                    ApiError::new(StatusCode::CONFLICT, "server-uuid-unavailable", message)
                }
                ServerUuidError::Apple(e) => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "server-uuid-unavailable",
                    format!(
                        "the server UUID of DEP name {:?} comes from Apple's /account, which failed: {e}; \
                         pass server_uuid= or retry",
                        name.as_str()
                    ),
                ),
            })?,
    };
    let now = addr.send(Now).await.map_err(mailbox)?;
    let pair = load_pair(&current)?;
    let jti = jwt::random_uuid().map_err(|e| ApiError::internal("making a JWT id failed", &e))?;
    let (uuid, id) = (server_uuid.clone(), jti.clone());
    let token = cpu("signing the JWT failed", move || {
        jwt::maid_jwt(pair.key(), &uuid, &id, now)
    })
    .await?
    .map_err(|e| ApiError::internal("signing the JWT failed", &e))?;
    Ok((token, server_uuid, jti))
}

/// `GET /v1/bypasscode[?raw=HEX | ?code=CODE]`: a random code, or the
/// given one in all three forms.
pub async fn get_bypasscode(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let pairs = body::query_pairs(req.query_string())?;
    reject_unknown_params(&pairs, &["raw", "code"])?;
    let invalid = |e: crate::pki::bypass::BypassError| {
        ApiError::bad_request("invalid-bypass-code", e.to_string())
    };
    let code = match (body::single(&pairs, "raw")?, body::single(&pairs, "code")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "bad-query",
                "give either raw or code, not both",
            ));
        }
        (Some(raw), None) => BypassCode::from_hex(raw).map_err(invalid)?,
        (None, Some(code)) => BypassCode::from_code(code).map_err(invalid)?,
        (None, None) => BypassCode::random()
            .map_err(|e| ApiError::internal("making a random bypass code failed", &e))?,
    };
    let (raw, human) = (code.to_hex(), code.to_code());
    let hash = cpu("deriving the escrow key failed", move || code.escrow_hash())
        .await?
        .map_err(|e| ApiError::internal("deriving the escrow key failed", &e))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "raw": raw, "code": human, "hash": hash })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_safe_header_values() {
        let plain = DepName::parse("acme").expect("name");
        assert_eq!(attachment(&plain), "attachment; filename=\"acme.pem\"");
        let odd = DepName::parse("é \"x\"").expect("name");
        let value = attachment(&odd);
        assert!(value.is_ascii(), "{value}");
        assert_eq!(
            value,
            "attachment; filename=\"_ _x_.pem\"; filename*=UTF-8''%C3%A9%20%22x%22.pem"
        );
    }
}
