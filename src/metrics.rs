//! Process-wide metrics, rendered in the Prometheus text exposition format
//! (0.0.4) by `GET /metrics`.
//!
//! One registry per process, a `static`: the callers are deep in actors,
//! the sync rules and the proxy, and threading an `Arc<Metrics>` through
//! every one of them would buy nothing, since a process has one set of
//! counters anyway. The free functions (`http_request`, `apple_call`, …)
//! record into it; `Metrics` itself can also be created on its own, which
//! the unit tests do so they do not share counters.
//!
//! A series is stored under its label set already rendered and escaped
//! (`route="/v1/x",method="GET",status="200"`): recording costs one string
//! and one map lookup under a mutex, and rendering is a walk of sorted maps,
//! so the output is stable between scrapes. Every label's values are
//! bounded: routes are route patterns, methods outside the standard set are
//! `other`, and the rest are DEP names, endpoints, statuses and outcomes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A metric family: the name comes first so families sort by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
}

const HTTP_REQUESTS: Family = Family {
    name: "depd_http_requests_total",
    help: "HTTP requests answered by depd, by matched route pattern, method and status.",
    kind: Kind::Counter,
};
const APPLE_REQUESTS: Family = Family {
    name: "depd_apple_requests_total",
    help: "Requests to Apple's DEP API by DEP name, endpoint and status (0: no answer).",
    kind: Kind::Counter,
};
const APPLE_RETRIES: Family = Family {
    name: "depd_apple_retries_total",
    help: "Requests to Apple sent again within a sync cycle after a transient failure (5xx, 429, timeout, connection error), by DEP name and endpoint.",
    kind: Kind::Counter,
};
const APPLE_SESSIONS: Family = Family {
    name: "depd_apple_sessions_total",
    help: "Calls to Apple's /session by DEP name and result.",
    kind: Kind::Counter,
};
const SYNC_CYCLES: Family = Family {
    name: "depd_sync_cycles_total",
    help: "Finished sync cycles by DEP name and outcome.",
    kind: Kind::Counter,
};
const SYNC_DEVICES: Family = Family {
    name: "depd_sync_devices_total",
    help: "Device records received from Apple by DEP name and op_type.",
    kind: Kind::Counter,
};
const ASSIGNMENTS: Family = Family {
    name: "depd_assignments_total",
    help: "Per-serial profile assignment results by DEP name and result.",
    kind: Kind::Counter,
};
const WEBHOOK_DELIVERIES: Family = Family {
    name: "depd_webhook_deliveries_total",
    help: "Webhook delivery attempts by DEP name and result.",
    kind: Kind::Counter,
};
const WEBHOOK_BACKLOG: Family = Family {
    name: "depd_webhook_backlog",
    help: "Webhook events waiting for delivery, by DEP name.",
    kind: Kind::Gauge,
};
const TOKEN_DAYS: Family = Family {
    name: "depd_token_days_to_expiry",
    help: "Whole days until the DEP name's OAuth tokens expire (negative: expired).",
    kind: Kind::Gauge,
};
const INVENTORY_DEVICES: Family = Family {
    name: "depd_inventory_devices",
    help: "Devices in the DEP name's inventory.",
    kind: Kind::Gauge,
};
const UP: Family = Family {
    name: "depd_up",
    help: "1 while depd serves.",
    kind: Kind::Gauge,
};
const BUILD_INFO: Family = Family {
    name: "depd_build_info",
    help: "depd's version, as a label; the value is always 1.",
    kind: Kind::Gauge,
};

/// The per-name gauges, all labelled by `dep_name` alone.
const NAME_GAUGES: [Family; 3] = [WEBHOOK_BACKLOG, TOKEN_DAYS, INVENTORY_DEVICES];

/// Methods kept as they are; anything else is `other`, so a client sending
/// made-up methods cannot grow the registry.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

#[derive(Default)]
struct Series {
    counters: BTreeMap<Family, BTreeMap<String, u64>>,
    gauges: BTreeMap<Family, BTreeMap<String, i64>>,
}

/// A metrics registry. The process's own is `global()`.
pub struct Metrics {
    series: Mutex<Series>,
}

static GLOBAL: Metrics = Metrics::new();

