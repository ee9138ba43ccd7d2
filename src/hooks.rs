//! A word when a queued or detached run ends: the per-user `on_run_end` command hook.
//!
//! `hooks.yaml` in the per-user configuration folder ([`config_path`]:
//! `~/.config/mislas/hooks.yaml` on Linux, `$MISLAS_DATA_DIR/hooks.yaml` when that is set):
//!
//! ```yaml
//! on_run_end: 'notify-send "mislas: $MISLAS_RUN_NAME $MISLAS_RUN_STATE" "top-1 $MISLAS_TOP1 %"'
//! ```
//!
//! The command runs with `sh -c` and these variables ([`RunEnd::environment`]):
//!
//! | variable | value |
//! |---|---|
//! | `MISLAS_RUN_NAME` | the run's `name` (the last stage's, for a pipeline) |
//! | `MISLAS_RUN_STATE` | `finished`, `failed` or `stopped` |
//! | `MISLAS_RUN_DIR` | its run folder (the last stage that started) |
//! | `MISLAS_TOP1`, `MISLAS_ECE` | top-1 and ECE (%) of its last evaluated epoch; empty before one |
//! | `MISLAS_BEST_TOP1` | its best top-1 (%), the reference's figure; empty before an evaluation |
//! | `MISLAS_RUN_MESSAGE` | a failed run's message; empty otherwise |
//!
//! Who runs it: the queue's scheduler for the runs it started or adopted, once, when a run's
//! queue state is final (not before a retry); for a run on Slurm, the process that reads the
//! job's end from Slurm and decides it (`queue run --slurm`, `queue ls` or the UI), after the
//! decision is committed; a run launched from the terminal UI (detached,
//! [`crate::live::DETACHED_ENV`]) for itself, as it ends. A hook that cannot start, exits with
//! another status than 0 or runs longer than [`HOOK_TIMEOUT`] (then killed) is logged; it
//! never changes how the run ended.
use crate::events::Event;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a hook may run before it is killed (a hook waiting for input must not hold the
/// scheduler).
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// How a run ended, in the hook's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndState {
    /// Every stage trained to its last epoch.
    Finished,
    /// Ended with an error (a failure, a kill).
    Failed,
    /// Stopped by a front end or a signal, with its checkpoint.
    Stopped,
}

impl EndState {
    /// The word of `MISLAS_RUN_STATE`.
    pub fn word(self) -> &'static str {
        match self {
            EndState::Finished => "finished",
            EndState::Failed => "failed",
            EndState::Stopped => "stopped",
        }
    }
}

/// What the hook is told about a run that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// The run's `name`.
    pub name: String,
    /// How it ended.
    pub state: EndState,
    /// Its run folder (a pipeline's last stage that started).
    pub dir: PathBuf,
    /// Top-1 and ECE (%) of its last evaluated epoch.
    pub last: Option<(f64, f64)>,
    /// Best top-1 (%).
    pub best_top1: Option<f64>,
    /// A failed run's message.
    pub message: Option<String>,
}

impl RunEnd {
    /// The end of the job whose events are in `job_dir/events.jsonl` (a pipeline's stage-1
    /// folder holds every stage's events): name and folder of the last stage that started, the
    /// figures of its last epoch, the last failure's message. Without readable events (a run
    /// that failed before its first stage started), `name` and no figures.
    pub fn from_job_dir(job_dir: &Path, state: EndState, name: &str) -> RunEnd {
        let mut end = RunEnd {
            name: name.to_owned(),
            state,
            dir: job_dir.to_path_buf(),
            last: None,
            best_top1: None,
            message: None,
        };
        let text = std::fs::read_to_string(job_dir.join(crate::live::EVENTS)).unwrap_or_default();
        // Only the events read below are parsed (a long run holds millions of batch lines).
        let wanted = ["{\"StageStarted\"", "{\"Epoch\"", "{\"Failed\""];
        for event in text
            .lines()
            .filter(|l| wanted.iter().any(|w| l.starts_with(w)))
            .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        {
            match event {
                Event::StageStarted(s) => {
                    end.name = s.name;
                    end.dir = s.run_dir;
                    end.last = None;
                    end.best_top1 = None;
                }
                Event::Epoch(r) => {
                    end.last = Some((r.eval.top1, r.eval.ece));
                    end.best_top1 = Some(r.best_top1);
                }
                Event::Failed(f) => end.message = Some(f.message),
                _ => {}
            }
        }
        if state != EndState::Failed {
            end.message = None;
        }
        end
    }

    /// The end of a run known only by its name (it made no run folder).
    pub fn named(name: &str, state: EndState) -> RunEnd {
        RunEnd {
            name: name.to_owned(),
            state,
            dir: PathBuf::new(),
            last: None,
            best_top1: None,
            message: None,
        }
    }

    /// The hook's environment variables (module doc), figures with two decimals.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let figure = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_default();
        vec![
            ("MISLAS_RUN_NAME", self.name.clone()),
            ("MISLAS_RUN_STATE", self.state.word().to_owned()),
            ("MISLAS_RUN_DIR", self.dir.display().to_string()),
            ("MISLAS_TOP1", figure(self.last.map(|l| l.0))),
            ("MISLAS_ECE", figure(self.last.map(|l| l.1))),
            ("MISLAS_BEST_TOP1", figure(self.best_top1)),
            (
                "MISLAS_RUN_MESSAGE",
                self.message.clone().unwrap_or_default(),
            ),
        ]
    }
}

