//! Property tests for the parsers that take input from outside: arbitrary
//! input gives a value or a typed error, never a panic, and values that
//! survive a round trip come back unchanged. (The query decoder's are in
//! `api/body.rs`.)

use crate::dep::retry_after;
use crate::dep::wire::{DevicePage, SyncPage};
use crate::domain::name::DepName;
use crate::domain::tokens;
use crate::pki;
use crate::pki::bypass::{BypassCode, RAW_LEN};
use crate::settings::{FlagOverrides, Secret};
use proptest::prelude::*;
use std::sync::OnceLock;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One key pair for every token-file case: RSA generation is slow.
fn pair() -> &'static pki::KeyPair {
    static PAIR: OnceLock<pki::KeyPair> = OnceLock::new();
    PAIR.get_or_init(|| pki::KeyPair::generate("depserver", 1, NOW).expect("key pair"))
}

/// Strings that look like token JSON, half-broken JSON, or noise.
fn token_jsonish() -> impl Strategy<Value = String> {
    let field = prop_oneof![Just(String::new()), "[ -~]{0,12}", ".{0,8}"];
    prop_oneof![
        (
            field.clone(),
            field.clone(),
            field.clone(),
            field.clone(),
            field
        )
            .prop_map(|(a, b, c, d, e)| {
                serde_json::json!({
                    "consumer_key": a, "consumer_secret": b, "access_token": c,
                    "access_secret": d, "access_token_expiry": e,
                })
                .to_string()
            }),
        ".{0,80}",
        "[{}\":,a-z0-9 ]{0,60}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_json_parses_or_is_refused(text in token_jsonish()) {
        if let Ok(stored) = tokens::parse(text.as_bytes()) {
            // What parsed comes back unchanged through the API form.
            let json = serde_json::to_vec(&tokens::to_json(&stored)).expect("json");
            prop_assert_eq!(tokens::parse(&json).expect("round trip"), stored);
        }
    }

    #[test]
    fn valid_token_json_round_trips(
        ck in "[A-Za-z0-9_]{1,20}",
        cs in "[ -~]{1,20}",
        at in "[ -~]{1,20}",
        secret in "[ -~]{1,20}",
        unix in 0i64..4_102_444_800,
    ) {
        prop_assume!(![&ck, &cs, &at, &secret].iter().any(|s| s.trim().is_empty()));
        let stored = tokens::Tokens {
            consumer_key: ck,
            consumer_secret: cs,
            access_token: at,
            access_secret: secret,
            access_token_expiry_unix: unix,
        };
        let json = serde_json::to_vec(&tokens::to_json(&stored)).expect("json");
        prop_assert_eq!(tokens::parse(&json).expect("parse"), stored);
    }

    #[test]
    fn token_files_decrypt_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = pki::decrypt_token_file(&bytes, pair());
    }

    #[test]
    fn token_file_text_decrypts_or_is_refused(
        text in prop_oneof![
            "[A-Za-z0-9+/=\n]{0,200}",
            "Content-Type: application/pkcs7-mime\n\n[A-Za-z0-9+/=\n]{0,200}",
            "-----BEGIN PKCS7-----\n[A-Za-z0-9+/=\n]{0,200}(-----END PKCS7-----)?",
            "MII[A-Za-z0-9+/]{4,120}={0,2}",
        ]
    ) {
        let _ = pki::decrypt_token_file(text.as_bytes(), pair());
    }

    #[test]
    fn bypass_codes_parse_or_are_refused(text in ".{0,48}") {
        if let Ok(code) = BypassCode::from_code(&text) {
            prop_assert_eq!(BypassCode::from_code(&code.to_code()).expect("code"), code.clone());
            prop_assert_eq!(BypassCode::from_hex(&code.to_hex()).expect("hex"), code);
        }
        if let Ok(code) = BypassCode::from_hex(&text) {
            prop_assert_eq!(BypassCode::from_hex(&code.to_hex()).expect("hex"), code);
        }
    }

    #[test]
    fn bypass_codes_round_trip(raw in any::<[u8; RAW_LEN]>()) {
        let code = BypassCode::from_bytes(raw);
        prop_assert_eq!(BypassCode::from_code(&code.to_code()).expect("code"), code.clone());
        prop_assert_eq!(BypassCode::from_hex(&code.to_hex()).expect("hex"), code);
    }

    #[test]
    fn dep_names_parse_or_are_refused(text in "\\PC{0,80}|.{0,8}") {
        if let Ok(name) = DepName::parse(&text) {
            prop_assert_eq!(name.as_str(), text.as_str());
            prop_assert_eq!(DepName::parse(name.as_str()).expect("again"), name);
        }
    }

    #[test]
    fn retry_after_parses_or_is_ignored(text in ".{0,40}") {
        let _ = retry_after::parse(&text, NOW);
    }

    #[test]
    fn retry_after_seconds_round_trip(secs in any::<u64>()) {
        prop_assert_eq!(
            retry_after::parse(&secs.to_string(), NOW),
            Some(std::time::Duration::from_secs(secs))
        );
    }

    #[test]
    fn retry_after_dates_are_measured_from_now(offset in -86_400i64..86_400) {
        let when = NOW + time::Duration::seconds(offset);
        let imf = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let text = when.format(imf).expect("format");
        let want = std::time::Duration::from_secs(offset.max(0).unsigned_abs());
        prop_assert_eq!(retry_after::parse(&text, NOW), Some(want));
    }

    #[test]
    fn device_pages_parse_or_are_refused(
        text in prop_oneof![
            ".{0,120}",
            "\\{\"cursor\":\"[a-z0-9]{0,8}\",\"devices\":\\[(\\{\"serial_number\":\"[A-Z0-9]{0,12}\"\\},?|\\[\\],?|1,?){0,4}\\],\"more_to_follow\":(true|false|1)\\}",
        ]
    ) {
        let _ = SyncPage::parse(&text);
        let _ = serde_json::from_str::<DevicePage>(&text);
    }

    #[test]
    fn device_pages_keep_each_device_text(
        serials in proptest::collection::vec("[A-Z0-9]{1,12}", 0..8),
        more in any::<bool>(),
    ) {
        let devices: Vec<String> = serials
            .iter()
            .map(|s| format!("{{\"serial_number\":\"{s}\",\"model\":\"Mac\"}}"))
            .collect();
        let text = format!(
            "{{\"cursor\":\"c1\",\"devices\":[{}],\"fetched_until\":\"2026-01-01T00:00:00Z\",\"more_to_follow\":{more}}}",
            devices.join(",")
        );
        let page = SyncPage::parse(&text).expect("a well-formed page");
        prop_assert_eq!(page.0.more_to_follow, more);
        prop_assert_eq!(page.0.devices.len(), serials.len());
        for ((device, serial), json) in page.0.devices.iter().zip(&serials).zip(&devices) {
            prop_assert_eq!(&device.serial_number, serial);
            prop_assert_eq!(device.text(Some(&text)), Some(json.as_str()));
        }
    }

    #[test]
    fn configuration_files_load_or_are_refused(
        text in prop_oneof![
            ".{0,120}",
            "([a-z_]{1,12} = (\"[ -~]{0,12}\"|[0-9]{1,6}|true|\\[\\]))\n{0,6}",
            "\\[(apple|sync|assigner|webhook|names\\.a|demo)\\]\n([a-z_]{1,20} = ([0-9]{1,12}|\"[ -~]{0,20}\"|false))\n{0,4}",
        ]
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("depd.toml");
        std::fs::write(&path, &text).expect("write");
        let flags = FlagOverrides {
            api_key: Some(Secret::new("k")),
            ..FlagOverrides::default()
        };
        let _ = crate::settings::load(Some(&path), Vec::new(), &flags);
    }
}
