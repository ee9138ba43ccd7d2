//! The headless front end: follows a [`RunHandle`]'s events on the terminal (progress bars on a
//! TTY, plain log lines when piped) and turns SIGINT, SIGTERM and SIGHUP into
//! [`Control::Stop`], so an interrupted run saves its checkpoint before the process exits.
use crate::engine::RunHandle;
use crate::events::{Control, Event};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How a followed run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every stage finished.
    Finished,
    /// Stopped by a signal after saving its checkpoint.
    Stopped,
    /// Failed with this message.
    Failed(String),
}

impl Outcome {
    /// Process exit status: 0 finished, 130 stopped by a signal, 1 failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Finished => 0,
            Outcome::Stopped => 130,
            Outcome::Failed(_) => 1,
        }
    }
}

/// Follows `handle` to its end, printing to stderr; returns how it ended.
pub fn follow(handle: RunHandle) -> Outcome {
    let signalled = Arc::new(AtomicBool::new(false));
    let stop_tx = handle.controls.clone();
    let flag = signalled.clone();
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if flag.swap(true, Ordering::SeqCst) {
                    // A second signal: the user insists.
                    eprintln!("\nsecond signal {sig}: exiting without waiting for the checkpoint");
                    std::process::exit(130);
                }
                eprintln!(
                    "\nsignal {sig}: stopping after the current batch and saving a checkpoint…"
                );
                let _ = stop_tx.send(Control::Stop);
            }
        });
    }
    let tty = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut outcome = Outcome::Finished;
    let print = |bar: &Option<ProgressBar>, line: &str| match bar {
        Some(b) => b.println(line),
        None => eprintln!("{line}"),
    };
    for event in handle.events.iter() {
        match event {
            Event::StageStarted(s) => {
                print(
                    &bar,
                    &format!(
                        "=> {} of {} on {} → {}",
                        s.stage,
                        s.dataset,
                        s.device.name,
                        s.run_dir.display()
                    ),
                );
                if tty {
                    let b = ProgressBar::with_draw_target(
                        Some(s.batches_per_epoch as u64),
                        ProgressDrawTarget::stderr_with_hz(4),
                    );
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar = Some(b);
                }
            }
            Event::EpochStarted { stage, epoch, lr } => {
                if let Some(b) = &bar {
                    b.reset();
                    b.set_prefix(format!("{stage} epoch {}", epoch + 1));
                    b.set_message(format!("lr {:.4}", lr[0]));
                }
            }
            Event::Batch(s) => {
                if let Some(b) = &bar {
                    b.set_position(s.batch as u64 + 1);
                    b.set_message(format!(
                        "loss {:.3} acc {:.1}% {:.0} img/s",
                        s.loss, s.top1, s.images_per_sec
                    ));
                }
            }
            Event::Log(line) => print(&bar, &line),
            Event::StageFinished(f) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let how = if f.stopped { "stopped" } else { "finished" };
                eprintln!(
                    "=> {} {how}: best top-1 {:.3}% (ECE {:.3}%) in {}",
                    f.stage,
                    f.best_top1,
                    f.best_ece,
                    f.run_dir.display()
                );
                if f.stopped {
                    outcome = Outcome::Stopped;
                }
            }
            Event::Error(msg) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                outcome = Outcome::Failed(msg);
            }
            Event::Paused => print(&bar, "=> paused"),
            Event::Resumed => print(&bar, "=> resumed"),
            Event::Finished | Event::Checkpoint { .. } | Event::Epoch(_) => {}
        }
    }
    if let Err(p) = handle.join() {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        outcome = Outcome::Failed(format!("the trainer thread panicked: {msg}"));
    }
    outcome
}