/// The process-wide registry that `GET /metrics` renders.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub const fn new() -> Self {
        Metrics {
            series: Mutex::new(Series {
                counters: BTreeMap::new(),
                gauges: BTreeMap::new(),
            }),
        }
    }

    /// A panic while the lock was held left at most one sample behind;
    /// metrics keep working rather than poisoning every later request.
    fn lock(&self) -> MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, family: Family, labels: Labels, n: u64) {
        let mut series = self.lock();
        let by_labels = series.counters.entry(family).or_default();
        // A series is counted many times and created once: look it up by
        // the borrowed text, so counting allocates nothing.
        if let Some(value) = by_labels.get_mut(labels.0.as_str()) {
            *value = value.saturating_add(n);
            drop(series);
            labels.recycle();
        } else {
            by_labels.insert(labels.0, n);
        }
    }

    fn set(&self, family: Family, name: &str, value: i64) {
        let labels = Labels::new().text("dep_name", name);
        self.lock()
            .gauges
            .entry(family)
            .or_default()
            .insert(labels.0, value);
    }

    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        let method = METHODS
            .into_iter()
            .find(|m| *m == method)
            .unwrap_or("other");
        let labels = Labels::new()
            .text("route", route)
            .text("method", method)
            .number("status", status);
        self.add(HTTP_REQUESTS, labels, 1);
    }

    pub fn apple_call(&self, name: &str, endpoint: &str, status: u16) {
        let labels = Labels::new()
            .text("dep_name", name)
            .text("endpoint", endpoint)
            .number("status", status);
        self.add(APPLE_REQUESTS, labels, 1);
    }

    pub fn apple_retry(&self, name: &str, endpoint: &str) {
        let labels = Labels::new()
            .text("dep_name", name)
            .text("endpoint", endpoint);
        self.add(APPLE_RETRIES, labels, 1);
    }

    pub fn session_opened(&self, name: &str, ok: bool) {
        let labels = Labels::new()
            .text("dep_name", name)
            .text("result", ok_or_error(ok));
        self.add(APPLE_SESSIONS, labels, 1);
    }

    pub fn sync_cycle(&self, name: &str, outcome: &str) {
        let labels = Labels::new()
            .text("dep_name", name)
            .text("outcome", outcome);
        self.add(SYNC_CYCLES, labels, 1);
    }

    pub fn synced_devices(&self, name: &str, op_type: &str, n: u64) {
        let op_type = if op_type.is_empty() { "none" } else { op_type };
        let labels = Labels::new()
            .text("dep_name", name)
            .text("op_type", op_type);
        self.add(SYNC_DEVICES, labels, n);
    }

    pub fn assignment_results(&self, name: &str, result: &str, n: u64) {
        let labels = Labels::new().text("dep_name", name).text("result", result);
        self.add(ASSIGNMENTS, labels, n);
    }

    pub fn webhook_delivery(&self, name: &str, ok: bool) {
        let labels = Labels::new()
            .text("dep_name", name)
            .text("result", ok_or_error(ok));
        self.add(WEBHOOK_DELIVERIES, labels, 1);
    }

    pub fn set_webhook_backlog(&self, name: &str, n: u64) {
        self.set(WEBHOOK_BACKLOG, name, saturating_i64(n));
    }

    pub fn set_token_days_left(&self, name: &str, days: i64) {
        self.set(TOKEN_DAYS, name, days);
    }

    pub fn set_devices(&self, name: &str, n: u64) {
        self.set(INVENTORY_DEVICES, name, saturating_i64(n));
    }

    /// Drops a name's gauges, so a removed name stops reporting (and
    /// alerting on) a backlog or an expiry it no longer has. Its counters
    /// stay: counters only go up until the process restarts, which is what
    /// `rate()` and `increase()` expect.
    pub fn remove_name(&self, name: &str) {
        let key = Labels::new().text("dep_name", name).0;
        let mut series = self.lock();
        for family in NAME_GAUGES {
            if let Some(by_name) = series.gauges.get_mut(&family) {
                by_name.remove(&key);
            }
        }
    }

    /// The value of one series, by metric name and label pairs in the order
    /// the metric declares them; `None` if it was never recorded.
    pub fn value(&self, metric: &str, labels: &[(&str, &str)]) -> Option<i64> {
        let key = labels
            .iter()
            .fold(Labels::new(), |l, (name, value)| l.text(name, value))
            .0;
        let series = self.lock();
        let counter = series
            .counters
            .iter()
            .find(|(f, _)| f.name == metric)
            .and_then(|(_, s)| s.get(&key))
            .map(|v| saturating_i64(*v));
        counter.or_else(|| {
            series
                .gauges
                .iter()
                .find(|(f, _)| f.name == metric)
                .and_then(|(_, s)| s.get(&key))
                .copied()
        })
    }

    /// Every family with at least one series, sorted by name, each series
    /// sorted by its labels, with `# HELP` and `# TYPE` lines.
    pub fn render(&self) -> String {
        let mut blocks: BTreeMap<&'static str, String> = BTreeMap::new();
        let version = Labels::new().text("version", env!("CARGO_PKG_VERSION")).0;
        blocks.insert(UP.name, block(UP, [("", 1)]));
        blocks.insert(BUILD_INFO.name, block(BUILD_INFO, [(version.as_str(), 1)]));
        let series = self.lock();
        for (family, samples) in &series.counters {
            if !samples.is_empty() {
                let samples = samples.iter().map(|(l, v)| (l.as_str(), *v));
                blocks.insert(family.name, block(*family, samples));
            }
        }
        for (family, samples) in &series.gauges {
            if !samples.is_empty() {
                let samples = samples.iter().map(|(l, v)| (l.as_str(), *v));
                blocks.insert(family.name, block(*family, samples));
            }
        }
        drop(series);
        blocks.into_values().collect()
    }
}

