//! The headless front end: follows a [`RunHandle`]'s events on the terminal — the run's log
//! lines on stdout (so `> file` keeps them), progress on stderr (bars on a TTY) — and turns
//! SIGINT, SIGTERM, SIGHUP and SIGUSR1 into [`Control::Stop`], so an interrupted run saves its
//! checkpoint before the process exits. SIGUSR1 (Slurm's `--signal=B:USR1@SECONDS` before a time
//! limit or a preemption), and SIGTERM inside a Slurm job, end it as [`Outcome::Preempted`]:
//! "requeue me".
use crate::events::{Control, EvalProgress, Event};
use crate::wire::RunHandle;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The exit status of a preempted run that saved its checkpoint: "requeue me" (`EX_TEMPFAIL`
/// of `sysexits.h`, a temporary failure).
pub const EXIT_REQUEUE: i32 = 75;

/// How a followed run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every stage finished.
    Finished,
    /// Stopped by a signal after saving its checkpoint.
    Stopped,
    /// Stopped by a preemption signal after saving its checkpoint: to be requeued, and resumed
    /// from that checkpoint.
    Preempted,
    /// Failed with this message.
    Failed(String),
}

impl Outcome {
    /// Process exit status: 0 finished, 130 stopped by a signal, [`EXIT_REQUEUE`] preempted,
    /// 1 failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Finished => 0,
            Outcome::Stopped => 130,
            Outcome::Preempted => EXIT_REQUEUE,
            Outcome::Failed(_) => 1,
        }
    }
}

/// Follows `handle` to its end: the run's log lines ([`Event::log_lines`], the same lines as
/// its text log) on stdout, progress bars (on a TTY) or evaluation progress lines on stderr;
/// returns how it ended. A panic of the trainer thread is left to the engine, which reports it
/// as [`Event::Failed`].
pub fn follow(handle: RunHandle) -> Outcome {
    quiet_trainer_panics();
    let preempted = forward_signals(&handle);
    let mut view = Follower {
        tty: std::io::stderr().is_terminal(),
        bar: None,
        outcome: Outcome::Finished,
        last_eval_line: None,
    };
    for event in handle.events.iter() {
        view.on_event(event);
    }
    if let Err(p) = handle.join() {
        let msg = crate::engine::panic_text(p.as_ref());
        view.outcome = Outcome::Failed(format!("the trainer thread panicked: {msg}"));
    }
    match view.outcome {
        Outcome::Stopped if preempted.load(Ordering::SeqCst) => Outcome::Preempted,
        other => other,
    }
}

/// Whether `sig` asks for a requeue: SIGUSR1 always, SIGTERM inside a Slurm job (`SLURM_JOB_ID`
/// set: Slurm's preemption and time limit send it).
pub fn is_preemption(sig: i32, in_slurm_job: bool) -> bool {
    sig == SIGUSR1 || (sig == SIGTERM && in_slurm_job)
}

/// Leaves panics of the trainer thread to the engine (which sends their message as
/// [`Event::Failed`]) instead of printing libtorch's C++ stack on stderr.
fn quiet_trainer_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some(crate::engine::TRAINER_THREAD) {
            default(info);
        }
    }));
}

/// SIGINT, SIGTERM, SIGHUP and SIGUSR1 ask the trainer to stop after a checkpoint; a second one
/// exits. Returns the flag a preemption signal ([`is_preemption`]) sets.
fn forward_signals(handle: &RunHandle) -> Arc<AtomicBool> {
    let signalled = Arc::new(AtomicBool::new(false));
    let preempted = Arc::new(AtomicBool::new(false));
    let stop_tx = handle.controls.clone();
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])
    else {
        return preempted;
    };
    let in_slurm_job = std::env::var_os("SLURM_JOB_ID").is_some();
    let flag = preempted.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if signalled.swap(true, Ordering::SeqCst) {
                // A second signal: the user insists.
                eprintln!("\nsecond signal {sig}: exiting without waiting for the checkpoint");
                // `_exit`, not `exit`: the trainer thread is still inside libtorch, and
                // `exit` would run libtorch's static destructors under it (a segfault).
                extern "C" {
                    fn _exit(status: i32) -> !;
                }
                // SAFETY: ends the process at once; nothing after it runs.
                unsafe { _exit(130) }
            }
            if is_preemption(sig, in_slurm_job) {
                flag.store(true, Ordering::SeqCst);
            }
            eprintln!("\nsignal {sig}: stopping after the current batch and saving a checkpoint…");
            let _ = stop_tx.send(Control::Stop);
        }
    });
    preempted
}

