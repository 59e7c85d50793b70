use super::*;

#[test]
fn page_limits() {
    assert_eq!(page_limit(None), 100);
    assert_eq!(page_limit(Some(0)), 100);
    assert_eq!(page_limit(Some(-5)), 100);
    assert_eq!(page_limit(Some(250)), 250);
    assert_eq!(page_limit(Some(5000)), 1000);
}

#[derive(Serialize)]
struct Page<'a> {
    cursor: &'a str,
    devices: &'a [DeviceJson<'a>],
    fetched_until: String,
    more_to_follow: bool,
}

#[test]
fn pages_are_serdes_bytes() {
    let pop = super::super::devices::Population::generate(50, 1, 1_700_000_000);
    let (devices, _) = pop.fetch_page(0, 50, 10);
    for (cursor, devices, more) in [
        ("MTIzNDU2Nzg5", &devices[..], true),
        ("a\"b", &devices[..1], false),
        ("", &[][..], true),
    ] {
        let want = serde_json::to_vec(&Page {
            cursor,
            devices,
            fetched_until: format_time(1_700_000_000),
            more_to_follow: more,
        })
        .expect("serde");
        let got = page(cursor, devices, 1_700_000_000, more).body;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }
}
