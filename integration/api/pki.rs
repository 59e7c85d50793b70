//! Token PKI (`GET/PUT /v1/tokenpki`), the MAID JWT, bypass codes, and the
//! offline tools of the real binary.

use crate::helpers::*;
use actix_web::http::Method;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::sign::Verifier;
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::X509;
use serde_json::Value;
use std::process::Command;

/// A reply with the headers the plain helper leaves out.
struct Full {
    status: u16,
    headers: awc::http::header::HeaderMap,
    body: Vec<u8>,
}

impl Full {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

async fn get_full(app: &TestApp, path: &str) -> Full {
    let mut resp = awc::Client::new()
        .get(app.url(path))
        .basic_auth("depserver", KEY)
        .send()
        .await
        .expect("request");
    let body = resp.body().await.expect("body").to_vec();
    Full {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body,
    }
}

async fn put_bytes(app: &TestApp, path: &str, body: &[u8]) -> Reply {
    app.call(Method::PUT, path, body).await
}

/// Downloads a staging certificate.
async fn staging_cert(app: &TestApp, name: &str) -> X509 {
    let r = get_full(app, &format!("/v1/tokenpki/{name}")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    X509::from_pem(&r.body).expect("PEM certificate")
}

/// A token file as Apple's portal makes it: the token JSON wrapped between
/// the message markers under MIME headers, CMS-encrypted to `cert`, base64
/// in S/MIME with CRLF line ends.
pub fn p7m_for(cert: &X509, json: &str) -> Vec<u8> {
    let wrapped: Vec<String> = json
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let inner = format!(
        "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\r\n{}\r\n-----END MESSAGE-----\r\n",
        wrapped.join("\r\n")
    );
    let mut certs = Stack::new().expect("stack");
    certs.push(cert.clone()).expect("push");
    let der = CmsContentInfo::encrypt(
        &certs,
        inner.as_bytes(),
        Cipher::aes_128_cbc(),
        CMSOptions::BINARY,
    )
    .expect("encrypt")
    .to_der()
    .expect("der");
    let b64 = openssl::base64::encode_block(&der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n{}\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

fn unbase64url(s: &str) -> Vec<u8> {
    let mut std: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !std.len().is_multiple_of(4) {
        std.push('=');
    }
    openssl::base64::decode_block(&std).expect("base64url")
}

/// Whether a JWT's RS256 signature verifies with the certificate's key.
fn verifies(jwt: &str, cert: &X509) -> bool {
    let Some((input, sig)) = jwt.rsplit_once('.') else {
        return false;
    };
    let public = cert.public_key().expect("public key");
    let mut v = Verifier::new(MessageDigest::sha256(), &public).expect("verifier");
    v.update(input.as_bytes()).expect("update");
    v.verify(&unbase64url(sig)).unwrap_or(false)
}

async fn jwt(app: &TestApp, name: &str) -> String {
    let r = get_full(app, &format!("/v1/maidjwt/{name}?server_uuid=SRV-1")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    String::from_utf8(r.body).expect("text")
}

/// Uploads tokens for a fresh staging certificate; returns that certificate.
async fn enroll(app: &TestApp, name: &str, consumer_key: &str) -> X509 {
    let cert = staging_cert(app, name).await;
    let r = put_bytes(
        app,
        &format!("/v1/tokenpki/{name}"),
        &p7m_for(&cert, &tokens_json(consumer_key)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    cert
}

fn cn(cert: &X509) -> String {
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_default()
}

fn validity_secs(cert: &X509) -> i32 {
    let diff = cert.not_before().diff(cert.not_after()).expect("diff");
    diff.days * 86_400 + diff.secs
}

#[actix_web::test]
async fn get_tokenpki_answers_a_staging_certificate() {
    let app = TestApp::spawn().await;
    let r = get_full(&app, "/v1/tokenpki/acme").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/x-pem-file");
    assert_eq!(
        r.header("content-disposition"),
        "attachment; filename=\"acme.pem\""
    );
    let cert = X509::from_pem(&r.body).expect("PEM");
    assert_eq!(cn(&cert), "depserver");
    assert_eq!(validity_secs(&cert), 86_400 + 600);
    assert_eq!(
        app.get("/v1/dep_names").await.json()["dep_names"],
        serde_json::json!(["acme"])
    );

    let r = get_full(&app, "/v1/tokenpki/acme?cn=Acme%20MDM&validity_days=3650").await;
    assert_eq!(r.status, 200);
    let cert = X509::from_pem(&r.body).expect("PEM");
    assert_eq!(cn(&cert), "Acme MDM");
    assert_eq!(validity_secs(&cert), 3650 * 86_400 + 600);
}

#[actix_web::test]
async fn get_tokenpki_rejects_bad_values_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let long_cn = "x".repeat(65);
    let cases = [
        ("validity_days=0", "invalid-validity-days"),
        ("validity_days=3651", "invalid-validity-days"),
        ("validity_days=-1", "invalid-validity-days"),
        ("validity_days=abc", "invalid-validity-days"),
        ("cn=", "invalid-cn"),
        ("cn=a%0Ab", "invalid-cn"),
        (&format!("cn={long_cn}"), "invalid-cn"),
        ("cn=a&cn=b", "bad-query"),
        ("color=red", "bad-query"),
    ];
    for (query, code) in cases {
        let r = app.get(&format!("/v1/tokenpki/acme?{query}")).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{query}");
    }
    assert_eq!(app.get("/v1/tokenpki/a..b").await.status, 400);
    assert_eq!(
        app.get("/v1/dep_names").await.json()["dep_names"],
        serde_json::json!([])
    );
}

#[actix_web::test]
async fn put_tokenpki_stores_tokens_and_promotes_staging() {
    let app = TestApp::spawn().await;
    let cert = staging_cert(&app, "acme").await;
    let file = p7m_for(&cert, &tokens_json("CK_1"));
    let r = put_bytes(&app, "/v1/tokenpki/acme", &file).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let want: Value = serde_json::from_str(&tokens_json("CK_1")).expect("json");
    assert_eq!(r.json(), want);
    assert_eq!(app.get("/v1/tokens/acme").await.json(), want);
    assert!(verifies(&jwt(&app, "acme").await, &cert));

    // Nothing stays staged; the same file again is addressed to what is
    // now the current certificate, so it is taken as a renewal.
    let r = put_bytes(&app, "/v1/tokenpki/acme", &file).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(verifies(&jwt(&app, "acme").await, &cert));
}

#[actix_web::test]
async fn failed_uploads_are_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    let current = enroll(&app, "acme", "CK_1").await;
    let staging = staging_cert(&app, "acme").await;
    let before = app.get("/v1/tokens/acme").await.json();

    let good = p7m_for(&staging, &tokens_json("CK_1"));
    let text = String::from_utf8(good.clone()).expect("text");
    // Cut at a line end: whole base64 lines, so the CMS itself is short.
    let cut = text[..text.len() / 2].rfind("\r\n").expect("lines") + 2;
    let truncated = &text[..cut];
    let stranger = openssl::rsa::Rsa::generate(2048).expect("rsa");
    let other_cert = {
        let key = openssl::pkey::PKey::from_rsa(stranger).expect("pkey");
        let mut name = openssl::x509::X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "someone-else").expect("cn");
        let name = name.build();
        let mut b = X509::builder().expect("builder");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        b.build()
    };
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            b"garbage \x00\xff".to_vec(),
            "p7m-not-token-file",
            "not a token file",
        ),
        (b"hello world!".to_vec(), "p7m-bad-base64", "base64"),
        (truncated.as_bytes().to_vec(), "p7m-truncated", "truncated"),
        (
            p7m_for(&other_cert, &tokens_json("CK_1")),
            "p7m-wrong-certificate",
            "different certificate",
        ),
        (
            p7m_for(&staging, r#"{"consumer_key":"CK_1"}"#),
            "p7m-bad-tokens",
            "missing",
        ),
        (
            tokens_json("CK_1").into_bytes(),
            "p7m-not-token-file",
            "PUT /v1/tokens",
        ),
    ];
    for (body, code, words) in cases {
        let r = put_bytes(&app, "/v1/tokenpki/acme", &body).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{words}");
        let message = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(words), "{message}");
        assert_eq!(app.get("/v1/tokens/acme").await.json(), before);
        assert!(verifies(&jwt(&app, "acme").await, &current));
    }
    let r = put_bytes(&app, "/v1/tokenpki/acme", &vec![b'A'; 65 * 1024]).await;
    assert_eq!(r.status, 413);

    // The staging pair is still usable after all of that.
    let r = put_bytes(&app, "/v1/tokenpki/acme?force=0", &good).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(verifies(&jwt(&app, "acme").await, &staging));

    // No staging pair at all, on a name that does not exist: 400, and the
    // name is not created.
    let r = put_bytes(&app, "/v1/tokenpki/fresh", &good).await;
    assert_eq!((r.status, r.code().as_str()), (400, "no-staging-pki"));
    assert_eq!(app.get("/v1/tokens/fresh").await.status, 404);
}

/// A token file made by the `openssl` command-line tool, a producer depd
/// did not write: the token JSON between the message markers, encrypted
/// to `cert` with `args` (`smime -encrypt -aes128`, `cms -encrypt -des3` ...).
fn openssl_token_file(cert: &X509, json: &str, args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cert.pem"), cert.to_pem().expect("pem")).expect("write");
    let wrapped: Vec<String> = json
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let msg = format!(
        "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\r\n{}\r\n-----END MESSAGE-----\r\n",
        wrapped.join("\r\n")
    );
    std::fs::write(dir.path().join("msg.txt"), msg).expect("write");
    let out = dir.path().join("token.p7m");
    let status = Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(dir.path().join("msg.txt"))
        .arg("-out")
        .arg(&out)
        .arg(dir.path().join("cert.pem"))
        .status()
        .expect("these tests need the openssl command-line tool: install the openssl package");
    assert!(status.success(), "openssl {args:?}");
    std::fs::read(&out).expect("read the token file")
}

/// The ciphers and forms the p7m unit tests decrypt.
const OPENSSL_FORMS: [&[&str]; 6] = [
    &["smime", "-encrypt", "-aes128"],
    &["smime", "-encrypt", "-aes256", "-stream"],
    &["smime", "-encrypt", "-des3"],
    &["cms", "-encrypt", "-aes128"],
    &["cms", "-encrypt", "-aes256", "-stream"],
    &["cms", "-encrypt", "-des3", "-stream"],
];

#[actix_web::test]
async fn yearly_renewal_decrypts_with_the_current_certificate() {
    let app = TestApp::spawn().await;
    for (i, args) in OPENSSL_FORMS.iter().enumerate() {
        let name = format!("renew{i}");
        let path = format!("/v1/tokenpki/{name}");
        // First year: the file is addressed to the staging certificate.
        let cert = staging_cert(&app, &name).await;
        let first = openssl_token_file(&cert, &tokens_json("CK_1"), args);
        let r = put_bytes(&app, &path, &first).await;
        assert_eq!(
            r.status,
            200,
            "{args:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(verifies(&jwt(&app, &name).await, &cert));

        // A new staging certificate waits for a portal that never got it.
        let pending = staging_cert(&app, &name).await;

        // A year later Apple encrypts the new token file to the same,
        // now current, certificate.
        let mut renewed: Value = serde_json::from_str(&tokens_json("CK_1")).expect("json");
        renewed["access_token"] = Value::from(format!("AT_renewed_{i}"));
        let second = openssl_token_file(&cert, &renewed.to_string(), args);
        let r = put_bytes(&app, &path, &second).await;
        assert_eq!(
            r.status,
            200,
            "{args:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            app.get(&format!("/v1/tokens/{name}")).await.json()["access_token"],
            renewed["access_token"]
        );
        assert!(
            verifies(&jwt(&app, &name).await, &cert),
            "a renewal keeps the current key"
        );

        // The staging pair was left alone and still takes its own file.
        let third = openssl_token_file(&pending, &tokens_json("CK_1"), args);
        let r = put_bytes(&app, &path, &third).await;
        assert_eq!(
            r.status,
            200,
            "{args:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(verifies(&jwt(&app, &name).await, &pending));
    }
}

#[actix_web::test]
async fn renewal_keeps_the_consumer_key_check_and_refuses_strangers() {
    let app = TestApp::spawn().await;
    let current = enroll(&app, "acme", "CK_1").await;
    let before = app.get("/v1/tokens/acme").await.json();
    let args = OPENSSL_FORMS[0];

    let other = openssl_token_file(&current, &tokens_json("CK_2"), args);
    let r = put_bytes(&app, "/v1/tokenpki/acme", &other).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (409, "consumer-key-mismatch")
    );
    assert_eq!(app.get("/v1/tokens/acme").await.json(), before);

    let stranger = KeyPairForTest::new();
    let r = put_bytes(
        &app,
        "/v1/tokenpki/acme",
        &openssl_token_file(&stranger.0, &tokens_json("CK_1"), args),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "p7m-wrong-certificate")
    );
    assert_eq!(app.get("/v1/tokens/acme").await.json(), before);

    let r = put_bytes(&app, "/v1/tokenpki/acme?force=1", &other).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["consumer_key"], "CK_2");
    assert!(verifies(&jwt(&app, "acme").await, &current));
}

/// A self-signed certificate depd has no key for.
struct KeyPairForTest(X509);

impl KeyPairForTest {
    fn new() -> Self {
        let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).expect("rsa"))
            .expect("pkey");
        let mut name = openssl::x509::X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "depserver").expect("cn");
        let name = name.build();
        let mut b = X509::builder().expect("builder");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).expect("t"))
            .expect("nb");
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).expect("t"))
            .expect("na");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        KeyPairForTest(b.build())
    }
}

