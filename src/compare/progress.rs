//! The command line's view of a comparison's backbone passes ([`super::cache::PassProgress`]):
//! on a terminal an indicatif bar on stderr (images done, rate, ETA), as evaluation has;
//! otherwise (a log file, a pipe) a line on stderr after the first batch, every 5 s, and at
//! the end of each pass.
use super::cache::{PassProgress, ProgressFn};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds between two plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// The progress callback for [`super::cache::Watch::with_progress`] that draws on stderr.
pub fn stderr_progress() -> ProgressFn {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} images · {per_sec} · ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Arc::new(move |p: &PassProgress| {
            let prefix = format!("backbone on the {}", p.source);
            if bar.prefix() != prefix || bar.length() != Some(p.total as u64) {
                bar.reset();
                bar.set_prefix(prefix);
                bar.set_length(p.total as u64);
            }
            bar.set_position(p.done as u64);
            if p.done >= p.total {
                bar.finish_and_clear();
            }
        })
    } else {
        let last: Mutex<Option<Instant>> = Mutex::new(None);
        Arc::new(move |p: &PassProgress| {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= LINE_EVERY);
            if due || p.done >= p.total {
                eprintln!("=> {}", p.line());
                *last = if p.done >= p.total {
                    None
                } else {
                    Some(Instant::now())
                };
            }
        })
    }
}
