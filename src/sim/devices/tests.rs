use super::*;

const NOW: i64 = 1_700_000_000;

#[test]
fn deterministic_and_unique() {
    let a = Population::generate(2000, 7, NOW);
    let b = Population::generate(2000, 7, NOW);
    let c = Population::generate(2000, 8, NOW);
    let sa: Vec<_> = (0..2000).filter_map(|i| a.serial_at(i)).collect();
    let sb: Vec<_> = (0..2000).filter_map(|i| b.serial_at(i)).collect();
    let sc: Vec<_> = (0..2000).filter_map(|i| c.serial_at(i)).collect();
    assert_eq!(sa, sb);
    assert_ne!(sa, sc);
    let unique: std::collections::HashSet<_> = sa.iter().collect();
    assert_eq!(unique.len(), 2000);
    assert!(
        sa.iter()
            .all(|s| (s.len() == 10 || s.len() == 12)
                && s.bytes().all(|b| SERIAL_CHARS.contains(&b)))
    );
    assert_eq!(a.profiles()[0].profile_uuid, b.profiles()[0].profile_uuid);
}

#[test]
fn record_is_compact() {
    assert!(std::mem::size_of::<Dev>() <= 56);
    assert!(std::mem::size_of::<Event>() <= 24);
}

#[test]
fn fetch_skips_hidden_devices() {
    let mut p = Population::generate(5, 1, NOW);
    let s1 = p.serial_at(1).unwrap_or_default().to_string();
    let s4 = p.serial_at(4).unwrap_or_default().to_string();
    p.delete(&s1, NOW).expect("delete");
    p.disown(&s4, NOW).expect("disown");
    let (page, next) = p.fetch_page(0, 2, 10);
    assert_eq!(page.len(), 2);
    assert_eq!(next, 3);
    let (page, next) = p.fetch_page(next, 2, 10);
    assert_eq!(page.len(), 1);
    assert_eq!(next, 5);
    assert_eq!(p.delete(&s1, NOW), Err(Refusal::NotAccessible));
    assert!(p.details(&s1, 10).is_none());
}

#[test]
fn events_snapshot_profile_state() {
    let mut p = Population::generate(3, 1, NOW);
    let s = p.serial_at(0).unwrap_or_default().to_string();
    let prof = p.define_profile(serde_json::Map::new());
    p.assign(&s, prof, NOW + 1).expect("assign");
    p.remove_profile(&s, NOW + 2).expect("remove");
    let (events, next) = p.sync_page(0, 10, 10);
    assert_eq!(next, 2);
    assert_eq!(events[0].profile_status, "assigned");
    assert_eq!(events[0].op_type, Some("modified"));
    assert_eq!(events[1].profile_status, "removed");
    assert_eq!(events[1].profile_uuid, None);
    assert_eq!(
        events[1].op_date.map(|t| format_time(t.0)).as_deref(),
        Some("2023-11-14T22:13:22Z")
    );
}

#[test]
fn written_devices_are_serdes_bytes() {
    let mut p = Population::generate(3000, 3, NOW);
    let prof = p.define_profile(serde_json::Map::new());
    for i in 0..300 {
        let s = p.serial_at(i * 7).unwrap_or_default().to_string();
        p.assign(&s, prof, NOW + i as i64).expect("assign");
        if i % 3 == 0 {
            p.push_profile(&s, NOW + 10 + i as i64).expect("push");
        }
        if i % 5 == 0 {
            p.remove_profile(&s, NOW + 20).expect("remove");
        }
    }
    let (page, _) = p.fetch_page(0, 3000, 10);
    let (events, _) = p.sync_page(0, 3000, 6);
    let mut odd = p.json(0, ProfileStatus::Empty, NO_PROFILE, 10);
    odd.serial_number = "quote\" back\\slash \u{1} é \u{7f}";
    odd.asset_tag = Some(AssetTag(u32::MAX));
    odd.response_status = Some("SUCCESS");
    let all = page.iter().chain(&events).chain(std::iter::once(&odd));
    let (mut colors, mut tags, mut ops) = (0, 0, 0);
    for d in all {
        let mut mine = Vec::new();
        d.write_json(&mut mine);
        let serde = serde_json::to_vec(d).expect("serde");
        assert_eq!(
            String::from_utf8_lossy(&mine),
            String::from_utf8_lossy(&serde)
        );
        colors += usize::from(d.color.is_some());
        tags += usize::from(d.asset_tag.is_some());
        ops += usize::from(d.op_type.is_some());
    }
    // Both sides of every optional member were compared.
    assert!(colors > 0 && tags > 0 && ops > 0);
    assert!(page.iter().any(|d| d.profile_push_time.is_some()));
    assert!(page.iter().any(|d| d.profile_assign_time.is_none()));
}

#[test]
fn times_match_the_time_crate() {
    let mut t: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    let end: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    while t <= end {
        let want = time::OffsetDateTime::from_unix_timestamp(t)
            .expect("in range")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format");
        assert_eq!(format_time(t), want, "{t}");
        // About 41.7 days: every month, day and hour, over 10,000 years.
        t += 3_599_999;
    }
    for t in [0, 951_782_400, 951_868_799, 4_107_542_399, end] {
        let want = time::OffsetDateTime::from_unix_timestamp(t)
            .expect("in range")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format");
        assert_eq!(format_time(t), want, "{t}");
    }
    assert_eq!(format_time(end + 1), "");
    assert_eq!(AssetTag(42).text().as_str(), "ASSET-000042");
    assert_eq!(AssetTag(1_234_567).text().as_str(), "ASSET-1234567");
}

#[test]
fn ipad_os_by_protocol() {
    assert_eq!(Family::IPad.os(6), "iOS");
    assert_eq!(Family::IPad.os(7), "iPadOS");
    assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
}
