//! Retries: whether a queued run that ended is started again, from its checkpoint (issue 22,
//! "Retries"). One pure function, [`decide`], for the local scheduler and the Slurm backend
//! alike; [`Attempt::read`] gathers what it needs from an attempt's run folder.
//!
//! The rule:
//! - a run that finished, or was stopped by a person (exit 130), is not started again;
//! - a preempted run (exit [`crate::headless::EXIT_REQUEUE`], it saved its checkpoint and
//!   asked to be started again) is restarted, from that checkpoint; such restarts do not count
//!   against `max_restarts` (a preemptible partition may preempt a run many times);
//! - a run that failed or died (any other exit status, a signal such as `kill -9`, or a run
//!   that ended while no scheduler watched it without saying it finished) is restarted from
//!   its checkpoint when it made progress — a checkpoint in its run folder newer than the
//!   attempt's start — and it has been restarted for failures fewer than `max_restarts`
//!   times; one that made no progress would fail again and is not retried; nor is a failure
//!   that repeats whatever the attempt (a configuration, data or checkpoint error, or a
//!   non-finite loss: the run says which in its event file).
//!
//! A Slurm job that ended is an attempt too ([`super::slurm::SlurmStatus::attempt`]):
//! `COMPLETED` a finish, `FAILED` with a signal or a status as a local run's, `CANCELLED`
//! (scancel) not retried, `PREEMPTED` without a requeue a preemption, and Slurm's other ends
//! (`TIMEOUT`, `NODE_FAIL`, `OUT_OF_MEMORY`, …) failures ([`Ending::Slurm`]).
use crate::events::{Event, FailureKind};
use crate::headless::EXIT_REQUEUE;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How an attempt's process ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Exit status (0 finished, 130 stopped, [`EXIT_REQUEUE`] preempted, else failed), with
    /// the kind of failure the run reported in its event file, if any.
    Exit(i32, Option<FailureKind>),
    /// Killed by this signal (9: `kill -9`, the out-of-memory killer).
    Signal(i32),
    /// Ended while no scheduler watched it (no exit status): `finished` when its event file
    /// ends with the run's end, and the kind of failure it reported, if any.
    Unwatched {
        /// The event file's last stage ended with [`Event::Finished`].
        finished: bool,
        /// The failure it reported, if any.
        failure: Option<FailureKind>,
    },
    /// A Slurm job that ended in a state no exit status tells: `CANCELLED` (scancel: not
    /// retried), `PREEMPTED` (without a requeue: restarted as a preemption), or a failure of
    /// Slurm's (`TIMEOUT`, `NODE_FAIL`, `OUT_OF_MEMORY`, `BOOT_FAIL`, `FAILED` with exit code
    /// `0:0`: retried as a failure is).
    Slurm {
        /// Slurm's state.
        state: String,
        /// Slurm's reason, when it gives one.
        reason: Option<String>,
    },
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Exit(0, _) => f.write_str("finished"),
            Ending::Exit(130, _) => f.write_str("stopped (exit 130)"),
            Ending::Exit(c, _) if *c == EXIT_REQUEUE => {
                write!(
                    f,
                    "preempted (exit {EXIT_REQUEUE}, asked to be started again)"
                )
            }
            Ending::Exit(c, Some(k)) => write!(f, "failed: {k} (exit {c})"),
            Ending::Exit(c, None) => write!(f, "failed (exit {c})"),
            Ending::Signal(9) => f.write_str("killed (signal 9, SIGKILL)"),
            Ending::Signal(s) => write!(f, "killed by signal {s}"),
            Ending::Unwatched { finished: true, .. } => f.write_str("finished unwatched"),
            Ending::Unwatched {
                failure: Some(k), ..
            } => write!(f, "failed unwatched: {k}"),
            Ending::Unwatched { .. } => {
                f.write_str("died while no scheduler watched it (no end in its event file)")
            }
            Ending::Slurm { state, reason } => match reason {
                Some(r) => write!(f, "ended in Slurm as {state} ({r})"),
                None => write!(f, "ended in Slurm as {state}"),
            },
        }
    }
}

/// What an attempt left to resume from.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// No run folder or no checkpoint in it.
    None,
    /// A checkpoint, but none written since the attempt started.
    Stale(PathBuf),
    /// A checkpoint written during the attempt: a restart resumes from it.
    Made(PathBuf),
}