/// The headless view of a run.
struct Follower {
    tty: bool,
    bar: Option<ProgressBar>,
    outcome: Outcome,
    last_eval_line: Option<Instant>,
}

impl Follower {
    fn on_event(&mut self, event: Event) {
        // Every log line on stdout, the failed-run line too (main says it again on stderr).
        for line in event.log_lines() {
            self.print(&line);
        }
        match event {
            Event::StageStarted(s) => {
                self.print(&format!(
                    "=> {} of {} on {} → {}",
                    s.stage,
                    s.dataset,
                    s.device.name,
                    s.run_dir.display()
                ));
                if self.tty {
                    self.bar = Some(progress_bar(s.batches_per_epoch as u64));
                }
            }
            Event::EpochStarted { stage, epoch, lr } => {
                if let Some(b) = &self.bar {
                    b.reset();
                    b.set_prefix(format!("{stage} epoch {epoch}"));
                    b.set_message(format!("lr {:.4}", lr[0]));
                }
            }
            Event::Batch(s) => {
                if let Some(b) = &self.bar {
                    b.set_length(s.batches as u64);
                    b.set_position(s.batch as u64 + 1);
                    b.set_message(format!(
                        "loss {:.3} acc {:.1}% {:.0} img/s",
                        s.loss, s.top1, s.images_per_sec
                    ));
                }
            }
            Event::EvalProgress(p) => self.on_eval_progress(&p),
            Event::StageFinished(f) => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                let how = if f.stopped { "stopped" } else { "finished" };
                let best = f.best.map_or("no evaluation yet".to_owned(), |b| {
                    format!("best top-1 {:.3}% (ECE {:.3}%)", b.top1, b.ece)
                });
                self.print(&format!(
                    "=> {} {how}: {best} in {}",
                    f.stage,
                    f.run_dir.display()
                ));
                if f.stopped {
                    self.outcome = Outcome::Stopped;
                }
            }
            Event::Failed(f) => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                let resume = f
                    .resume_from
                    .map(|p| format!(" (resume with: resume {})", p.display()))
                    .unwrap_or_default();
                self.outcome = Outcome::Failed(format!("{}{resume}", f.message));
            }
            Event::Paused => self.print("=> paused"),
            Event::Resumed => self.print("=> resumed"),
            Event::Finished
            | Event::Checkpoint { .. }
            | Event::Epoch(_)
            | Event::Log(_)
            | Event::Warning(_) => {}
        }
    }

    /// On a TTY the bar shows the evaluation; otherwise a line on stderr every 10 s and at the
    /// end.
    fn on_eval_progress(&mut self, p: &EvalProgress) {
        let text = format!(
            "evaluating: {}/{} test images, {:.0} images/s, ETA {:.0}s",
            p.images_done,
            p.images_total,
            p.images_per_sec,
            p.eta_seconds()
        );
        if let Some(b) = &self.bar {
            b.set_prefix(format!("{} epoch {} eval", p.stage, p.epoch));
            b.set_length(p.images_total as u64);
            b.set_position(p.images_done as u64);
            b.set_message(format!("{:.0} img/s", p.images_per_sec));
            return;
        }
        let due = self
            .last_eval_line
            .is_none_or(|t| t.elapsed().as_secs_f64() >= 10.0);
        if due || p.images_done == p.images_total {
            self.last_eval_line = Some(Instant::now());
            eprintln!("=> epoch {} {text}", p.epoch);
        }
    }

    /// A log line on stdout, above the progress bar when there is one.
    fn print(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
    b.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SIGUSR1 always asks for a requeue, SIGTERM only inside a Slurm job; a preempted run
    /// exits with 75, a stopped one with 130.
    #[test]
    fn preemption_signals_and_exit_statuses() {
        assert!(is_preemption(SIGUSR1, false));
        assert!(is_preemption(SIGTERM, true));
        assert!(!is_preemption(SIGTERM, false));
        assert!(!is_preemption(SIGINT, true));
        assert_eq!(Outcome::Preempted.exit_code(), 75);
        assert_eq!(Outcome::Stopped.exit_code(), 130);
    }
}
