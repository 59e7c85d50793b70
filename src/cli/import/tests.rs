use super::*;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

fn filekv(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("dep_names")).expect("mkdir");
    for (name, value) in files {
        std::fs::write(dir.path().join("dep_names").join(name), value).expect("write");
    }
    dir
}

fn outcome<'a>(report: &'a Report, name: &str, what: &str) -> Option<&'a Outcome> {
    report
        .names
        .iter()
        .find(|n| n.name == name)
        .and_then(|n| n.items.iter().find(|i| i.what == what))
        .map(|i| &i.outcome)
}

#[test]
fn dry_run_writes_nothing_and_a_second_import_changes_nothing() {
    let kv = filekv(&[
        ("consumer_key.a.b", "CK"),
        ("consumer_secret.a.b", "CS"),
        ("access_token.a.b", "AT"),
        ("access_secret.a.b", "AS"),
        ("access_token_expiry.a.b", "2027-01-01T00:00:00Z\n"),
        ("assigner_profile.a.b", "P1"),
        ("cursor.a.b", "CUR"),
        ("config.a.b", r#"{"base_url":"ftp://nope"}"#),
        ("README", "x"),
    ]);
    let data = kv.path().join("data");
    let dry = import_nanodep(kv.path(), &data, None, true, NOW).expect("dry run");
    assert!(dry.dry_run && dry.changed());
    assert!(!data.exists(), "a dry run creates nothing");
    assert!(
        dry.to_string()
            .contains("tokens: would import (consumer key CK")
    );

    let first = import_nanodep(kv.path(), &data, None, false, NOW).expect("import");
    assert_eq!(
        outcome(&first, "a.b", "assigner"),
        Some(&Outcome::Imported(
            "profile P1, modified 2026-03-01T12:00:00Z; no modification time, set to now".into()
        ))
    );
    assert!(matches!(
        outcome(&first, "a.b", "base URL"),
        Some(Outcome::Skipped(why)) if why.contains("http")
    ));
    assert_eq!(first.ignored.len(), 1, "{first}");
    let again = import_nanodep(
        kv.path(),
        &data,
        None,
        false,
        datetime!(2026-03-02 12:00 UTC),
    )
    .expect("again");
    assert!(!again.changed(), "{again}");
    assert_eq!(outcome(&again, "a.b", "cursor"), Some(&Outcome::Unchanged));
}

#[test]
fn a_running_daemon_is_named_as_the_reason() {
    let kv = filekv(&[("cursor.x", "C")]);
    let data = kv.path().join("data");
    let _held = crate::store::open_data_dir(&data, None).expect("open");
    let err = import_nanodep(kv.path(), &data, None, false, NOW).expect_err("locked");
    assert!(matches!(err, ImportError::Locked(_)), "{err}");
    assert!(err.to_string().contains("stop depd first"));
}
