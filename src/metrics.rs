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
//! Every series is an atomic cell (counter, gauge or histogram), created
//! once under the registry's write lock and never replaced. Each thread
//! keeps the cells of the process registry it has used in a map of its
//! own, keyed by the rendered label text: counting an existing series takes
//! no lock, only a thread-local lookup and an atomic add. Rendering takes
//! the read lock and walks sorted maps, so the output is stable between
//! scrapes.
//!
//! Every label's values are bounded: routes are route patterns, methods
//! outside the standard set are `other`, Apple endpoints come from a fixed
//! table (anything else, such as a proxied path, is `other`), and the rest
//! are DEP names (bounded by `max_dep_names`), statuses and outcomes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

mod families;
mod render;
pub use families::endpoint_label;
use families::*;
use render::*;

/// A histogram's buckets (not cumulative; rendering sums them), the sum in
/// microseconds and the count.
struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let at = BUCKETS_US.partition_point(|bound| *bound < us);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// One series' value.
enum Cell {
    Counter(AtomicU64),
    Gauge(AtomicI64),
    Histogram(Box<Histogram>),
}

impl Cell {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Counter => Cell::Counter(AtomicU64::new(0)),
            Kind::Gauge => Cell::Gauge(AtomicI64::new(0)),
            Kind::Histogram => Cell::Histogram(Box::new(Histogram::new())),
        }
    }
}

type Series = BTreeMap<Family, BTreeMap<String, Arc<Cell>>>;

/// A counter and the histogram that times the same events.
type CellPair = (Arc<Cell>, Arc<Cell>);

/// A metrics registry. The process's own is `global()`.
pub struct Metrics {
    series: RwLock<Series>,
}

static GLOBAL: Metrics = Metrics::new();

/// The process-wide registry that `GET /metrics` renders.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

