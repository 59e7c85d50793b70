use super::*;
use std::path::Path;
use std::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/testdata/nanomdm");
const NANOMDM_HASH: &str = "77bfad3a8b89a5de19b6574bcd9db36155debc4a2763f9731a99ecddd0d9d6b0";

fn header_forms() -> (String, String) {
    let text = std::fs::read_to_string(format!("{FIXTURES}/cert_extract.txt")).expect("fixture");
    let mut escaped = String::new();
    let mut rfc9440 = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("QueryEscaped ") {
            escaped = v.to_owned();
        } else if let Some(v) = line.strip_prefix("RFC9440 ") {
            rfc9440 = v.to_owned();
        }
    }
    (escaped, rfc9440)
}

#[test]
fn both_header_forms_give_nanomdms_certificate() {
    let (escaped, rfc9440) = header_forms();
    let a = from_header(&escaped).expect("escaped PEM");
    let b = from_header(&rfc9440).expect("RFC 9440");
    assert_eq!(cert_hash(&a).expect("hash"), NANOMDM_HASH);
    assert_eq!(cert_hash(&b).expect("hash"), NANOMDM_HASH);
    for bad in [
        "",
        ":",
        "::",
        ":INVALID:",
        "%GK",
        "INVALID",
        "-----BEGIN+PRIVATE+KEY-----%0A",
    ] {
        assert!(from_header(bad).is_none(), "{bad:?}");
    }
}

/// Runs the `openssl` command-line tool in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command-line tool must be installed for these tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a device identity issued by it, made by the openssl CLI.
fn ca_and_device(dir: &Path, eku: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=depd test CA",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=keyCertSign,cRLSign",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), eku).expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "dev.key",
            "-out",
            "dev.csr",
            "-subj",
            "/CN=TESTDEVICE",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "dev.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "1",
            "-out",
            "dev.pem",
            "-extfile",
            "ext.cnf",
        ],
    );
}

fn sign(dir: &Path, body: &[u8]) -> String {
    std::fs::write(dir.join("body"), body).expect("body");
    openssl(
        dir,
        &[
            "cms", "-sign", "-binary", "-in", "body", "-signer", "dev.pem", "-inkey", "dev.key",
            "-md", "sha256", "-outform", "DER", "-out", "sig.der",
        ],
    );
    openssl::base64::encode_block(&std::fs::read(dir.join("sig.der")).expect("sig"))
}

fn pem(dir: &Path, file: &str) -> X509 {
    X509::from_pem(&std::fs::read(dir.join(file)).expect("pem")).expect("cert")
}

#[test]
fn openssl_signatures_verify_and_name_the_signer() {
    let dir = tempfile::tempdir().expect("dir");
    ca_and_device(dir.path(), "extendedKeyUsage=clientAuth\n");
    let body = b"<plist>a check-in</plist>";
    let sig = sign(dir.path(), body);
    let cert = from_signature(&sig, body).expect("verifies");
    assert_eq!(cert.to_der().ok(), pem(dir.path(), "dev.pem").to_der().ok());

    assert!(matches!(
        from_signature(&sig, b"<plist>another body</plist>"),
        Err(IdentityError::SignatureInvalid(_))
    ));
    assert_eq!(
        from_signature("***", body),
        Err(IdentityError::SignatureEncoding)
    );
    assert!(matches!(
        from_signature("AAAA", body),
        Err(IdentityError::SignatureFormat(_))
    ));

    let ca = dir.path().join("ca.pem");
    let verifier = Verifier::from_files(ca.to_str().expect("path"), None).expect("verifier");
    verifier.verify(&cert).expect("chains to the CA");
    // Its own CA is not anyone's root.
    let other = tempfile::tempdir().expect("dir");
    ca_and_device(other.path(), "extendedKeyUsage=clientAuth\n");
    assert!(matches!(
        verifier.verify(&pem(other.path(), "dev.pem")),
        Err(IdentityError::Untrusted(_))
    ));
    // A CA certificate is not a device identity either.
    assert!(verifier.verify(&pem(other.path(), "ca.pem")).is_err());
}

#[test]
fn extended_key_usage_must_allow_client_auth_when_present() {
    let dir = tempfile::tempdir().expect("dir");
    ca_and_device(dir.path(), "extendedKeyUsage=serverAuth\n");
    let ca = dir.path().join("ca.pem");
    let verifier = Verifier::from_files(ca.to_str().expect("path"), None).expect("verifier");
    assert!(verifier.verify(&pem(dir.path(), "dev.pem")).is_err());

    let dir = tempfile::tempdir().expect("dir");
    ca_and_device(dir.path(), "subjectKeyIdentifier=hash\n");
    let ca = dir.path().join("ca.pem");
    let verifier = Verifier::from_files(ca.to_str().expect("path"), None).expect("verifier");
    verifier
        .verify(&pem(dir.path(), "dev.pem"))
        .expect("no extended key usage passes");
}

#[test]
fn ca_file_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, b"nothing").expect("write");
    let err = Verifier::from_files(empty.to_str().expect("path"), None).expect_err("no certs");
    assert!(err.to_string().contains("empty.pem"), "{err}");
    let missing = Verifier::from_files("/nonexistent/ca.pem", None).expect_err("missing");
    assert!(
        missing.to_string().contains("/nonexistent/ca.pem"),
        "{missing}"
    );
}