/// One ended attempt of a queued run, as [`decide`] needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// How its process ended.
    pub ending: Ending,
    /// Its checkpoint.
    pub progress: Progress,
}

/// What becomes of a run after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Started again from `resume`; `counted` when the restart counts against `max_restarts`
    /// (a failure's), not when it follows a preemption.
    Restart {
        /// The checkpoint the next attempt resumes from.
        resume: PathBuf,
        /// Whether it counts against `max_restarts`.
        counted: bool,
    },
    /// Ends in this queue state ([`super::state`]).
    Final(&'static str),
}

/// Failures that repeat whatever the attempt: not retried.
fn repeats(kind: FailureKind) -> bool {
    matches!(
        kind,
        FailureKind::Config | FailureKind::Data | FailureKind::Checkpoint | FailureKind::NonFinite
    )
}

/// Decides what becomes of a run after `attempt`, given the restarts for failures it had
/// (`failure_restarts`) and its `max_restarts`; returns the decision and why, in words (what
/// `queue ls` shows for the attempt). Pure: the module's rule.
pub fn decide(
    attempt: &Attempt,
    failure_restarts: usize,
    max_restarts: usize,
) -> (Decision, String) {
    use super::state;
    let ending = &attempt.ending;
    let failure = match ending {
        Ending::Exit(0, _) => return (Decision::Final(state::DONE), ending.to_string()),
        Ending::Exit(130, _) => return (Decision::Final(state::STOPPED), ending.to_string()),
        Ending::Unwatched { finished: true, .. } => {
            return (Decision::Final(state::ENDED), ending.to_string())
        }
        Ending::Slurm { state: s, .. } if s == "CANCELLED" => {
            return (
                Decision::Final(state::FAILED),
                format!("{ending}: cancelled (scancel), not retried"),
            )
        }
        Ending::Exit(c, _) if *c == EXIT_REQUEUE => return preempted(attempt),
        Ending::Slurm { state: s, .. } if s == "PREEMPTED" => return preempted(attempt),
        Ending::Exit(_, k) => *k,
        Ending::Unwatched { failure, .. } => *failure,
        Ending::Signal(_) | Ending::Slurm { .. } => None,
    };
    // A run that ended unwatched stays `ended` (its folder says how), as before retries.
    let last = match ending {
        Ending::Unwatched { .. } => state::ENDED,
        _ => state::FAILED,
    };
    let give_up = |why: String| (Decision::Final(last), format!("{ending}: {why}"));
    if let Some(k) = failure.filter(|k| repeats(*k)) {
        return give_up(format!("not retried (a {k} happens again on a restart)"));
    }
    match &attempt.progress {
        Progress::None => give_up("before its first checkpoint: not retried (no progress to resume from, it would fail again)".into()),
        Progress::Stale(_) => give_up("no checkpoint since it started: not retried (no progress, it would fail again)".into()),
        Progress::Made(_) if failure_restarts >= max_restarts => give_up(format!(
            "not retried: max_restarts {max_restarts} reached"
        )),
        Progress::Made(p) => (
            Decision::Restart {
                resume: p.clone(),
                counted: true,
            },
            format!(
                "{ending}: restart {} of {max_restarts}, from {}",
                failure_restarts + 1,
                p.display()
            ),
        ),
    }
}

/// A preempted attempt: restarted from its checkpoint without counting, or failed without one.
fn preempted(attempt: &Attempt) -> (Decision, String) {
    use super::state;
    let ending = &attempt.ending;
    match &attempt.progress {
        Progress::Made(p) | Progress::Stale(p) => (
            Decision::Restart {
                resume: p.clone(),
                counted: false,
            },
            format!("{ending}: restarted from {}", p.display()),
        ),
        Progress::None => (
            Decision::Final(state::FAILED),
            format!("{ending}, but left no checkpoint to resume from: not restarted"),
        ),
    }
}