/// One family's text: HELP, TYPE, then one line per series.
fn block<'a, V: std::fmt::Display>(
    family: Family,
    samples: impl IntoIterator<Item = (&'a str, V)>,
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{} {value}", family.name);
        } else {
            let _ = writeln!(out, "{}{{{labels}}} {value}", family.name);
        }
    }
    out
}

thread_local! {
    /// A label buffer to reuse, so that counting an existing series does
    /// not allocate (see `Metrics::add`).
    static SPARE: std::cell::Cell<Option<String>> = const { std::cell::Cell::new(None) };
}

/// A label set rendered as the text format writes it between braces.
struct Labels(String);

impl Labels {
    fn new() -> Self {
        let spare = SPARE.with(std::cell::Cell::take);
        Labels(spare.unwrap_or_else(|| String::with_capacity(64)))
    }

    /// Gives the buffer back for the next label set on this thread.
    fn recycle(mut self) {
        self.0.clear();
        SPARE.with(|s| s.set(Some(self.0)));
    }

    fn text(mut self, name: &str, value: &str) -> Self {
        self.start(name);
        if !value.contains(['\\', '"', '\n']) {
            self.0.push_str(value);
        } else {
            for c in value.chars() {
                match c {
                    '\\' => self.0.push_str("\\\\"),
                    '"' => self.0.push_str("\\\""),
                    '\n' => self.0.push_str("\\n"),
                    c => self.0.push(c),
                }
            }
        }
        self.0.push('"');
        self
    }

    fn number(mut self, name: &str, value: u16) -> Self {
        self.start(name);
        let mut digits = [0u8; 5];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for d in &digits[at..] {
            self.0.push(char::from(*d));
        }
        self.0.push('"');
        self
    }

    fn start(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(name);
        self.0.push_str("=\"");
    }
}

fn ok_or_error(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Counts a request answered by depd's HTTP server. `route` is the matched
/// route pattern (`/v1/tokens/{name}`), never the raw path.
pub fn http_request(route: &str, method: &str, status: u16) {
    global().http_request(route, method, status);
}

/// Counts a request to Apple; `status` 0 means no answer (network error,
/// timeout).
pub fn apple_call(name: &str, endpoint: &str, status: u16) {
    global().apple_call(name, endpoint, status);
}

/// Counts a request sent again after a transient failure.
pub fn apple_retry(name: &str, endpoint: &str) {
    global().apple_retry(name, endpoint);
}

/// Counts a `/session` call.
pub fn session_opened(name: &str, ok: bool) {
    global().session_opened(name, ok);
}

/// Counts a finished sync cycle: `complete`, `repeated_cursor` or `failed`.
pub fn sync_cycle(name: &str, outcome: &str) {
    global().sync_cycle(name, outcome);
}

/// Counts device records received; an empty `op_type` is counted as `none`.
pub fn synced_devices(name: &str, op_type: &str, n: u64) {
    global().synced_devices(name, op_type, n);
}

/// Counts per-serial assignment results (`SUCCESS`, `FAILED`, …).
pub fn assignment_results(name: &str, result: &str, n: u64) {
    global().assignment_results(name, result, n);
}

/// Counts a webhook delivery attempt.
pub fn webhook_delivery(name: &str, ok: bool) {
    global().webhook_delivery(name, ok);
}

pub fn set_webhook_backlog(name: &str, n: u64) {
    global().set_webhook_backlog(name, n);
}

pub fn set_token_days_left(name: &str, days: i64) {
    global().set_token_days_left(name, days);
}

pub fn set_devices(name: &str, n: u64) {
    global().set_devices(name, n);
}

/// Drops the gauges of a name that no longer exists.
pub fn remove_name(name: &str) {
    global().remove_name(name);
}

/// The process-wide registry in the text exposition format.
pub fn render() -> String {
    global().render()
}

#[cfg(test)]
mod tests {
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
        assert!(lines(&m).contains(
            &r#"depd_http_requests_total{route="/v1/tokens/{name}",method="GET",status="200"} 2"#
                .to_owned()
        ));
    }

    #[test]
    fn renders_every_caller_metric_with_its_labels() {
        let m = Metrics::new();
        m.apple_call("acme", "/devices", 0);
        m.session_opened("acme", true);
        m.session_opened("acme", false);
        m.sync_cycle("acme", "repeated_cursor");
        m.synced_devices("acme", "", 2);
        m.assignment_results("acme", "SUCCESS", 5);
        m.webhook_delivery("acme", false);
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
        m.webhook_delivery("b", true);
        m.http_request("/healthz", "GET", 200);
        m.set_devices("a", 1);
        m.apple_call("a", "/account", 200);
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
            let _guard = m2.series.lock();
            panic!("poison the lock");
        })
        .join();
        m.session_opened("acme", true);
        let ok = [("dep_name", "acme"), ("result", "ok")];
        assert_eq!(m.value("depd_apple_sessions_total", &ok), Some(1));
    }
}
