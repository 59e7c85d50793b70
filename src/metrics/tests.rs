use super::*;

fn lines(m: &Metrics) -> Vec<String> {
    m.render().lines().map(str::to_owned).collect()
}

#[test]
fn counters_add_up_per_label_set() {
    let m = Metrics::new();
    m.http_request("/v1/tokens/{name}", "GET", 200);
    m.http_request("/v1/tokens/{name}", "GET", 200);
    m.http_request("/v1/tokens/{name}", "PUT", 200);
    m.synced_devices("acme", "added", 3);
    m.synced_devices("acme", "added", 4);
    let get = [
        ("route", "/v1/tokens/{name}"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(m.value("depd_http_requests_total", &get), Some(2));
    let put = [
        ("route", "/v1/tokens/{name}"),
        ("method", "PUT"),
        ("status", "200"),
    ];
    assert_eq!(m.value("depd_http_requests_total", &put), Some(1));
    let added = [("dep_name", "acme"), ("op_type", "added")];
    assert_eq!(m.value("depd_sync_devices_total", &added), Some(7));
    assert!(
        lines(&m).contains(
            &r#"depd_http_requests_total{route="/v1/tokens/{name}",method="GET",status="200"} 2"#
                .to_owned()
        )
    );
}

#[test]
fn renders_every_caller_metric_with_its_labels() {
    let m = Metrics::new();
    m.apple_call("acme", "/devices", 0, Duration::from_millis(3));
    m.session_opened("acme", true);
    m.session_opened("acme", false);
    m.sync_cycle("acme", "repeated_cursor");
    m.synced_devices("acme", "", 2);
    m.assignment_results("acme", "SUCCESS", 5);
    m.webhook_delivery("acme", false, Duration::from_millis(20));
    m.set_webhook_backlog("acme", 9);
    m.set_token_days_left("acme", -2);
    m.set_devices("acme", 12);
    let text = m.render();
    for line in [
        r#"depd_apple_requests_total{dep_name="acme",endpoint="/devices",status="0"} 1"#,
        r#"depd_apple_sessions_total{dep_name="acme",result="error"} 1"#,
        r#"depd_apple_sessions_total{dep_name="acme",result="ok"} 1"#,
        r#"depd_sync_cycles_total{dep_name="acme",outcome="repeated_cursor"} 1"#,
        r#"depd_sync_devices_total{dep_name="acme",op_type="none"} 2"#,
        r#"depd_assignments_total{dep_name="acme",result="SUCCESS"} 5"#,
        r#"depd_webhook_deliveries_total{dep_name="acme",result="error"} 1"#,
        r#"depd_webhook_backlog{dep_name="acme"} 9"#,
        r#"depd_token_days_to_expiry{dep_name="acme"} -2"#,
        r#"depd_inventory_devices{dep_name="acme"} 12"#,
        "depd_up 1",
        concat!(
            r#"depd_build_info{version=""#,
            env!("CARGO_PKG_VERSION"),
            r#""} 1"#
        ),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    assert!(text.ends_with('\n'));
}

#[test]
fn families_have_help_and_type_once_and_are_sorted() {
    let m = Metrics::new();
    m.webhook_delivery("b", true, Duration::ZERO);
    m.http_request("/healthz", "GET", 200);
    m.set_devices("a", 1);
    m.apple_call("a", "/account", 200, Duration::ZERO);
    let lines = lines(&m);
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted);
    for (help, kind) in [
        (
            "# HELP depd_http_requests_total ",
            "# TYPE depd_http_requests_total counter",
        ),
        (
            "# HELP depd_inventory_devices ",
            "# TYPE depd_inventory_devices gauge",
        ),
    ] {
        let at = lines.iter().position(|l| l.starts_with(help));
        let at = at.unwrap_or_else(|| panic!("no {help}"));
        assert_eq!(lines[at + 1], kind);
    }
    // Every sample line follows its own family's TYPE line.
    let mut family = "";
    for line in &lines {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap_or_default();
        } else if !line.starts_with('#') {
            assert!(line.starts_with(family), "{line} under {family}");
        }
    }
}

#[test]
fn series_are_sorted_and_rendering_is_stable() {
    let m = Metrics::new();
    for name in ["zulu", "alpha", "mike"] {
        m.session_opened(name, true);
    }
    let text = m.render();
    let order: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("depd_apple_sessions_total{"))
        .collect();
    assert_eq!(
        order,
        [
            r#"depd_apple_sessions_total{dep_name="alpha",result="ok"} 1"#,
            r#"depd_apple_sessions_total{dep_name="mike",result="ok"} 1"#,
            r#"depd_apple_sessions_total{dep_name="zulu",result="ok"} 1"#,
        ]
    );
    assert_eq!(m.render(), text);
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    m.set_devices("a\\b\"c\nd", 1);
    assert!(
        m.render()
            .lines()
            .any(|l| l == r#"depd_inventory_devices{dep_name="a\\b\"c\nd"} 1"#),
        "{}",
        m.render()
    );
    assert_eq!(
        m.value("depd_inventory_devices", &[("dep_name", "a\\b\"c\nd")]),
        Some(1)
    );
}

#[test]
fn gauges_replace() {
    let m = Metrics::new();
    m.set_webhook_backlog("acme", 10);
    m.set_webhook_backlog("acme", 3);
    m.set_token_days_left("acme", 40);
    m.set_token_days_left("acme", 39);
    let acme = [("dep_name", "acme")];
    assert_eq!(m.value("depd_webhook_backlog", &acme), Some(3));
    assert_eq!(m.value("depd_token_days_to_expiry", &acme), Some(39));
    let text = m.render();
    assert_eq!(text.matches("depd_webhook_backlog{").count(), 1);
}

#[test]
fn remove_name_drops_only_that_names_gauges() {
    let m = Metrics::new();
    for name in ["gone", "kept"] {
        m.set_webhook_backlog(name, 1);
        m.set_token_days_left(name, 2);
        m.set_devices(name, 3);
        m.sync_cycle(name, "complete");
    }
    m.remove_name("gone");
    let gone = [("dep_name", "gone")];
    let kept = [("dep_name", "kept")];
    for gauge in [
        "depd_webhook_backlog",
        "depd_token_days_to_expiry",
        "depd_inventory_devices",
    ] {
        assert_eq!(m.value(gauge, &gone), None, "{gauge}");
        assert!(m.value(gauge, &kept).is_some(), "{gauge}");
    }
    let cycles = [("dep_name", "gone"), ("outcome", "complete")];
    assert_eq!(m.value("depd_sync_cycles_total", &cycles), Some(1));
    assert!(
        !m.render()
            .contains(r#"depd_inventory_devices{dep_name="gone"}"#)
    );
}

#[test]
fn unknown_methods_are_other() {
    let m = Metrics::new();
    m.http_request("unmatched", "BREW", 404);
    let other = [
        ("route", "unmatched"),
        ("method", "other"),
        ("status", "404"),
    ];
    assert_eq!(m.value("depd_http_requests_total", &other), Some(1));
    let brew = [
        ("route", "unmatched"),
        ("method", "BREW"),
        ("status", "404"),
    ];
    assert_eq!(m.value("depd_http_requests_total", &brew), None);
}

#[test]
fn apple_endpoints_come_from_a_fixed_table() {
    let m = Metrics::new();
    for (i, path) in ["/devices?x=1", "/devices/", "/account"].iter().enumerate() {
        m.apple_call("acme", path, 200, Duration::from_millis(i as u64));
    }
    for i in 0..1000 {
        m.apple_call("acme", &format!("/made/up/{i}"), 404, Duration::ZERO);
        m.apple_retry("acme", &format!("/x{i}"));
    }
    let devices = [
        ("dep_name", "acme"),
        ("endpoint", "/devices"),
        ("status", "200"),
    ];
    assert_eq!(m.value("depd_apple_requests_total", &devices), Some(2));
    let other = [
        ("dep_name", "acme"),
        ("endpoint", "other"),
        ("status", "404"),
    ];
    assert_eq!(m.value("depd_apple_requests_total", &other), Some(1000));
    // requests: /devices, /account, other; durations: the same three
    // endpoints; retries: other.
    assert_eq!(m.series_count(), 7, "{}", m.render());
}

#[test]
fn histograms_render_cumulative_buckets_sum_and_count() {
    let m = Metrics::new();
    m.http_duration("/v1/x", Duration::from_micros(700));
    m.http_duration("/v1/x", Duration::from_millis(30));
    m.http_duration("/v1/x", Duration::from_secs(100));
    let text = m.render();
    for line in [
        "# TYPE depd_http_request_duration_seconds histogram",
        r#"depd_http_request_duration_seconds_bucket{route="/v1/x",le="0.001"} 1"#,
        r#"depd_http_request_duration_seconds_bucket{route="/v1/x",le="0.025"} 1"#,
        r#"depd_http_request_duration_seconds_bucket{route="/v1/x",le="0.05"} 2"#,
        r#"depd_http_request_duration_seconds_bucket{route="/v1/x",le="60"} 2"#,
        r#"depd_http_request_duration_seconds_bucket{route="/v1/x",le="+Inf"} 3"#,
        r#"depd_http_request_duration_seconds_sum{route="/v1/x"} 100.0307"#,
        r#"depd_http_request_duration_seconds_count{route="/v1/x"} 3"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    assert_eq!(format_seconds(2_500), "0.0025");
    assert_eq!(format_seconds(60_000_000), "60");
}

#[test]
fn the_global_registry_counts_through_the_thread_cache() {
    // Labels unique to this test: the global registry is shared.
    let labels = [
        ("route", "/test/cache"),
        ("method", "GET"),
        ("status", "299"),
    ];
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..1000 {
                    http_request("/test/cache", "GET", 299);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(
        global().value("depd_http_requests_total", &labels),
        Some(4000)
    );
}

#[test]
fn an_empty_registry_still_reports_up_and_build_info() {
    let lines = lines(&Metrics::new());
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert!(lines.contains(&"depd_up 1".to_owned()));
}

#[test]
fn a_poisoned_lock_is_recovered() {
    let m = std::sync::Arc::new(Metrics::new());
    let m2 = m.clone();
    let _ = std::thread::spawn(move || {
        let _guard = m2.series.write();
        panic!("poison the lock");
    })
    .join();
    m.session_opened("acme", true);
    let ok = [("dep_name", "acme"), ("result", "ok")];
    assert_eq!(m.value("depd_apple_sessions_total", &ok), Some(1));
}