/// The per-user `hooks.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Shell command run when a queued or detached run ends.
    pub on_run_end: Option<String>,
}

impl Hooks {
    /// Reads a `hooks.yaml`; a missing or empty file is no hook.
    ///
    /// # Errors
    /// The file cannot be read or is not a mapping of `on_run_end` to a command (named).
    pub fn from_file(path: &Path) -> Result<Hooks> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Hooks::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if text.trim().is_empty() {
            return Ok(Hooks::default());
        }
        serde_yaml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (expected `on_run_end: COMMAND`, a shell command)",
                path.display()
            )
        })
    }
}

/// The per-user `hooks.yaml`: `$MISLAS_DATA_DIR/hooks.yaml` when that variable is set, else
/// `<config dir of directories' ProjectDirs("", "", "mislas")>/hooks.yaml`
/// (`~/.config/mislas/hooks.yaml` on Linux), beside `slurm.yaml` and the user presets.
pub fn config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(crate::config::DATA_DIR_ENV) {
        return Some(PathBuf::from(d).join("hooks.yaml"));
    }
    directories::ProjectDirs::from("", "", "mislas").map(|d| d.config_dir().join("hooks.yaml"))
}

/// Runs the `on_run_end` hook of `hooks.yaml` ([`config_path`]) for `end`, waiting for it at
/// most [`HOOK_TIMEOUT`]. Returns the line to log: `None` when there is no hook or it
/// succeeded, else what went wrong (the file, the command, its status). Never fails.
pub fn on_run_end(end: &RunEnd) -> Option<String> {
    let path = config_path()?;
    let hooks = match Hooks::from_file(&path) {
        Ok(h) => h,
        Err(e) => return Some(format!("=> on_run_end hook not run: {e:#}")),
    };
    let command = hooks.on_run_end.filter(|c| !c.trim().is_empty())?;
    run_hook(&command, end, HOOK_TIMEOUT)
        .err()
        .map(|e| format!("=> on_run_end hook of {} failed: {e:#}", path.display()))
}

/// A detached run's own hook, as the run ends: when [`crate::live::DETACHED_ENV`] is set (a run
/// [`crate::live::launch`] started), [`on_run_end`] for the job whose folder the run announced
/// ([`crate::live::ANNOUNCE_ENV`]), else for `name` without a folder; `message` is a failure's.
/// Returns the line to log, as [`on_run_end`]; `None` for any other run.
pub fn after_detached_run(state: EndState, message: Option<&str>, name: &str) -> Option<String> {
    std::env::var_os(crate::live::DETACHED_ENV)?;
    let job_dir = std::env::var_os(crate::live::ANNOUNCE_ENV)
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|text| PathBuf::from(text.trim_end()));
    let mut end = match job_dir {
        Some(dir) => RunEnd::from_job_dir(&dir, state, name),
        None => RunEnd::named(name, state),
    };
    if let Some(m) = message {
        end.message = Some(m.to_owned());
    }
    on_run_end(&end)
}

/// Runs `command` with `sh -c` and `end`'s environment, its output discarded; kills it after
/// `timeout`.
///
/// # Errors
/// It cannot start, ends with another status than 0, or outlives `timeout`.
pub fn run_hook(command: &str, end: &RunEnd, timeout: Duration) -> Result<()> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(end.environment())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start `sh -c {command:?}`"))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            anyhow::bail!("`{command}` ended with {status}");
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "`{command}` ran longer than {} s and was killed",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end() -> RunEnd {
        RunEnd {
            name: "fm s1".into(),
            state: EndState::Failed,
            dir: PathBuf::from("/tmp/run dir"),
            last: Some((41.234, 3.5)),
            best_top1: Some(42.0),
            message: Some("lost rank 1".into()),
        }
    }

    /// The hook sees the run in its environment (written to a file by the hook itself); a
    /// failing or hanging hook is an error naming the command, not a panic.
    #[test]
    fn a_hook_gets_the_runs_environment_and_its_failures_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let cmd = format!("env | grep ^MISLAS_ | sort > '{}'", out.display());
        run_hook(&cmd, &end(), Duration::from_secs(10)).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let expected = "MISLAS_BEST_TOP1=42.00\nMISLAS_ECE=3.50\nMISLAS_RUN_DIR=/tmp/run dir\n\
                        MISLAS_RUN_MESSAGE=lost rank 1\nMISLAS_RUN_NAME=fm s1\n\
                        MISLAS_RUN_STATE=failed\nMISLAS_TOP1=41.23\n";
        assert_eq!(text, expected);
        let e = run_hook("exit 3", &end(), Duration::from_secs(10)).unwrap_err();
        assert!(format!("{e:#}").contains("exit status: 3"), "{e:#}");
        let t = Instant::now();
        let e = run_hook("sleep 5", &end(), Duration::from_millis(200)).unwrap_err();
        assert!(format!("{e:#}").contains("ran longer than"), "{e:#}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn hooks_yaml_is_read_and_a_wrong_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hooks.yaml");
        assert_eq!(Hooks::from_file(&f).unwrap(), Hooks::default());
        std::fs::write(&f, "on_run_end: notify-send done\n").unwrap();
        assert_eq!(
            Hooks::from_file(&f).unwrap().on_run_end.as_deref(),
            Some("notify-send done")
        );
        std::fs::write(&f, "on_run_ends: x\n").unwrap();
        let e = format!("{:#}", Hooks::from_file(&f).unwrap_err());
        assert!(e.contains("hooks.yaml") && e.contains("on_run_ends"), "{e}");
    }
}