#[actix_web::test]
async fn consumer_key_mismatch_is_409_and_promotes_nothing_unless_forced() {
    let app = TestApp::spawn().await;
    let first = enroll(&app, "acme", "CK_1").await;
    let second = staging_cert(&app, "acme").await;
    let file = p7m_for(&second, &tokens_json("CK_2"));

    let r = put_bytes(&app, "/v1/tokenpki/acme", &file).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (409, "consumer-key-mismatch")
    );
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("force=1")
    );
    assert_eq!(
        app.get("/v1/tokens/acme").await.json()["consumer_key"],
        "CK_1"
    );
    let token = jwt(&app, "acme").await;
    assert!(verifies(&token, &first), "still signed with the old key");
    assert!(!verifies(&token, &second));

    let r = put_bytes(&app, "/v1/tokenpki/acme?force=1", &file).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["consumer_key"], "CK_2");
    let token = jwt(&app, "acme").await;
    assert!(verifies(&token, &second));
    assert!(!verifies(&token, &first));
}

#[actix_web::test]
async fn redownloading_staging_keeps_the_signing_key_until_an_upload() {
    let app = TestApp::spawn().await;
    let current = enroll(&app, "acme", "CK_1").await;
    let _ = staging_cert(&app, "acme").await;
    let latest = staging_cert(&app, "acme").await;
    assert!(verifies(&jwt(&app, "acme").await, &current));
    let r = put_bytes(
        &app,
        "/v1/tokenpki/acme",
        &p7m_for(&latest, &tokens_json("CK_1")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(verifies(&jwt(&app, "acme").await, &latest));
}

#[actix_web::test]
async fn maidjwt_headers_claims_and_errors() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/v1/maidjwt/nobody").await.status, 404);
    let _ = staging_cert(&app, "acme").await;
    let r = app.get("/v1/maidjwt/acme?server_uuid=S").await;
    assert_eq!((r.status, r.code().as_str()), (409, "no-current-pki"));

    let cert = enroll(&app, "acme", "CK_1").await;
    let r = get_full(&app, "/v1/maidjwt/acme?server_uuid=ABC-123").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/jwt");
    assert_eq!(r.header("x-server-uuid"), "ABC-123");
    let token = String::from_utf8(r.body.clone()).expect("text");
    assert!(verifies(&token, &cert));
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&unbase64url(parts[0])).expect("header");
    assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
    let claims: Value = serde_json::from_slice(&unbase64url(parts[1])).expect("claims");
    assert_eq!(claims["iss"], "ABC-123");
    assert_eq!(claims["service_type"], "com.apple.maid");
    assert_eq!(claims["jti"], r.header("x-jwt-jti"));
    assert_eq!(r.header("x-jwt-jti").len(), 36);
    assert!(claims["iat"].as_i64().unwrap_or_default() > 1_700_000_000);
    let again = get_full(&app, "/v1/maidjwt/acme?server_uuid=ABC-123").await;
    assert_ne!(again.header("x-jwt-jti"), r.header("x-jwt-jti"));

    // Without server_uuid it comes from Apple's /account; here "Apple" is a
    // closed loopback port, so it cannot be had: 502 with the reason.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = format!(r#"{{"base_url":"http://127.0.0.1:{port}"}}"#);
    assert_eq!(app.put("/v1/config/acme", &config).await.status, 200);
    let r = app.get("/v1/maidjwt/acme").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (502, "server-uuid-unavailable")
    );
    for bad in ["server_uuid=", "server_uuid=a%20b", "other=1"] {
        let r = app.get(&format!("/v1/maidjwt/acme?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
    }
}

#[derive(serde::Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
}