impl Attempt {
    /// Reads an attempt's ending and progress: the checkpoint `current.safetensors` of the
    /// stage folder its job folder `run_dir` last started (a pipeline's stage 2 has its own
    /// folder), in the configuration's `model_dir`, compared with `started`; the kind of failure
    /// from the event file. `status` is the exit status, `signal` the killing signal, both
    /// `None` for a run that ended unwatched.
    pub fn read(
        run_dir: Option<&Path>,
        status: Option<i32>,
        signal: Option<i32>,
        started: SystemTime,
    ) -> Attempt {
        let events = run_dir.map(read_events).unwrap_or_default();
        let failure = events.iter().rev().find_map(|e| match e {
            Event::Failed(f) => Some(f.kind),
            _ => None,
        });
        let ending = match (status, signal) {
            (Some(c), _) => Ending::Exit(c, failure),
            (None, Some(s)) => Ending::Signal(s),
            (None, None) => Ending::Unwatched {
                finished: matches!(events.last(), Some(Event::Finished)),
                failure,
            },
        };
        let stage_dir = events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::StageStarted(s) => Some(s.run_dir.clone()),
                _ => None,
            })
            .or_else(|| run_dir.map(Path::to_path_buf));
        Attempt {
            ending,
            progress: stage_dir.map_or(Progress::None, |d| progress(&d, started)),
        }
    }
}

impl Attempt {
    /// The attempt with the kind of failure its process logged in `log` (its queue log,
    /// `logs/<id>.log`) when its event file told none: a run that fails before its run folder
    /// exists (a data or configuration error at start) says how only there, in its
    /// `=> failed (<kind>): <message>` line. Unchanged otherwise.
    pub fn with_logged_failure(self, log: &Path) -> Attempt {
        match self.ending {
            Ending::Exit(c, None) if c != 0 => Attempt {
                ending: Ending::Exit(c, logged_failure(log).and_then(|(k, _)| k)),
                ..self
            },
            _ => self,
        }
    }
}

/// The last `=> failed (<kind>): <message>` line of a run's log: the kind (when its words are
/// one of [`FailureKind`]'s) and the line's text after `=> `; `None` without such a line.
pub fn logged_failure(log: &Path) -> Option<(Option<FailureKind>, String)> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| l.starts_with("=> failed ("))?;
    let words = line.strip_prefix("=> failed (")?.split_once("):")?.0;
    let kind = FailureKind::ALL
        .into_iter()
        .find(|k| k.to_string() == words);
    Some((kind, line.trim_start_matches("=> ").to_owned()))
}