thread_local! {
    /// This thread's cells of the process registry, keyed by family name,
    /// a separator and the label text.
    static CELLS: std::cell::RefCell<HashMap<String, Arc<Cell>>> =
        std::cell::RefCell::new(HashMap::new());
    /// This thread's counter-and-histogram pairs of the process registry
    /// (a request counted and timed in one lookup), keyed by the counter's
    /// family name and the raw label values.
    static PAIRS: std::cell::RefCell<HashMap<String, CellPair>> =
        std::cell::RefCell::new(HashMap::new());
    /// A label buffer to reuse, so that counting an existing series does
    /// not allocate.
    static SPARE: std::cell::Cell<Option<String>> = const { std::cell::Cell::new(None) };
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub const fn new() -> Self {
        Metrics {
            series: RwLock::new(BTreeMap::new()),
        }
    }

    fn is_global(&self) -> bool {
        std::ptr::eq(self, &GLOBAL)
    }

    /// The cell of a series, created on first use. A panic while a lock
    /// was held left the maps whole (cells are inserted in one step), so a
    /// poisoned lock is used as it is.
    fn cell(&self, family: Family, labels: Labels) -> Arc<Cell> {
        if !self.is_global() {
            return self.shared_cell(family, labels);
        }
        let key = labels.cache_key(family);
        let cached = CELLS.with(|c| c.borrow().get(key.0.as_str()).cloned());
        if let Some(cell) = cached {
            key.recycle();
            return cell;
        }
        let plain = Labels(key.0[family.name.len() + 1..].to_owned());
        let cell = self.shared_cell(family, plain);
        CELLS.with(|c| c.borrow_mut().insert(key.0, cell.clone()));
        cell
    }

    /// Counts one event and records its time: a counter and a histogram
    /// found with one thread-local lookup by `raw` (the counter family's
    /// name and the label values, unescaped); `labels` makes both label
    /// sets the first time.
    fn count_and_time(
        &self,
        raw: &[&str],
        status: u16,
        elapsed: Duration,
        labels: impl FnOnce() -> ((Family, Labels), (Family, Labels)),
    ) {
        let record = |count: &Cell, time: &Cell| {
            if let Cell::Counter(c) = count {
                c.fetch_add(1, Ordering::Relaxed);
            }
            if let Cell::Histogram(h) = time {
                h.observe(elapsed);
            }
        };
        if !self.is_global() {
            let ((cf, cl), (tf, tl)) = labels();
            record(&self.shared_cell(cf, cl), &self.shared_cell(tf, tl));
            return;
        }
        let mut key = Labels::new();
        for part in raw {
            key.0.push_str(part);
            key.0.push('\u{1f}');
        }
        let _ = write!(key.0, "{status}");
        let hit = PAIRS.with(|p| match p.borrow().get(key.0.as_str()) {
            Some((count, time)) => {
                record(count, time);
                true
            }
            None => false,
        });
        if hit {
            key.recycle();
            return;
        }
        let ((cf, cl), (tf, tl)) = labels();
        let pair = (self.shared_cell(cf, cl), self.shared_cell(tf, tl));
        record(&pair.0, &pair.1);
        PAIRS.with(|p| p.borrow_mut().insert(key.0, pair));
    }

    fn shared_cell(&self, family: Family, labels: Labels) -> Arc<Cell> {
        let found = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&family)
            .and_then(|s| s.get(labels.0.as_str()))
            .cloned();
        if let Some(cell) = found {
            labels.recycle();
            return cell;
        }
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(family)
            .or_default()
            .entry(labels.0)
            .or_insert_with(|| Arc::new(Cell::new(family.kind)))
            .clone()
    }

    fn add(&self, family: Family, labels: Labels, n: u64) {
        if let Cell::Counter(c) = &*self.cell(family, labels) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn observe(&self, family: Family, labels: Labels, elapsed: Duration) {
        if let Cell::Histogram(h) = &*self.cell(family, labels) {
            h.observe(elapsed);
        }
    }

    /// Gauges are set rarely (once per cycle or delivery round) and are
    /// removed with their name, so they are not cached per thread: a
    /// cached cell would outlive the removal.
    fn set(&self, family: Family, name: &str, value: i64) {
        let labels = Labels::new().text("dep_name", name);
        if let Cell::Gauge(g) = &*self.shared_cell(family, labels) {
            g.store(value, Ordering::Relaxed);
        }
    }

    /// A request depd answered: counted by route, method and status, and
    /// timed by route, in one lookup.
    pub fn http_answered(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let method = known_method(method);
        self.count_and_time(
            &[HTTP_REQUESTS.name, route, method],
            status,
            elapsed,
            || {
                let counted = Labels::new()
                    .text("route", route)
                    .text("method", method)
                    .number("status", status);
                let timed = Labels::new().text("route", route);
                ((HTTP_REQUESTS, counted), (HTTP_DURATION, timed))
            },
        );
    }

    #[cfg(test)]
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        let method = known_method(method);
        let labels = Labels::new()
            .text("route", route)
            .text("method", method)
            .number("status", status);
        self.add(HTTP_REQUESTS, labels, 1);
    }

    pub fn auth_failure(&self) {
        self.add(AUTH_FAILURES, Labels::new(), 1);
    }

    pub fn mdm_webhook_delivery(&self, ok: bool) {
        self.add(
            MDM_WEBHOOK_DELIVERIES,
            Labels::new().text("result", ok_or_error(ok)),
            1,
        );
    }

    pub fn mdm_message(&self, message: &'static str, status: u16) {
        self.add(
            MDM_MESSAGES,
            Labels::new()
                .text("message", message)
                .text("status", &status.to_string()),
            1,
        );
    }

    /// One push's answer: counted by topic and result, timed by result.
    pub fn push(&self, topic: &str, result: &str, elapsed: Duration) {
        self.add(
            PUSHES,
            Labels::new().text("topic", topic).text("result", result),
            1,
        );
        let class = if result == "delivered" {
            "delivered"
        } else {
            "failed"
        };
        self.observe(PUSH_DURATION, Labels::new().text("result", class), elapsed);
    }

    pub fn push_retry(&self, topic: &str) {
        self.add(PUSH_RETRIES, Labels::new().text("topic", topic), 1);
    }

    pub fn set_push_cert_days_left(&self, topic: &str, days: i64) {
        let labels = Labels::new().text("topic", topic);
        if let Cell::Gauge(g) = &*self.shared_cell(PUSH_CERT_DAYS, labels) {
            g.store(days, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    /// How long an HTTP request took to answer.
    pub fn http_duration(&self, route: &str, elapsed: Duration) {
        self.observe(HTTP_DURATION, Labels::new().text("route", route), elapsed);
    }

    /// A request to Apple: `path` is mapped to its endpoint (see
    /// [`endpoint_label`]); status 0 means no answer.
    pub fn apple_call(&self, name: &str, path: &str, status: u16, elapsed: Duration) {
        let endpoint = endpoint_label(path);
        self.count_and_time(
            &[APPLE_REQUESTS.name, name, endpoint],
            status,
            elapsed,
            || {
                let counted = Labels::new()
                    .text("dep_name", name)
                    .text("endpoint", endpoint)
                    .number("status", status);
                let timed = Labels::new().text("endpoint", endpoint);
                ((APPLE_REQUESTS, counted), (APPLE_DURATION, timed))
            },
        );
    }

    pub fn apple_retry(&self, name: &str, path: &str) {
        let labels = Labels::new()
            .text("dep_name", name)
            .text("endpoint", endpoint_label(path));
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

    pub fn webhook_delivery(&self, name: &str, ok: bool, elapsed: Duration) {
        let labels = Labels::new()
            .text("dep_name", name)
            .text("result", ok_or_error(ok));
        self.add(WEBHOOK_DELIVERIES, labels, 1);
        self.observe(
            WEBHOOK_DURATION,
            Labels::new().text("result", ok_or_error(ok)),
            elapsed,
        );
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
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        for family in NAME_GAUGES {
            if let Some(by_name) = series.get_mut(&family) {
                by_name.remove(&key);
            }
        }
    }

    #[cfg(test)]
    /// The value of one counter or gauge series (a histogram's count), by
    /// metric name and label pairs in the order the metric declares them;
    /// `None` if it was never recorded.
    pub fn value(&self, metric: &str, labels: &[(&str, &str)]) -> Option<i64> {
        let key = labels
            .iter()
            .fold(Labels::new(), |l, (name, value)| l.text(name, value))
            .0;
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let cell = series
            .iter()
            .find(|(f, _)| f.name == metric)
            .and_then(|(_, s)| s.get(&key))?;
        Some(match &**cell {
            Cell::Counter(c) => saturating_i64(c.load(Ordering::Relaxed)),
            Cell::Gauge(g) => g.load(Ordering::Relaxed),
            Cell::Histogram(h) => saturating_i64(h.count.load(Ordering::Relaxed)),
        })
    }

    #[cfg(test)]
    /// How many series the registry holds (every histogram counts once).
    pub fn series_count(&self) -> usize {
        self.series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(BTreeMap::len)
            .sum()
    }

    /// Every family with at least one series, sorted by name, each series
    /// sorted by its labels, with `# HELP` and `# TYPE` lines.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let version = Labels::new().text("version", env!("CARGO_PKG_VERSION")).0;
        let mut fixed: BTreeMap<&'static str, String> = BTreeMap::new();
        fixed.insert(UP.name, block(UP, [("", 1)]));
        fixed.insert(BUILD_INFO.name, block(BUILD_INFO, [(version.as_str(), 1)]));
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let mut blocks: BTreeMap<&'static str, String> = fixed;
        for (family, samples) in series.iter() {
            if samples.is_empty() {
                continue;
            }
            let text = match family.kind {
                Kind::Histogram => histogram_block(*family, samples),
                _ => block(
                    *family,
                    samples.iter().map(|(l, cell)| {
                        let v = match &**cell {
                            Cell::Counter(c) => saturating_i64(c.load(Ordering::Relaxed)),
                            Cell::Gauge(g) => g.load(Ordering::Relaxed),
                            Cell::Histogram(_) => 0,
                        };
                        (l.as_str(), v)
                    }),
                ),
            };
            blocks.insert(family.name, text);
        }
        drop(series);
        for text in blocks.into_values() {
            out.push_str(&text);
        }
        out
    }
}

fn known_method(method: &str) -> &'static str {
    METHODS
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}

fn ok_or_error(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
/// Counts a request answered by depd's HTTP server. `route` is the matched
/// route pattern (`/v1/tokens/{name}`), never the raw path.
pub fn http_request(route: &str, method: &str, status: u16) {
    global().http_request(route, method, status);
}

/// Counts a request with wrong API credentials.
pub fn auth_failure() {
    global().auth_failure();
}

/// An MDM webhook delivery attempt.
pub fn mdm_webhook_delivery(ok: bool) {
    global().mdm_webhook_delivery(ok);
}

/// An MDM message answered: its type (`Authenticate`, …, `Report`) and
/// status.
pub fn mdm_message(message: &'static str, status: u16) {
    global().mdm_message(message, status);
}

/// One APNs push answered (or failed): `result` is `delivered`, APNs's
/// reason, `http_<status>` or `transport`.
pub fn push(topic: &str, result: &str, elapsed: Duration) {
    global().push(topic, result, elapsed);
}

pub fn push_retry(topic: &str) {
    global().push_retry(topic);
}

pub fn set_push_cert_days_left(topic: &str, days: i64) {
    global().set_push_cert_days_left(topic, days);
}

/// Counts and times a request depd answered. `route` is the matched route
/// pattern, never the raw path.
pub fn http_answered(route: &str, method: &str, status: u16, elapsed: Duration) {
    global().http_answered(route, method, status, elapsed);
}

/// Counts a request to Apple and its latency; `path` is mapped to a fixed
/// endpoint label; `status` 0 means no answer (network error, timeout).
pub fn apple_call(name: &str, path: &str, status: u16, elapsed: Duration) {
    global().apple_call(name, path, status, elapsed);
}

/// Counts a request sent again after a transient failure.
pub fn apple_retry(name: &str, path: &str) {
    global().apple_retry(name, path);
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
pub fn webhook_delivery(name: &str, ok: bool, elapsed: Duration) {
    global().webhook_delivery(name, ok, elapsed);
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
mod tests;
