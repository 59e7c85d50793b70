use super::*;
use openssl::cms::CMSOptions;
use openssl::stack::Stack;
use openssl::symm::Cipher;
use std::path::Path;
use std::process::Command;
use time::macros::datetime;

const TOKENS: &str = r#"{"consumer_key":"CK_p7m_consumer_key_0123456789","consumer_secret":"CS_p7m_secret_abcdefghijklmnopqrstuvwxyz","access_token":"AT_p7m_token_abcdefghijklmnopqrstuvwxyz","access_secret":"AS_p7m_secret_abcdefghijklmnopqrstuvwxyz","access_token_expiry":"2027-06-01T12:00:00Z"}"#;

/// The inner message as Apple writes it: MIME headers, then the JSON
/// wrapped at `width` columns between the markers.
fn inner_message(json: &str, width: usize, padding: usize) -> String {
    let wrapped: Vec<String> = json
        .as_bytes()
        .chunks(width)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\nX-Padding: {}\r\n\r\n{BEGIN_MESSAGE}\r\n{}\r\n{END_MESSAGE}\r\n",
        "p".repeat(padding),
        wrapped.join("\r\n")
    )
}

fn pair() -> KeyPair {
    KeyPair::generate("depserver", 1, datetime!(2026-03-01 12:00 UTC)).expect("keypair")
}

/// A pair as depd made them before random serials: self-signed
/// `CN=depserver` with serial number 1, so every such certificate has
/// the same issuer and serial.
fn legacy_pair() -> KeyPair {
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "depserver").expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let one = Asn1Integer::from_bn(&BigNum::from_u32(1).expect("bn")).expect("serial");
    b.set_serial_number(&one).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
        .expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(1).expect("t"))
        .expect("not after");
    b.set_pubkey(&key).expect("pubkey");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = b.build();
    KeyPair::from_pem(
        &cert.to_pem().expect("pem"),
        &key.private_key_to_pem_pkcs8().expect("pem"),
        None,
    )
    .expect("pair")
}

#[test]
fn chooses_the_pair_the_file_is_addressed_to() {
    let (staging, current) = (pair(), pair());
    let want = tokens::parse(TOKENS.as_bytes()).expect("tokens");
    let to = |p: &KeyPair| encrypt_with_crate(inner_message(TOKENS, 64, 0).as_bytes(), p);
    assert_eq!(
        decrypt_token_file_with(&to(&staging), &[&staging, &current]).expect("staging"),
        (0, want.clone())
    );
    assert_eq!(
        decrypt_token_file_with(&to(&current), &[&staging, &current]).expect("current"),
        (1, want.clone())
    );
    assert!(matches!(
        decrypt_token_file_with(&to(&pair()), &[&staging, &current]),
        Err(P7mError::DifferentCertificate)
    ));
    assert!(matches!(
        decrypt_token_file_with(&to(&staging), &[]),
        Err(P7mError::DifferentCertificate)
    ));

    // Certificates from before random serials share issuer and serial:
    // staging is tried first, then current.
    let (old_staging, old_current) = (legacy_pair(), legacy_pair());
    let pairs = [&old_staging, &old_current];
    assert_eq!(
        decrypt_token_file_with(&to(&old_staging), &pairs).expect("legacy staging"),
        (0, want.clone())
    );
    assert_eq!(
        decrypt_token_file_with(&to(&old_current), &pairs).expect("legacy current"),
        (1, want)
    );
    assert!(matches!(
        decrypt_token_file_with(&to(&legacy_pair()), &pairs),
        Err(P7mError::WrongKey)
    ));
}

/// Runs the `openssl` command-line tool: a producer we did not write.
fn openssl_cli(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out_path = dir.join("out.p7m");
    let status = Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(dir.join("msg.txt"))
        .arg("-out")
        .arg(&out_path)
        .arg(dir.join("cert.pem"))
        .current_dir(dir)
        .status()
        .expect("the openssl command-line tool must be installed for these tests");
    assert!(status.success(), "openssl {args:?}");
    std::fs::read(&out_path).expect("read openssl output")
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8(bytes.to_vec())
        .expect("text")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

fn without_headers(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec())
        .expect("text")
        .replace("\r\n", "\n");
    text.split_once("\n\n")
        .expect("headers")
        .1
        .as_bytes()
        .to_vec()
}

