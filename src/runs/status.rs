//! How a run in `saved/` stands, from its folder: live (a process holds its `run.lock`, see
//! [`crate::live`]), finished (all epochs in `metrics.jsonl`), failed (its log ends with an
//! error), stopped (its log ends with the `=> stopped at …` line, or its current checkpoint is
//! short of the last epoch), dead (its process died without a last event), or written by a
//! process of an older version a moment ago.
use crate::config::Config;
use crate::run_dir::{RunSummary, CURRENT};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The start of the line each stage ends its log with, after its stop or failure line.
const PEAK_MEMORY_LINE: &str = "=> peak resident memory of the process";

/// Bytes read from the end of a log for its last line.
const LOG_TAIL: u64 = 8192;
/// A run whose files changed this recently, and more recently than its last epoch took, is taken
/// as being written by another process.
const WRITING_WINDOW: Duration = Duration::from_secs(300);

/// What a run folder's files say beyond its metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderFacts {
    /// The log's last non-empty line, without its time stamp.
    pub last_log_line: Option<String>,
    /// `<model_dir>/current.safetensors`, when present.
    pub current_checkpoint: Option<PathBuf>,
    /// When `metrics.jsonl` or the log last changed.
    pub modified: Option<SystemTime>,
    /// When the run started: its `config.yaml` was written (the run writes it once, at start).
    pub started: Option<SystemTime>,
    /// `Some(true)` while the process writing it lives (its `run.lock` is held), `Some(false)`
    /// when it died without a last event (kill -9, a restart; see
    /// [`crate::live::died_without_end`]), `None` otherwise (it ended, or no process of this
    /// version wrote it).
    pub alive: Option<bool>,
    /// `on node X (Slurm job J)` when a process on another machine writes it
    /// ([`crate::live::remote_note`]): its liveness is then its event file's, not its lock's.
    pub node: Option<String>,
}

/// The state of a run in `saved/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// A process trains it (this one, or another that holds its lock).
    Live,
    /// Another process wrote to it a moment ago.
    Writing,
    /// Its process died (kill -9, a restart) without ending it.
    Died,
    /// Every epoch is in `metrics.jsonl`.
    Finished,
    /// Stopped by a stop (or ended short of its last epoch with a checkpoint).
    Stopped,
    /// Its log ends with an error.
    Failed,
    /// None of the above: nothing says how it ended.
    Unfinished,
}

impl RunStatus {
    /// A word for the runs list.
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Live => "● live",
            RunStatus::Writing => "● writing",
            RunStatus::Died => "✗ killed",
            RunStatus::Finished => "✓ done",
            RunStatus::Stopped => "■ stopped",
            RunStatus::Failed => "✗ failed",
            RunStatus::Unfinished => "? unfinished",
        }
    }

    /// Whether `R` may offer to resume it (given a current checkpoint).
    pub fn resumable(self) -> bool {
        matches!(
            self,
            RunStatus::Stopped | RunStatus::Failed | RunStatus::Died
        )
    }
}

/// The last line of the newest `*.txt` in `log_dir`, read from its end.
fn last_log_line(log_dir: &Path) -> Option<(String, SystemTime)> {
    let newest = fs::read_dir(log_dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "txt"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()?;
    let mut f = fs::File::open(&newest.1).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL))).ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    // The stage's peak-memory line comes after its stop or failure line: it says nothing of
    // how the run ended.
    let line = text
        .lines()
        .rev()
        .map(strip_stamp)
        .find(|l| !l.trim().is_empty() && !l.starts_with(PEAK_MEMORY_LINE))?;
    Some((line.to_owned(), newest.0))
}

/// `2026-12-06 04:31:24,819 * NLL …` → `* NLL …` (the stamp of Python's logging).
fn strip_stamp(line: &str) -> &str {
    let stamped = line.len() > 24
        && line.as_bytes()[4] == b'-'
        && line.as_bytes()[19] == b','
        && line.as_bytes()[23] == b' ';
    if stamped {
        &line[24..]
    } else {
        line
    }
}

/// Reads the facts of the run folder `dir` (sub-folders as `config` names them).
pub fn read_facts(dir: &Path, config: Option<&Config>) -> FolderFacts {
    let (log_dir, model_dir) = config.map_or(("logs", "ckps"), |c| (&c.log_dir, &c.model_dir));
    let current = dir.join(model_dir).join(CURRENT);
    let log = last_log_line(&dir.join(log_dir));
    let metrics = fs::metadata(dir.join("metrics.jsonl"))
        .and_then(|m| m.modified())
        .ok();
    FolderFacts {
        modified: metrics.max(log.as_ref().map(|l| l.1)),
        started: fs::metadata(dir.join("config.yaml"))
            .and_then(|m| m.modified())
            .ok(),
        last_log_line: log.map(|l| l.0),
        current_checkpoint: current.is_file().then_some(current),
        alive: match crate::live::is_alive(dir) {
            Some(false) if !crate::live::died_without_end(dir) => None,
            other => other,
        },
        node: crate::live::remote_note(dir),
    }
}

