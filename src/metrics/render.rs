//! The Prometheus text exposition format (0.0.4) of families, series and
//! histograms, and the label sets as the format writes them.

use super::*;

/// One family's text: HELP, TYPE, then one line per series.
pub(super) fn block<'a, V: std::fmt::Display>(
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

/// A histogram family: per series, cumulative `_bucket` lines with `le`,
/// then `_sum` (seconds) and `_count`.
pub(super) fn histogram_block(family: Family, samples: &BTreeMap<String, Arc<Cell>>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} histogram", family.name);
    for (labels, cell) in samples {
        let Cell::Histogram(h) = &**cell else {
            continue;
        };
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bucket) in h.buckets.iter().enumerate() {
            cumulative = cumulative.saturating_add(bucket.load(Ordering::Relaxed));
            let le = match BUCKETS_US.get(i) {
                Some(us) => format_seconds(*us),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(
                out,
                "{}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}",
                family.name
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{}_sum{braces} {}",
            family.name,
            format_seconds(h.sum_us.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            out,
            "{}_count{braces} {}",
            family.name,
            h.count.load(Ordering::Relaxed)
        );
    }
    out
}

/// Microseconds as seconds, without trailing zeros (`0.0025`, `1`, `60`).
pub(super) fn format_seconds(us: u64) -> String {
    let whole = us / 1_000_000;
    let frac = us % 1_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A label set rendered as the text format writes it between braces.
pub(super) struct Labels(pub(super) String);

impl Labels {
    pub(super) fn new() -> Self {
        let spare = SPARE.with(std::cell::Cell::take);
        Labels(spare.unwrap_or_else(|| String::with_capacity(64)))
    }

    /// Gives the buffer back for the next label set on this thread.
    pub(super) fn recycle(mut self) {
        self.0.clear();
        SPARE.with(|s| s.set(Some(self.0)));
    }

    /// The thread cache's key: family name, a separator no label text
    /// holds unescaped (`\u{1f}`), then the labels.
    pub(super) fn cache_key(mut self, family: Family) -> Self {
        self.0.insert(0, '\u{1f}');
        self.0.insert_str(0, family.name);
        self
    }

    pub(super) fn text(mut self, name: &str, value: &str) -> Self {
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

    pub(super) fn number(mut self, name: &str, value: u16) -> Self {
        self.start(name);
        let _ = write!(self.0, "{value}");
        self.0.push('"');
        self
    }

    pub(super) fn start(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(name);
        self.0.push_str("=\"");
    }
}
