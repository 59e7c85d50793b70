//! Apple's `.p7m` token file: decryptable with the certificate's key.

use crate::helpers::spawn;
use depd::sim::token_file::{P7mOptions, token_file, token_file_with};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::cms::CmsContentInfo;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::{X509, X509NameBuilder};

fn keypair() -> (PKey<Private>, X509) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "depsim-test").expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let serial = BigNum::from_u32(1)
        .and_then(|n| n.to_asn1_integer())
        .expect("serial");
    b.set_serial_number(&serial).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(1).expect("time"))
        .expect("na");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    (key, b.build())
}

/// Splits Apple's file: the outer headers, and the DER/BER bytes.
fn open(file: &str) -> (Vec<String>, Vec<u8>) {
    let (head, body) = file.split_once("\n\n").expect("blank line after headers");
    let b64: String = body.lines().collect();
    assert!(body.lines().all(|l| l.len() <= 76));
    (
        head.lines().map(str::to_owned).collect(),
        openssl::base64::decode_block(&b64).expect("base64"),
    )
}

fn decrypt(bytes: &[u8], key: &PKey<Private>, cert: &X509) -> String {
    let cms = CmsContentInfo::from_der(bytes).expect("CMS");
    String::from_utf8(cms.decrypt(key, cert).expect("decrypt")).expect("utf-8")
}

#[test]
fn a_token_file_decrypts_to_apples_inner_format() {
    let (key, cert) = keypair();
    let pem = cert.to_pem().expect("pem");
    let json = r#"{"consumer_key":"CK_1","consumer_secret":"CS_1","access_token":"AT_1","access_secret":"AS_1","access_token_expiry":"2030-01-01T00:00:00Z"}"#;
    let file = token_file(json, &pem, Cipher::aes_128_cbc()).expect("p7m");
    let (headers, bytes) = open(&file);
    assert_eq!(
        headers,
        [
            "Content-Type: application/pkcs7-mime; name=\"smime.p7m\"; smime-type=enveloped-data",
            "Content-Transfer-Encoding: base64",
            "Content-Disposition: attachment; filename=\"smime.p7m\"",
            "Content-Description: S/MIME Encrypted Message",
        ]
    );
    // BER, indefinite lengths, as Apple's files.
    assert_eq!(&bytes[..2], &[0x30, 0x80]);
    let inner = decrypt(&bytes, &key, &cert);
    assert_eq!(
        inner,
        format!(
            "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n-----BEGIN MESSAGE-----\r\n{json}\r\n-----END MESSAGE-----\r\n"
        )
    );
}

#[test]
fn options_der_wrapping_and_other_ciphers() {
    let (key, cert) = keypair();
    let pem = cert.to_pem().expect("pem");
    let json = r#"{"consumer_key":"CK_1","consumer_secret":"CS_1"}"#;
    let options = P7mOptions {
        cipher: Cipher::aes_256_cbc(),
        wrap_json: Some(16),
        ber: false,
    };
    let (_, bytes) = open(&token_file_with(json, &pem, &options).expect("p7m"));
    assert_ne!(bytes[1], 0x80, "DER has definite lengths");
    let inner = decrypt(&bytes, &key, &cert);
    let message = inner
        .split_once("-----BEGIN MESSAGE-----\r\n")
        .and_then(|(_, rest)| rest.split_once("\r\n-----END MESSAGE-----"))
        .map(|(m, _)| m)
        .expect("message");
    assert!(message.lines().count() > 1);
    assert_eq!(message.replace("\r\n", ""), json);
    assert!(token_file(json, b"not a certificate", Cipher::aes_128_cbc()).is_err());
}

#[actix_web::test]
async fn the_admin_api_makes_the_simulators_token_file() {
    let t = spawn(1);
    let (key, cert) = keypair();
    let req = t
        .client
        .post(format!("{}/p7m?cipher=aes-128-cbc", t.sim.admin_url()));
    let mut resp = req
        .send_body(cert.to_pem().expect("pem"))
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let file = String::from_utf8(resp.body().await.expect("body").to_vec()).expect("utf-8");
    let (_, bytes) = open(&file);
    let inner = decrypt(&bytes, &key, &cert);
    assert!(inner.contains(&t.sim.tokens_json()), "{inner}");
    let mut resp = t
        .client
        .post(format!("{}/p7m", t.sim.admin_url()))
        .send_body("garbage")
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(!resp.body().await.expect("body").is_empty());
}
