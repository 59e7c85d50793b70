//! Log output: human-readable (colours only on a terminal) or JSON lines,
//! on standard error. `DEPD_LOG` (an `EnvFilter` directive) overrides the
//! configured level for debugging.

use crate::settings::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_env("DEPD_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // When standard error breaks (journald restarted, the reader of a
        // pipe went away), tracing-subscriber would report the failed write
        // with `eprintln!`, which panics on the same broken stream, in
        // whatever thread logged: the main thread (depd exits 101) or the
        // task that handles signals (depd no longer stops on SIGTERM). A
        // lost log line is the lesser harm.
        .log_internal_errors(false);
    // try_init: a second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