#[test]
fn decrypts_what_the_openssl_tool_produces() {
    let pair = pair();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cert.pem"), pair.cert_pem().expect("pem")).expect("write");
    let want = tokens::parse(TOKENS.as_bytes()).expect("tokens");
    let cases: [(&[&str], usize, usize); 10] = [
        (&["smime", "-encrypt", "-aes128"], 64, 0),
        (&["smime", "-encrypt", "-aes256", "-stream"], 76, 0),
        (&["smime", "-encrypt", "-des3"], 1000, 0),
        (&["cms", "-encrypt", "-aes128"], 64, 0),
        (&["cms", "-encrypt", "-aes256", "-stream"], 50, 5000),
        (&["cms", "-encrypt", "-des3", "-stream"], 64, 3000),
        (&["cms", "-encrypt", "-aes256", "-outform", "PEM"], 64, 0),
        (&["cms", "-encrypt", "-aes128", "-outform", "DER"], 64, 0),
        (
            &["cms", "-encrypt", "-aes128", "-outform", "DER", "-stream"],
            64,
            4000,
        ),
        (&["smime", "-encrypt", "-aes128", "-binary"], 33, 0),
    ];
    for (args, width, padding) in cases {
        let msg = inner_message(TOKENS, width, padding);
        std::fs::write(dir.path().join("msg.txt"), &msg).expect("write msg");
        let file = openssl_cli(dir.path(), args);
        let got =
            decrypt_token_file(&file, &pair).unwrap_or_else(|e| panic!("openssl {args:?}: {e}"));
        assert_eq!(got, want, "{args:?}");
        if !args.contains(&"DER") && !args.contains(&"PEM") {
            for variant in [crlf(&file), without_headers(&file)] {
                let got = decrypt_token_file(&variant, &pair)
                    .unwrap_or_else(|e| panic!("variant of openssl {args:?}: {e}"));
                assert_eq!(got, want);
            }
        }
    }
}

fn encrypt_with_crate(content: &[u8], pair: &KeyPair) -> Vec<u8> {
    let mut certs = Stack::new().expect("stack");
    certs.push(pair.cert().clone()).expect("push");
    CmsContentInfo::encrypt(&certs, content, Cipher::aes_128_cbc(), CMSOptions::BINARY)
        .expect("encrypt")
        .to_der()
        .expect("der")
}

#[test]
fn names_each_failure() {
    let pair = pair();
    let good = encrypt_with_crate(inner_message(TOKENS, 64, 0).as_bytes(), &pair);
    assert!(decrypt_token_file(&good, &pair).is_ok());
    let b64 = openssl::base64::encode_block(&good);

    let other_name =
        KeyPair::generate("other", 1, datetime!(2026-03-01 12:00 UTC)).expect("keypair");
    let same_name = legacy_pair();
    let legacy = legacy_pair();
    let good_legacy = encrypt_with_crate(inner_message(TOKENS, 64, 0).as_bytes(), &legacy);
    let cases: Vec<(Vec<u8>, &KeyPair, &str)> = vec![
        (Vec::new(), &pair, "NotTokenFile"),
        (vec![0xff, 0xfe, 0x00], &pair, "NotTokenFile"),
        (TOKENS.as_bytes().to_vec(), &pair, "NotTokenFile"),
        (
            b"Content-Type: text/html\n\nabcd".to_vec(),
            &pair,
            "NotTokenFile",
        ),
        (b"MIME-Version: 1.0\n".to_vec(), &pair, "NotTokenFile"),
        (b"not base64 at all!".to_vec(), &pair, "BadBase64"),
        (b"abcde".to_vec(), &pair, "BadBase64"),
        (
            b64.as_bytes()[..b64.len() / 2 / 4 * 4].to_vec(),
            &pair,
            "Truncated",
        ),
        (good[..good.len() - 10].to_vec(), &pair, "Truncated"),
        (b"MAMCAQE=".to_vec(), &pair, "NotCms"),
        (good.clone(), &other_name, "DifferentCertificate"),
        (good_legacy.clone(), &same_name, "WrongKey"),
        (
            encrypt_with_crate(b"Content-Type: text/plain\r\n\r\nno markers", &pair),
            &pair,
            "NoMessage",
        ),
        (
            encrypt_with_crate(
                inner_message("{\"consumer_key\":1}", 64, 0).as_bytes(),
                &pair,
            ),
            &pair,
            "BadTokens",
        ),
    ];
    for (input, key, want) in cases {
        let err = decrypt_token_file(&input, key).expect_err(want);
        let got = format!("{err:?}");
        assert!(got.starts_with(want), "want {want}, got {got}: {err}");
    }
}