/// The event file of a job folder (empty when there is none or it cannot be read).
fn read_events(dir: &Path) -> Vec<Event> {
    std::fs::read_to_string(dir.join(crate::live::EVENTS))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The checkpoint of the run folder `dir` (its configuration's `model_dir`, `ckps` by
/// default), and whether it was written after `started`.
fn progress(dir: &Path, started: SystemTime) -> Progress {
    let model_dir = crate::config::Config::from_file(&dir.join("config.yaml"))
        .map_or_else(|_| "ckps".to_owned(), |c| c.config.model_dir);
    let current = dir.join(model_dir).join("current.safetensors");
    match std::fs::metadata(&current).and_then(|m| m.modified()) {
        Ok(t) if t > started => Progress::Made(current),
        Ok(_) => Progress::Stale(current),
        Err(_) => Progress::None,
    }
}

/// The `max_restarts` of the run whose job folder is `run_dir` (its `config.yaml`); the key's
/// default without one.
pub fn max_restarts(run_dir: Option<&Path>) -> usize {
    run_dir
        .and_then(|d| crate::config::Config::from_file(&d.join("config.yaml")).ok())
        .map_or_else(
            || crate::config::Config::default().max_restarts,
            |c| c.config.max_restarts,
        )
}

/// The command line of a restarted attempt: the queued `args` resuming from `resume`, the
/// checkpoint of a stage folder of the job folder `job_dir`. A `train` run gets `resume CK`;
/// a pipeline in its stage 1 (the checkpoint in the job folder) gets `stage1.resume CK`; a
/// pipeline in its stage 2 (a folder of its own) continues as `train --cfg` that folder's
/// `config.yaml` `resume CK` (stage 1 is done).
pub fn resumed_args(args: &[String], job_dir: Option<&Path>, resume: &Path) -> Vec<String> {
    let ck = resume.display().to_string();
    let stage_dir = resume.parent().and_then(Path::parent);
    match args.first().map(String::as_str) {
        Some("pipeline") if stage_dir.is_some() && stage_dir != job_dir => {
            let cfg = stage_dir.unwrap_or(Path::new(".")).join("config.yaml");
            vec![
                "train".into(),
                "--cfg".into(),
                cfg.display().to_string(),
                "resume".into(),
                ck,
            ]
        }
        Some("pipeline") => [args, &["stage1.resume".into(), ck]].concat(),
        _ => [args, &["resume".into(), ck]].concat(),
    }
}

/// The queue's record of restarts: a separate migration of the `jobs` table (columns added
/// when missing, so that a queue made by an earlier version keeps its runs): `restarts` (every
/// restart), `failure_restarts` (those that count against `max_restarts`), `ends` (why each
/// attempt ended, a JSON list of sentences), `attempt_started` (Unix seconds of the current
/// attempt's start), `resume` (the checkpoint the next attempt resumes from).
pub(super) fn migrate(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    let have: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('jobs')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (col, ty) in [
        ("restarts", "INTEGER NOT NULL DEFAULT 0"),
        ("failure_restarts", "INTEGER NOT NULL DEFAULT 0"),
        ("ends", "TEXT NOT NULL DEFAULT '[]'"),
        ("attempt_started", "REAL"),
        ("resume", "TEXT"),
    ] {
        if !have.iter().any(|h| h == col) {
            db.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {col} {ty}"))?;
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub(super) fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl super::Queue {
    /// When run `id`'s current attempt started (the epoch when unknown: any checkpoint is
    /// then newer).
    pub(super) fn attempt_start(&self, id: i64) -> anyhow::Result<SystemTime> {
        let s: Option<f64> = self.db.query_row(
            "SELECT attempt_started FROM jobs WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(s.unwrap_or(0.0).max(0.0)))
    }

    /// Applies [`decide`] to run `id`'s ended attempt: records why it ended, and either queues
    /// it again at its place to resume, or ends it in the decided state. Returns the decision
    /// and why.
    pub(super) fn after_attempt(
        &self,
        id: i64,
        attempt: &Attempt,
        run_dir: Option<&Path>,
    ) -> anyhow::Result<(Decision, String)> {
        let failure_restarts: i64 = self.db.query_row(
            "SELECT failure_restarts FROM jobs WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        let (decision, why) = decide(attempt, failure_restarts as usize, max_restarts(run_dir));
        let ends: String = self
            .db
            .query_row("SELECT ends FROM jobs WHERE id = ?1", [id], |r| r.get(0))?;
        let mut ends: Vec<String> = serde_json::from_str(&ends).unwrap_or_default();
        ends.push(why.clone());
        let ends = serde_json::to_string(&ends)?;
        let code = match attempt.ending {
            Ending::Exit(c, _) => Some(c),
            _ => None,
        };
        let dir = run_dir.map(|p| p.display().to_string());
        match &decision {
            Decision::Restart { resume, counted } => self.db.execute(
                "UPDATE jobs SET state = ?2, pid = NULL, device = NULL, exit_code = ?3,
                     run_dir = COALESCE(?4, run_dir), ends = ?5, resume = ?6,
                     restarts = restarts + 1, failure_restarts = failure_restarts + ?7
                 WHERE id = ?1",
                rusqlite::params![
                    id,
                    super::state::QUEUED,
                    code,
                    dir,
                    ends,
                    resume.display().to_string(),
                    *counted as i64
                ],
            )?,
            Decision::Final(state) => self.db.execute(
                "UPDATE jobs SET state = ?2, pid = NULL, exit_code = ?3,
                     run_dir = COALESCE(?4, run_dir), ends = ?5, ended = datetime('now')
                 WHERE id = ?1",
                rusqlite::params![id, state, code, dir, ends],
            )?,
        };
        Ok((decision, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::state;

    fn at(ending: Ending, progress: Progress) -> Attempt {
        Attempt { ending, progress }
    }

    fn ck() -> PathBuf {
        PathBuf::from("/s/r/ckps/current.safetensors")
    }

    /// A run that failed before its run folder existed says how in its log only: the kind is
    /// read back from the `=> failed (<kind>): …` line (the last one), and the attempt is said
    /// with it; a log without one, or an event file's kind, leaves the attempt as it was.
    #[test]
    fn a_failure_said_only_in_the_log_is_read_from_it() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("1.log");
        std::fs::write(
            &log,
            "=> failed (configuration error): earlier\nloading\n\
             => failed (data error): Fashion-MNIST file train-images-idx3-ubyte not found\n\
             error: Fashion-MNIST file train-images-idx3-ubyte not found\n",
        )
        .unwrap();
        let (kind, text) = logged_failure(&log).unwrap();
        assert_eq!(kind, Some(FailureKind::Data));
        assert_eq!(
            text,
            "failed (data error): Fashion-MNIST file train-images-idx3-ubyte not found"
        );
        let a = at(Ending::Exit(1, None), Progress::None).with_logged_failure(&log);
        assert_eq!(a.ending, Ending::Exit(1, Some(FailureKind::Data)));
        let (d1, why) = decide(&a, 0, 2);
        assert_eq!(d1, Decision::Final(state::FAILED));
        assert!(why.starts_with("failed: data error (exit 1)"), "{why}");
        let told = at(Ending::Exit(1, Some(FailureKind::Io)), Progress::None);
        assert_eq!(told.clone().with_logged_failure(&log), told);
        let none = at(Ending::Exit(1, None), Progress::None);
        let empty = d.path().join("2.log");
        std::fs::write(&empty, "error: something\n").unwrap();
        assert_eq!(none.clone().with_logged_failure(&empty), none);
        assert!(logged_failure(&empty).is_none());
    }

    #[test]
    fn finished_and_stopped_runs_are_not_started_again() {
        let made = Progress::Made(ck());
        let d = decide(&at(Ending::Exit(0, None), made.clone()), 0, 2);
        assert_eq!(d, (Decision::Final(state::DONE), "finished".into()));
        let d = decide(&at(Ending::Exit(130, None), made.clone()), 0, 2);
        assert_eq!(d.0, Decision::Final(state::STOPPED));
        let unwatched = Ending::Unwatched {
            finished: true,
            failure: None,
        };
        assert_eq!(
            decide(&at(unwatched, made), 0, 2).0,
            Decision::Final(state::ENDED)
        );
    }

    #[test]
    fn a_kill_after_a_checkpoint_restarts_until_max_restarts() {
        let a = at(Ending::Signal(9), Progress::Made(ck()));
        let restart = Decision::Restart {
            resume: ck(),
            counted: true,
        };
        let (d, why) = decide(&a, 0, 2);
        assert_eq!(d, restart);
        assert!(
            why.starts_with("killed (signal 9, SIGKILL): restart 1 of 2, from /s/r/ckps/"),
            "{why}"
        );
        assert_eq!(decide(&a, 1, 2).0, restart);
        let (d, why) = decide(&a, 2, 2);
        assert_eq!(d, Decision::Final(state::FAILED));
        assert!(
            why.ends_with("not retried: max_restarts 2 reached"),
            "{why}"
        );
        // max_restarts 0: never.
        assert_eq!(decide(&a, 0, 0).0, Decision::Final(state::FAILED));
        // An exit 1 that is not a repeating kind, or a death unwatched, is retried the same way.
        let io = at(Ending::Exit(1, Some(FailureKind::Io)), Progress::Made(ck()));
        assert_eq!(decide(&io, 0, 2).0, restart);
        let died = Ending::Unwatched {
            finished: false,
            failure: None,
        };
        assert_eq!(decide(&at(died, Progress::Made(ck())), 0, 2).0, restart);
    }

    #[test]
    fn no_progress_or_a_repeating_failure_is_not_retried_and_says_why() {
        let (d, why) = decide(&at(Ending::Signal(9), Progress::None), 0, 2);
        assert_eq!(d, Decision::Final(state::FAILED));
        assert!(
            why.contains("before its first checkpoint: not retried"),
            "{why}"
        );
        let (d, why) = decide(&at(Ending::Exit(1, None), Progress::Stale(ck())), 0, 2);
        assert_eq!(d, Decision::Final(state::FAILED));
        assert!(why.contains("no checkpoint since it started"), "{why}");
        for k in [
            FailureKind::Config,
            FailureKind::Data,
            FailureKind::Checkpoint,
            FailureKind::NonFinite,
        ] {
            let (d, why) = decide(&at(Ending::Exit(1, Some(k)), Progress::Made(ck())), 0, 2);
            assert_eq!(d, Decision::Final(state::FAILED), "{k}");
            assert!(why.contains(&format!("a {k} happens again")), "{why}");
        }
    }

    #[test]
    fn a_preemption_restarts_without_counting() {
        for p in [Progress::Made(ck()), Progress::Stale(ck())] {
            let (d, why) = decide(&at(Ending::Exit(EXIT_REQUEUE, None), p), 5, 2);
            assert_eq!(
                d,
                Decision::Restart {
                    resume: ck(),
                    counted: false
                }
            );
            assert!(why.starts_with("preempted (exit 75"), "{why}");
        }
        let (d, why) = decide(&at(Ending::Exit(EXIT_REQUEUE, None), Progress::None), 0, 2);
        assert_eq!(d, Decision::Final(state::FAILED));
        assert!(why.contains("no checkpoint"), "{why}");
    }

    #[test]
    fn a_restart_resumes_the_stage_it_was_in() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let job = Path::new("/s/p_1");
        let ck1 = Path::new("/s/p_1/ckps/current.safetensors");
        let ck2 = Path::new("/s/p2_1/ckps/current.safetensors");
        assert_eq!(
            resumed_args(
                &s(&["train", "--cfg", "a.yaml", "lr", "0.1"]),
                Some(job),
                ck1
            ),
            s(&[
                "train",
                "--cfg",
                "a.yaml",
                "lr",
                "0.1",
                "resume",
                "/s/p_1/ckps/current.safetensors"
            ])
        );
        let pipeline = s(&["pipeline", "--stage1", "a.yaml", "--stage2", "b.yaml"]);
        assert_eq!(
            resumed_args(&pipeline, Some(job), ck1)[5..],
            s(&["stage1.resume", "/s/p_1/ckps/current.safetensors"])
        );
        assert_eq!(
            resumed_args(&pipeline, Some(job), ck2),
            s(&[
                "train",
                "--cfg",
                "/s/p2_1/config.yaml",
                "resume",
                "/s/p2_1/ckps/current.safetensors"
            ])
        );
    }

    #[test]
    fn the_migration_adds_its_columns_once_and_records_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let q = crate::queue::Queue::open(dir.path()).unwrap();
        // Twice (a second open of the same queue): nothing added again.
        migrate(&q.db).unwrap();
        let p = Path::new("/p");
        let id = q.add("a", &["train".to_owned()], p, p).unwrap();
        let killed = at(Ending::Signal(9), Progress::Made(ck()));
        let (d, _) = q.after_attempt(id, &killed, None).unwrap();
        assert!(matches!(d, Decision::Restart { counted: true, .. }));
        let preempted = at(Ending::Exit(EXIT_REQUEUE, None), Progress::Made(ck()));
        q.after_attempt(id, &preempted, None).unwrap();
        q.after_attempt(id, &killed, None).unwrap();
        // The third failure-free-count check: two counted restarts, max 2 → failed.
        let (d, why) = q.after_attempt(id, &killed, None).unwrap();
        assert_eq!(d, Decision::Final(state::FAILED), "{why}");
        let j = &q.list().unwrap()[0];
        assert_eq!(
            (j.state.as_str(), j.restarts, j.ends.len()),
            (state::FAILED, 3, 4)
        );
        assert_eq!(j.resume.as_deref(), Some(ck().as_path()));
        assert!(j.ends[1].starts_with("preempted"), "{:?}", j.ends);
    }

    #[test]
    fn progress_is_a_checkpoint_newer_than_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let before = SystemTime::now() - std::time::Duration::from_secs(5);
        assert_eq!(progress(dir.path(), before), Progress::None);
        std::fs::create_dir_all(dir.path().join("ckps")).unwrap();
        let current = dir.path().join("ckps/current.safetensors");
        std::fs::write(&current, b"x").unwrap();
        assert_eq!(
            progress(dir.path(), before),
            Progress::Made(current.clone())
        );
        let after = SystemTime::now() + std::time::Duration::from_secs(5);
        assert_eq!(progress(dir.path(), after), Progress::Stale(current));
        assert_eq!(
            max_restarts(Some(dir.path())),
            2,
            "no config.yaml: the default"
        );
    }
}
