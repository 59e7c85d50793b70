use super::*;

fn parts_stored(e: &SledEngine) -> usize {
    e.tree.scan_prefix([PARTED]).count()
}

/// Bytes LZ4 cannot shrink (xorshift), starting with `first`.
fn noise(len: usize, first: u8) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ len as u64;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    out[0] = first;
    out
}

/// Something like a page of Apple's JSON: repetitive, compressible.
fn json_like(devices: usize) -> Vec<u8> {
    let mut out = String::from("[");
    for i in 0..devices {
        out.push_str(&format!(
            r#"{{"serial_number":"C02X{i:06}","model":"MacBook Pro","op_type":"added","op_date":"2026-11-{:02}T10:00:00Z"}},"#,
            i % 28 + 1
        ));
    }
    out.push(']');
    out.into_bytes()
}

#[test]
fn large_values_are_stored_in_parts_and_leave_none_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = SledEngine::open(dir.path()).expect("open");
    let big = noise(PART_BYTES * 3 + 5, 1);
    let bigger = noise(PART_BYTES * 5, 0xFF);
    e.commit(vec![Write::Put(b"k/a".to_vec(), big.clone())])
        .expect("put");
    assert_eq!(parts_stored(&e), 4);
    assert_eq!(e.get(b"k/a").expect("get"), Some(big.clone()));
    e.commit(vec![
        Write::Put(b"k/b".to_vec(), bigger.clone()),
        Write::Put(b"k/c".to_vec(), vec![0xFE, 1]),
        Write::Put(b"k/d".to_vec(), vec![0xFF]),
    ])
    .expect("put");
    let all = e.scan(b"k/", None, 10).expect("scan");
    assert_eq!(
        all,
        vec![
            (b"k/a".to_vec(), big.clone()),
            (b"k/b".to_vec(), bigger.clone()),
            (b"k/c".to_vec(), vec![0xFE, 1]),
            (b"k/d".to_vec(), vec![0xFF]),
        ]
    );
    // Shrinking, replacing by a small value, and putting then deleting
    // in one batch leave no part behind.
    e.commit(vec![Write::Put(b"k/b".to_vec(), big.clone())])
        .expect("shrink");
    assert_eq!(parts_stored(&e), 8);
    e.commit(vec![
        Write::Put(b"k/a".to_vec(), b"small".to_vec()),
        Write::Put(b"k/e".to_vec(), bigger.clone()),
        Write::Delete(b"k/e".to_vec()),
        Write::Delete(b"k/b".to_vec()),
    ])
    .expect("replace");
    assert_eq!(parts_stored(&e), 0);
    assert_eq!(e.get(b"k/a").expect("get"), Some(b"small".to_vec()));
    assert_eq!(e.get(b"k/e").expect("get"), None);
    assert!(
        e.commit(vec![Write::Put(vec![0xFF, 1], vec![1])]).is_err(),
        "reserved keys are refused"
    );
}

#[test]
fn compressible_values_are_stored_compressed_inline_or_in_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = SledEngine::open(dir.path()).expect("open");
    let small = json_like(40); // a few KiB: compressed into the marker
    let page = json_like(3000); // ~270 KiB: compressed into parts
    assert!(small.len() > COMPRESS_MIN && page.len() > PART_BYTES * 20);
    e.commit(vec![
        Write::Put(b"k/small".to_vec(), small.clone()),
        Write::Put(b"k/page".to_vec(), page.clone()),
    ])
    .expect("put");
    let stored = e.tree.get(b"k/small").expect("raw").expect("stored");
    assert!(matches!(
        parse(&stored),
        Ok(Stored::Packed { count: 0, .. })
    ));
    assert!(stored.len() < small.len() / 2, "{} bytes", stored.len());
    let parts = parts_stored(&e);
    let page_parts = page.len().div_ceil(PART_BYTES);
    assert!(
        parts > 0 && parts * 3 < page_parts,
        "{parts} parts against {page_parts} uncompressed"
    );
    assert_eq!(e.get(b"k/small").expect("get"), Some(small.clone()));
    assert_eq!(e.get(b"k/page").expect("get"), Some(page.clone()));
    assert_eq!(
        e.scan(b"k/", None, 10).expect("scan"),
        vec![
            (b"k/page".to_vec(), page.clone()),
            (b"k/small".to_vec(), small)
        ]
    );
    // Compressed in parts → incompressible in parts → compressed inline
    // → deleted: no part is left behind at any step.
    let raw = noise(PART_BYTES * 2 + 1, 7);
    e.commit(vec![Write::Put(b"k/page".to_vec(), raw.clone())])
        .expect("raw");
    assert_eq!(parts_stored(&e), 3);
    assert_eq!(e.get(b"k/page").expect("get"), Some(raw));
    e.commit(vec![Write::Put(b"k/page".to_vec(), json_like(30))])
        .expect("inline");
    assert_eq!(parts_stored(&e), 0);
    e.commit(vec![Write::Put(b"k/page".to_vec(), page.clone())])
        .expect("parts again");
    assert_eq!(parts_stored(&e), parts);
    e.commit(vec![Write::Delete(b"k/page".to_vec())])
        .expect("delete");
    assert_eq!(parts_stored(&e), 0);
    assert_eq!(e.get(b"k/page").expect("get"), None);
    // Small and incompressible values are stored as they are.
    let short = b"{\"a\":1}".to_vec();
    e.commit(vec![Write::Put(b"k/short".to_vec(), short.clone())])
        .expect("short");
    let stored = e.tree.get(b"k/short").expect("raw").expect("stored");
    assert_eq!(stored.as_ref(), short.as_slice());
}

#[test]
fn a_damaged_compressed_value_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = SledEngine::open(dir.path()).expect("open");
    let packed = lz4_flex::block::compress(&json_like(40));
    let stored = |count: u32, packed_len: u64, len: u64, inline: &[u8]| {
        let mut m = marker(count, COMPRESSED);
        m.extend_from_slice(&packed_len.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(inline);
        m
    };
    let n = packed.len() as u64;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("claims a huge length", stored(0, n, u64::MAX / 2, &packed)),
        ("claims too few bytes", stored(0, n, 10, &packed)),
        ("inline bytes cut short", stored(0, n, 5000, &packed[..10])),
        ("garbage", stored(0, 6, 1000, &[0xF0, 1, 2, 3, 4, 5])),
        ("marker cut short", stored(0, n, 5000, &[])[..20].to_vec()),
        ("parts missing", stored(2, n, 5000, &[])),
    ];
    for (why, raw) in cases {
        e.tree.insert(b"k/x", raw).expect("insert");
        assert!(e.get(b"k/x").is_err(), "{why}");
    }
}
