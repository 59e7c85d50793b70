//! What the host did to the benchmark: on a virtual machine the host may
//! run other guests on "our" cores, and the CPU time it takes (steal, from
//! /proc/stat) slows every figure of a run. Shared by the benches.

/// The machine's CPU time so far, in clock ticks: (all, stolen).
pub fn ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    (
        fields.iter().take(8).sum(),
        fields.get(7).copied().unwrap_or(0),
    )
}

/// How much of the machine's CPU time since `before` the host took.
pub fn stolen_since(before: (u64, u64)) -> String {
    let after = ticks();
    let (all, steal) = (after.0 - before.0, after.1 - before.1);
    format!(
        "{:.1} % of CPU time stolen by the host during the run",
        steal as f64 * 100.0 / all.max(1) as f64
    )
}
