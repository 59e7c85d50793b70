//! Giving freed heap back to the operating system after bursts of work.
//!
//! glibc's allocator keeps memory freed in the middle of its heap (and
//! in its per-thread arenas) for reuse, so after a sync cycle of many names
//! or devices depd's resident memory stays at the cycle's peak until the
//! next one. Once sync cycles have finished and none has started for
//! [`QUIET`], depd drops the indexes of small names (rebuilt on their
//! next use, `Store::release_idle_memory`) and asks glibc to return what
//! it does not use (`malloc_trim`), on a blocking thread. Not during a burst: trimming
//! then only makes the allocator fetch the memory again. Other C
//! libraries: nothing to do.
//!
//! At start, [`tune`] fixes glibc's mmap threshold at 1 MiB: by default
//! glibc raises it (up to 32 MiB) each time a large block is freed, after
//! which large transient buffers come from the heap and leave it
//! fragmented. Measured: peak memory of a 1,000,000-device sync 186–196 →
//! 176–181 MiB, throughput unchanged (128 KiB cut memory further but cost
//! 15–25 % throughput in page faults).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long no cycle may have started before a trim; also how often the
/// registry looks.
pub const QUIET: Duration = Duration::from_secs(10);

static WANTED: AtomicBool = AtomicBool::new(false);
/// Milliseconds after [`epoch`] when the latest cycle started.
static LAST_START_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Notes that a sync cycle started.
pub fn cycle_started() {
    LAST_START_MS.store(now_ms(), Ordering::Relaxed);
}

/// Notes that a sync cycle finished: memory may be given back once quiet.
pub fn cycle_finished() {
    WANTED.store(true, Ordering::Relaxed);
}

/// When a cycle finished since the last trim and none started for
/// [`QUIET`]: runs `release` (which frees caches only work in progress
/// needs), then trims; returns whether it did. May block for some
/// milliseconds.
pub fn release_if_quiet(release: impl FnOnce()) -> bool {
    let quiet = now_ms().saturating_sub(LAST_START_MS.load(Ordering::Relaxed));
    release_if(Duration::from_millis(quiet) >= QUIET, release)
}

fn release_if(quiet: bool, release: impl FnOnce()) -> bool {
    if !quiet || !WANTED.swap(false, Ordering::Relaxed) {
        return false;
    }
    release();
    trim();
    true
}

/// Fixed mmap threshold (see the module comment).
pub const MMAP_THRESHOLD: i32 = 1 << 20;

/// Tunes the allocator for a long-running daemon; an operator's own
/// `MALLOC_MMAP_THRESHOLD_` wins. Call once, early in `serve`.
pub fn tune() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        set_mmap_threshold(MMAP_THRESHOLD);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(bytes: i32) {
    // SAFETY: mallopt only changes glibc's allocator parameters.
    #[allow(unsafe_code)] // reviewed: a libc call with no pointers kept
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold(_: i32) {}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own heap; 0 keeps no padding.
    #[allow(unsafe_code)] // reviewed: a libc call with no pointers kept
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_runs_once_per_finished_burst_and_only_when_quiet() {
        // Whatever other tests left wanted is used up first.
        release_if(true, || ());
        let released = std::cell::Cell::new(0);
        let release = || released.set(released.get() + 1);
        assert!(!release_if(true, release), "nothing finished");
        cycle_finished();
        assert!(!release_if(false, release), "not quiet yet");
        assert!(release_if(true, release));
        assert!(!release_if(true, release), "once per burst");
        assert_eq!(released.get(), 1);
    }
}