#[derive(serde::Deserialize)]
struct Vector {
    raw: String,
    code: String,
    hash: String,
}

fn vectors() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/integration/testdata/vectors/bypasscode.json"
    );
    let text = std::fs::read_to_string(path).expect("vectors");
    serde_json::from_str::<Vectors>(&text)
        .expect("vectors JSON")
        .vectors
}

#[actix_web::test]
async fn bypasscode_api_follows_the_vectors() {
    let app = TestApp::spawn().await;
    for v in vectors() {
        let want = serde_json::json!({"raw": v.raw, "code": v.code, "hash": v.hash});
        let by_raw = app.get(&format!("/v1/bypasscode?raw={}", v.raw)).await;
        assert_eq!(by_raw.json(), want);
        let by_code = app
            .get(&format!("/v1/bypasscode?code={}", v.code.to_lowercase()))
            .await;
        assert_eq!(by_code.json(), want);
    }
    let random = app.get("/v1/bypasscode").await.json();
    let code = random["code"].as_str().unwrap_or_default();
    let back = app.get(&format!("/v1/bypasscode?code={code}")).await.json();
    assert_eq!(back, random);

    let cases = [
        ("raw=00&code=00000", "bad-query"),
        ("raw=0011", "invalid-bypass-code"),
        (
            "raw=zz000000000000000000000000000000",
            "invalid-bypass-code",
        ),
        (
            "code=00000-00000-0000-0000-0000-0008",
            "invalid-bypass-code",
        ),
        (
            "code=B0000-00000-0000-0000-0000-0000",
            "invalid-bypass-code",
        ),
        ("seed=1", "bad-query"),
    ];
    for (query, code) in cases {
        let r = app.get(&format!("/v1/bypasscode?{query}")).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{query}");
    }
}

