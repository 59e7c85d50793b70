use super::*;

#[test]
fn round_trips_with_version_byte() {
    let a = StoredAssigner {
        profile_uuid: "ABC".into(),
        modified_unix: 1_700_000_000,
    };
    let bytes = encode(&a);
    assert_eq!(bytes[0], StoredAssigner::VERSION);
    assert_eq!(decode::<StoredAssigner>(&bytes).ok(), Some(a));
}

#[test]
fn unknown_version_and_garbage_are_errors() {
    let mut bytes = encode(&StoredConfig {
        base_url: "https://x".into(),
    });
    bytes[0] = 99;
    assert!(matches!(
        decode::<StoredConfig>(&bytes),
        Err(RecordError::UnknownVersion {
            found: 99,
            known: 1
        })
    ));
    assert!(matches!(
        decode::<StoredConfig>(&[]),
        Err(RecordError::Empty)
    ));
    assert!(matches!(
        decode::<StoredConfig>(&[1, 200, 200, 200]),
        Err(RecordError::Decode(_))
    ));
}

#[test]
fn json_segments_of_version_1_read_as_texts() {
    #[derive(serde::Serialize)]
    struct V1 {
        json: Vec<String>,
    }
    let texts = vec![r#"{"a":1}"#.to_string(), String::new(), "é\"".to_string()];
    let mut bytes = vec![1];
    bytes.extend(
        bincode::serde::encode_to_vec(
            V1 {
                json: texts.clone(),
            },
            config(),
        )
        .expect("v1"),
    );
    let seg: StoredJsonSegment = decode(&bytes).expect("v1 reads");
    assert_eq!(seg.page, "");
    assert_eq!(seg.into_texts(), Some(texts));
}

#[test]
fn json_segments_slice_page_and_extra() {
    let page = r#"{"devices":[{"s":"A"},{"s":"B"}]}"#;
    let mut seg = StoredJsonSegment {
        page: page.into(),
        ..Default::default()
    };
    seg.spans.push((12, 9));
    seg.spans.push((22, 9));
    let moved = seg.push_extra(r#"{"s":"C"}"#).expect("span");
    seg.spans.push(moved);
    assert_eq!(seg.text(0), Some(r#"{"s":"A"}"#));
    assert_eq!(seg.text(1), Some(r#"{"s":"B"}"#));
    assert_eq!(seg.text(2), Some(r#"{"s":"C"}"#));
    assert_eq!(seg.text(3), None);
    // The borrowed twin writes the same bytes.
    let borrowed = encode_as::<StoredJsonSegment, _>(&JsonSegmentRef {
        page: &seg.page,
        extra: &seg.extra,
        spans: &seg.spans,
    });
    assert_eq!(borrowed, encode(&seg));
    assert_eq!(
        decode::<StoredJsonSegment>(&borrowed).ok(),
        Some(seg.clone())
    );
    // Damaged spans: across page and extra, past the end, inside a
    // character.
    for bad in [(30, 8), (40, 100), (u32::MAX, 2)] {
        let mut d = seg.clone();
        d.spans[0] = bad;
        assert_eq!(d.text(0), None, "{bad:?}");
        assert_eq!(d.into_texts(), None);
    }
    let accented = StoredJsonSegment {
        page: "é".into(),
        extra: String::new(),
        spans: vec![(1, 1)],
    };
    assert_eq!(accented.text(0), None);
}

#[test]
fn outbox_entries_of_version_1_read_as_whole_bodies() {
    #[derive(serde::Serialize)]
    struct V1 {
        event_id: String,
        topic: String,
        created_unix: i64,
        body: String,
    }
    let mut bytes = vec![1];
    bytes.extend(
        bincode::serde::encode_to_vec(
            V1 {
                event_id: "e1".into(),
                topic: "dep.SyncDevices".into(),
                created_unix: 7,
                body: "{}".into(),
            },
            config(),
        )
        .expect("v1"),
    );
    let e: StoredOutboxEntry = decode(&bytes).expect("v1 reads");
    assert_eq!(e.body, StoredEventBody::Text("{}".into()));
    assert_eq!((e.event_id.as_str(), e.created_unix), ("e1", 7));
}

#[test]
fn debug_never_shows_secrets() {
    let t = StoredTokens {
        consumer_key: "CK_1".into(),
        consumer_secret: "CS_SECRET".into(),
        access_token: "AT_SECRET".into(),
        access_secret: "AS_SECRET".into(),
        access_token_expiry_unix: 0,
    };
    let shown = format!("{t:?}");
    assert!(shown.contains("CK_1"));
    assert!(!shown.contains("SECRET"), "{shown}");
    let p = StoredPki {
        cert_pem: b"CERT".to_vec(),
        key_pem: b"PRIVATE".to_vec(),
    };
    assert!(!format!("{p:?}").contains("PRIVATE"));
}

/// Assignment records and segments written before rules (version 1) read
/// as version 2 without a rule; what is written now reads back whole.
#[test]
fn assignments_from_before_rules_read_without_a_rule() {
    #[derive(serde::Serialize)]
    struct V1 {
        profile_uuid: String,
        result: AssignResult,
        attempts: u32,
        failures: u32,
        last_attempt_unix: Option<i64>,
        next_retry_unix: Option<i64>,
        gave_up: bool,
    }
    let v1 = || V1 {
        profile_uuid: "P".into(),
        result: AssignResult::Failed,
        attempts: 2,
        failures: 1,
        last_attempt_unix: Some(5),
        next_retry_unix: Some(9),
        gave_up: false,
    };
    let want = StoredAssignment {
        profile_uuid: "P".into(),
        result: AssignResult::Failed,
        attempts: 2,
        failures: 1,
        last_attempt_unix: Some(5),
        next_retry_unix: Some(9),
        gave_up: false,
        rule: None,
    };
    let config = bincode::config::standard();
    let mut one = vec![1u8];
    one.extend(bincode::serde::encode_to_vec(v1(), config).expect("encode"));
    assert_eq!(decode::<StoredAssignment>(&one).expect("v1"), want);
    #[derive(serde::Serialize)]
    struct SegV1 {
        records: Vec<(String, V1)>,
    }
    let mut seg = vec![1u8];
    seg.extend(
        bincode::serde::encode_to_vec(
            SegV1 {
                records: vec![("S1".into(), v1())],
            },
            config,
        )
        .expect("encode"),
    );
    let read = decode::<StoredAssignmentSegment>(&seg).expect("v1 segment");
    assert_eq!(read.records, vec![("S1".to_string(), want.clone())]);
    let now = StoredAssignment {
        rule: Some("rule:macs".into()),
        result: AssignResult::Cancelled,
        ..want
    };
    assert_eq!(decode::<StoredAssignment>(&encode(&now)).expect("v2"), now);
}