/// Whether a log line is one the trainer writes as it goes (not an error).
fn is_progress_line(line: &str) -> bool {
    ["=> ", "Epoch: [", "* ", "Best Prec@1"]
        .iter()
        .any(|p| line.starts_with(p))
}

/// The state of `r` given its folder's facts, whether this process trains it, and the time.
pub fn status(r: &RunSummary, facts: &FolderFacts, live: bool, now: SystemTime) -> RunStatus {
    let total = r
        .epochs
        .last()
        .map(|e| e.num_epochs)
        .or(r.config.as_ref().map(|c| c.num_epochs));
    let done = r.epochs.last().map_or(0, |e| e.epoch + 1);
    let line = facts.last_log_line.as_deref().unwrap_or("");
    let epoch_time = r
        .epochs
        .last()
        .map_or(0.0, |e| 1.5 * (e.train_seconds + e.eval_seconds));
    let window = WRITING_WINDOW.max(Duration::from_secs_f64(epoch_time));
    let recent = facts
        .modified
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age < window);
    // The trainer ends a failed run's log with `=> failed (<kind>): …`; runs of older versions
    // ended it with the bare message.
    let failed = line.starts_with(crate::events::FAILED_LOG_PREFIX)
        || (!line.is_empty() && !is_progress_line(line));
    if live || facts.alive == Some(true) {
        RunStatus::Live
    } else if failed {
        RunStatus::Failed
    } else if total.is_some_and(|t| done >= t) {
        RunStatus::Finished
    } else if line.starts_with("=> stopped ") {
        RunStatus::Stopped
    } else if facts.alive == Some(false) {
        RunStatus::Died
    } else if recent {
        RunStatus::Writing
    } else if facts.current_checkpoint.is_some() {
        RunStatus::Stopped
    } else {
        RunStatus::Unfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Failure, FailureKind};

    fn summary(num_epochs: usize) -> RunSummary {
        RunSummary {
            dir: "saved/x".into(),
            name: "x".into(),
            stage: None,
            epochs: Vec::new(),
            config: Some(Config {
                num_epochs,
                ..Config::default()
            }),
            best_checkpoint: None,
        }
    }

    fn facts(line: &str) -> FolderFacts {
        FolderFacts {
            modified: None,
            started: None,
            last_log_line: Some(line.to_owned()),
            current_checkpoint: Some("saved/x/ckps/current.safetensors".into()),
            alive: None,
            node: None,
        }
    }

    #[test]
    fn the_trainers_last_lines_give_the_state() {
        let failure = Event::Failed(Failure::new(FailureKind::Io, "cannot write checkpoint x"));
        let failed_line = failure.log_lines().remove(0);
        let now = SystemTime::now();
        let r = summary(3);
        assert_eq!(
            status(&r, &facts(&failed_line), false, now),
            RunStatus::Failed
        );
        for stopped in [
            "=> stopped at epoch 0 batch 31; resume with: resume x",
            "=> stopped before the evaluation of epoch 0; resume with: resume x",
        ] {
            assert_eq!(status(&r, &facts(stopped), false, now), RunStatus::Stopped);
        }
        assert_eq!(status(&r, &facts(&failed_line), true, now), RunStatus::Live);
    }

    /// A stopped stage's log ends with its peak memory after the stop line: the stop counts.
    #[test]
    fn the_peak_memory_line_after_a_stop_is_passed_over() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("logs")).unwrap();
        fs::write(
            d.path().join("logs/run.txt"),
            "2026-12-06 09:30:01,100 Epoch: [0][ 40/118]\n\
             2026-12-06 09:30:02,200 => stopped at epoch 0 batch 55; resume with: resume x\n\
             2026-12-06 09:30:02,300 => peak resident memory of the process: 499.3 MB\n\n",
        )
        .unwrap();
        let f = read_facts(d.path(), None);
        assert_eq!(
            f.last_log_line.as_deref(),
            Some("=> stopped at epoch 0 batch 55; resume with: resume x")
        );
        let r = summary(3);
        let mut facts = facts(f.last_log_line.as_deref().unwrap());
        facts.modified = Some(SystemTime::now());
        assert_eq!(
            status(&r, &facts, false, SystemTime::now()),
            RunStatus::Stopped
        );
    }

    #[test]
    fn stamps_are_stripped() {
        assert_eq!(
            strip_stamp("2026-12-06 04:31:24,819 * ECE 1%."),
            "* ECE 1%."
        );
        assert_eq!(strip_stamp("no stamp"), "no stamp");
    }
}