fn depd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_depd"))
        .args(args)
        .env_remove("DEPD_KEY_PASSWORD")
        .output()
        .expect("run depd")
}

#[test]
fn bypasscode_cli_follows_the_vectors() {
    for v in vectors() {
        let want = format!("raw: {}\ncode: {}\nhash: {}\n", v.raw, v.code, v.hash);
        for args in [["--raw", v.raw.as_str()], ["--code", v.code.as_str()]] {
            let out = depd(&["bypasscode", args[0], args[1]]);
            assert!(out.status.success());
            assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        }
    }
    let out = depd(&["bypasscode", "--code", "nonsense"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("26 symbols"), "{err}");
}

#[test]
fn tokens_cli_makes_keys_and_decrypts_token_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let (cert, key, token) = (path("c.pem"), path("c.key"), path("t.p7m"));
    let keypair = [
        "tokens", "keypair", "--cert", &cert, "--key", &key, "--cn", "cli", "--days", "7",
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_depd"))
        .args(keypair)
        .env("DEPD_KEY_PASSWORD", "s3cret")
        .output()
        .expect("run depd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_text = std::fs::read_to_string(&key).expect("key");
    assert!(key_text.contains("BEGIN ENCRYPTED PRIVATE KEY"));
    assert!(!key_text.contains("s3cret"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let out = depd(&keypair);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&key).expect("key"), key_text);

    let x509 = X509::from_pem(&std::fs::read(&cert).expect("cert")).expect("PEM");
    assert_eq!(cn(&x509), "cli");
    std::fs::write(&token, p7m_for(&x509, &tokens_json("CK_CLI"))).expect("write");
    let decrypt = [
        "tokens", "decrypt", "--token", &token, "--cert", &cert, "--key", &key,
    ];
    let out = depd(&[&decrypt[..], &["--password", "s3cret"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let want: Value = serde_json::from_str(&tokens_json("CK_CLI")).expect("json");
    assert_eq!(json, want);

    let out = depd(&decrypt);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password is needed"));

    let out = depd(&[&keypair[..], &["--force"]].concat());
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(&key)
            .expect("key")
            .contains("BEGIN PRIVATE KEY")
    );
    let out = depd(&decrypt);
    assert!(!out.status.success());
    // The new certificate has a new random serial number, so the old file
    // is not addressed to it.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("different certificate"), "{err}");
}
