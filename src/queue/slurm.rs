//! The Slurm backend of the queue (`mislas queue run --slurm`): each queued run or pipeline
//! becomes one sbatch job, and Slurm, not this machine, decides where and when it runs.
//!
//! The SQLite queue stays the source of what was asked; Slurm is the source of what runs. A
//! submitted run's row is [`state::SUBMITTED`] and its Slurm job is recorded in the table
//! `slurm_jobs` (job id, Slurm's state and reason, as last seen); its state is read from
//! `squeue`, then, once the job has left squeue, from `scontrol show job` and, when that has
//! forgotten it too, from `sacct`. `queue ls` refreshes them; `queue hold|release|rm` act on the
//! job (`scontrol hold|release`, `scancel`).
//!
//! Each job (`logs/<id>.sbatch`) is submitted with `--requeue`, `--open-mode=append` (output to
//! `logs/<id>.log`, kept across restarts) and `--signal=B:USR1@SECONDS`: before a time limit or
//! a preemption Slurm sends USR1 to the batch shell, which is `mislas` itself (`exec`); the run
//! saves a checkpoint at the next batch, asks Slurm to requeue its job and exits 75. The job runs
//! with `run_dir` set to a fixed folder (`<saved>/<name>_q<id>`; a pipeline's stages
//! `<saved>/<stage name>_q<id>`), so that the restarted job continues the same run folder from
//! its own checkpoint without a person.
//!
//! Options come from the command line, else from the per-user `slurm.yaml` ([`config_path`]),
//! else Slurm's defaults.
use super::retry::{self, Attempt, Decision, Ending};
use super::{state, Job, Queue};
use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Default seconds before the time limit at which Slurm signals a job (USR1).
pub const DEFAULT_SIGNAL_SECONDS: u64 = 120;

/// sbatch options of the runs, from `slurm.yaml` and the command line (the command line wins).
/// Every field left out is Slurm's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time`, Slurm's format (`MINUTES`, `HH:MM:SS`, `D-HH:MM:SS`).
    pub time: Option<String>,
    /// GPUs per run on each node. One GPU on one node: one task (`--gpus-per-task=1`);
    /// more, or more than one node: one task per GPU, started by `srun`
    /// (`--ntasks-per-node=GPUS --gpus-per-node=GPUS`).
    pub gpus: Option<u32>,
    /// Nodes per run (`--nodes`); more than one starts the run with `srun`, one task per GPU
    /// (one per node without `gpus`), ranked from Slurm's variables
    /// ([`crate::distributed::srun`]).
    pub nodes: Option<u32>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem`, Slurm's format (`16G`).
    pub mem: Option<String>,
    /// Seconds before the time limit at which Slurm sends USR1 (`--signal=B:USR1@SECONDS`);
    /// default [`DEFAULT_SIGNAL_SECONDS`].
    pub signal_seconds: Option<u64>,
    /// Submit the runs of one `queue run` as one job array with at most this many tasks
    /// running at once (`--array=0-N%K`).
    pub array_throttle: Option<u32>,
    /// More sbatch options, as given (`--qos=high`, `--constraint=a100`).
    pub extra: Vec<String>,
}

impl SlurmOptions {
    /// `self` with every option `over` sets replaced by it (`extra` is appended).
    pub fn overridden_by(mut self, over: SlurmOptions) -> SlurmOptions {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            partition,
            account,
            time,
            gpus,
            nodes,
            cpus,
            mem,
            signal_seconds,
            array_throttle
        );
        self.extra.extend(over.extra);
        self
    }

    /// Reads a `slurm.yaml`; a missing file is no options.
    ///
    /// # Errors
    /// The file cannot be read or is not a mapping of the keys above (named).
    pub fn from_file(path: &Path) -> Result<SlurmOptions> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (keys: partition, account, time, gpus, nodes, cpus, mem, \
                 signal_seconds, array_throttle, extra)",
                path.display()
            )
        })
    }

    /// Whether a run takes more than one task: more than one node or GPU. Such a run is
    /// started by `srun`, one task per GPU (per node without GPUs).
    pub fn multi_task(&self) -> bool {
        self.nodes.unwrap_or(1) > 1 || self.gpus.unwrap_or(1) > 1
    }

    /// The sbatch options of these settings, for run `id` writing its output to `log`.
    pub fn sbatch_args(&self, id: i64, name: &str, log: &Path) -> Vec<String> {
        let mut a = vec![
            format!("--job-name=mislas-{id}-{name}"),
            format!("--output={}", log.display()),
        ];
        a.extend(self.common_args());
        a
    }

    /// The options every job of these settings gets, a lone run's or an array's: requeue,
    /// appended output, the time-limit signal, the tasks and resources, and `extra`.
    fn common_args(&self) -> Vec<String> {
        let mut a = vec![
            "--open-mode=append".to_owned(),
            "--requeue".into(),
            format!(
                "--signal=B:USR1@{}",
                self.signal_seconds.unwrap_or(DEFAULT_SIGNAL_SECONDS)
            ),
        ];
        if self.multi_task() {
            let per_node = self.gpus.unwrap_or(1);
            a.push(format!("--nodes={}", self.nodes.unwrap_or(1)));
            a.push(format!("--ntasks-per-node={per_node}"));
            if let Some(g) = self.gpus {
                a.push(format!("--gpus-per-node={g}"));
            }
        } else {
            a.push("--ntasks=1".into());
            if let Some(g) = self.gpus {
                a.push(format!("--gpus-per-task={g}"));
            }
        }
        let mut opt = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(format!("--{flag}={v}"));
            }
        };
        opt("partition", self.partition.clone());
        opt("account", self.account.clone());
        opt("time", self.time.clone());
        opt("cpus-per-task", self.cpus.map(|c| c.to_string()));
        opt("mem", self.mem.clone());
        a.extend(self.extra.iter().cloned());
        a
    }
}

/// The per-user `slurm.yaml`: `$MISLAS_DATA_DIR/slurm.yaml` when that variable is set (a
/// queue of its own, as the tests use), else `<config dir of directories' ProjectDirs("", "",
/// "mislas")>/slurm.yaml` (`~/.config/mislas/slurm.yaml` on Linux).
pub fn config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(crate::config::DATA_DIR_ENV) {
        return Some(PathBuf::from(d).join("slurm.yaml"));
    }
    directories::ProjectDirs::from("", "", "mislas").map(|d| d.config_dir().join("slurm.yaml"))
}

/// Creates the table of Slurm jobs (a migration of its own: older queues gain it on open).
///
/// # Errors
/// The database cannot be written.
pub(super) fn migrate(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS slurm_jobs (
             id INTEGER PRIMARY KEY,
             job_id TEXT NOT NULL,
             state TEXT NOT NULL,
             reason TEXT,
             exit_code TEXT,
             submitted TEXT NOT NULL DEFAULT (datetime('now'))
         );",
    )?;
    // `sbatch`: the JSON list of sbatch arguments that submit the run alone again (a retry).
    let has_sbatch: bool = db.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('slurm_jobs') WHERE name = 'sbatch'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_sbatch {
        db.execute_batch("ALTER TABLE slurm_jobs ADD COLUMN sbatch TEXT")?;
    }
    Ok(())
}

/// A queued run's Slurm job, as last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmJob {
    /// The queue's id of the run.
    pub id: i64,
    /// Slurm's job id.
    pub job_id: String,
    /// Slurm's state (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, …).
    pub state: String,
    /// Slurm's reason (why pending, or why it ended), when it gives one.
    pub reason: Option<String>,
    /// Slurm's `ExitCode` (`status:signal`), once ended.
    pub exit_code: Option<String>,
}

/// What Slurm says of a job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmStatus {
    /// Slurm's state, upper case, without a `by UID` tail (`CANCELLED by 0` → `CANCELLED`).
    pub state: String,
    /// The reason, when not `None`.
    pub reason: Option<String>,
    /// `ExitCode` (`status:signal`), when known.
    pub exit_code: Option<String>,
}

impl SlurmStatus {
    /// Whether the job is over (it will not run again unless requeued by hand).
    pub fn is_final(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "REQUEUED"
                | "REQUEUE_FED"
                | "REQUEUE_HOLD"
                | "RESIZING"
                | "SUSPENDED"
                | "CONFIGURING"
                | "COMPLETING"
                | "STAGE_OUT"
                | "SIGNALING"
                | "STOPPED"
                | "RESV_DEL_HOLD"
        )
    }

    /// The queue state of a run whose job ended so: `done` for `COMPLETED`, else `failed`.
    pub fn queue_state(&self) -> &'static str {
        match self.state.as_str() {
            "COMPLETED" => state::DONE,
            _ => state::FAILED,
        }
    }

    /// `ExitCode`'s two numbers: the exit status and the signal that ended the job's batch
    /// script (`0:9` for a `kill -9`); `None` when Slurm gave none or it is not `N:N`.
    pub fn exit_status(&self) -> Option<(i32, i32)> {
        let (status, signal) = self.exit_code.as_deref()?.split_once(':')?;
        Some((status.trim().parse().ok()?, signal.trim().parse().ok()?))
    }

    /// The attempt this ended job was, as [`retry::decide`] takes it: `COMPLETED` is a
    /// finish; `FAILED` with a signal (`0:9`) or an exit status (`1:0`) is that signal or
    /// status, as a local run's; any other end (`CANCELLED`, `TIMEOUT`, `NODE_FAIL`,
    /// `PREEMPTED`, `FAILED` with `0:0`, …) is Slurm's state. Progress is the run folder's
    /// checkpoint against `started` (when the attempt was submitted).
    pub fn attempt(&self, run_dir: Option<&Path>, started: std::time::SystemTime) -> Attempt {
        let (status, signal) = match (self.state.as_str(), self.exit_status()) {
            ("COMPLETED", _) => (Some(0), None),
            ("FAILED", Some((_, sig))) if sig != 0 => (None, Some(sig)),
            ("FAILED", Some((st, _))) if st != 0 => (Some(st), None),
            _ => (None, None),
        };
        let mut attempt = Attempt::read(run_dir, status, signal, started);
        if status.is_none() && signal.is_none() {
            attempt.ending = Ending::Slurm {
                state: self.state.clone(),
                reason: self.reason.clone(),
            };
        }
        attempt
    }
}

impl Queue {
    /// The Slurm jobs of the queue's runs, by queue id.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn slurm_jobs(&self) -> Result<Vec<SlurmJob>> {
        let mut st = self
            .db
            .prepare("SELECT id, job_id, state, reason, exit_code FROM slurm_jobs ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(SlurmJob {
                id: r.get(0)?,
                job_id: r.get(1)?,
                state: r.get(2)?,
                reason: r.get(3)?,
                exit_code: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn slurm_job(&self, id: i64) -> Result<Option<SlurmJob>> {
        Ok(self.slurm_jobs()?.into_iter().find(|j| j.id == id))
    }

    /// Records run `id` handed to Slurm as job `job_id` (`12`, or `12_3` for an array's task),
    /// with the sbatch arguments `resubmit` that submit it alone again.
    fn record_submitted(
        &self,
        id: i64,
        job_id: &str,
        run_dir: &Path,
        resubmit: &[String],
    ) -> Result<()> {
        let tx = self.db.unchecked_transaction()?;
        self.record_submitted_in(id, job_id, run_dir, resubmit)?;
        tx.commit()?;
        Ok(())
    }

    /// Records what Slurm says of run `id`'s job; once the job is over, the attempt is decided
    /// as a local one is ([`retry::decide`]): recorded in words, and a run to restart (one that
    /// failed after making progress, or was preempted without a requeue) is submitted again
    /// with its first sbatch arguments, continuing its own run folder. Returns the new job's
    /// id when it was submitted again.
    ///
    /// One process decides: the decision is taken inside an immediate transaction that first
    /// checks the run is still `submitted` as `job_id` (two `queue ls` at once never submit
    /// twice).
    fn record_status(
        &self,
        id: i64,
        job_id: &str,
        s: &SlurmStatus,
        notes: &mut Vec<String>,
    ) -> Result<Option<String>> {
        self.db.execute_batch("BEGIN IMMEDIATE")?;
        let mut ended = None;
        let out = self.record_status_locked(id, job_id, s, notes, &mut ended);
        match &out {
            Ok(_) => self.db.execute_batch("COMMIT")?,
            Err(_) => {
                let _ = self.db.execute_batch("ROLLBACK");
                return out;
            }
        }
        // The hook runs once the decision is committed (it may take up to a minute; the
        // database must not stay locked meanwhile), by the one process that took it.
        if let Some((st, why, dir)) = ended {
            super::scheduler::hook_run_end(self, id, st, dir.as_deref(), &why);
        }
        out
    }

    fn record_status_locked(
        &self,
        id: i64,
        job_id: &str,
        s: &SlurmStatus,
        notes: &mut Vec<String>,
        ended: &mut Option<(&'static str, String, Option<PathBuf>)>,
    ) -> Result<Option<String>> {
        let row: Option<(String, Option<String>, Option<String>)> = self
            .db
            .query_row(
                "SELECT j.state, j.run_dir, s.sbatch FROM jobs j JOIN slurm_jobs s ON s.id = j.id
                 WHERE j.id = ?1 AND s.job_id = ?2",
                params![id, job_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((st, run_dir, resubmit)) = row else {
            return Ok(None);
        };
        self.db.execute(
            "UPDATE slurm_jobs SET state = ?2, reason = ?3, exit_code = ?4 WHERE id = ?1",
            params![id, s.state, s.reason, s.exit_code],
        )?;
        if st != state::SUBMITTED || !s.is_final() {
            return Ok(None);
        }
        let run_dir = run_dir.map(PathBuf::from);
        let attempt = s.attempt(run_dir.as_deref(), self.attempt_start(id)?);
        let (decision, why) = self.after_attempt(id, &attempt, run_dir.as_deref())?;
        if let Some((status, _)) = s.exit_status() {
            self.db.execute(
                "UPDATE jobs SET exit_code = ?2 WHERE id = ?1",
                params![id, status],
            )?;
        }
        if let Decision::Final(st) = decision {
            if st != state::DONE {
                notes.push(format!("queue: run {id} {st}: {why}"));
            }
            *ended = Some((st, why, run_dir));
            return Ok(None);
        }
        let args: Vec<String> = resubmit
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_default();
        self.resubmit(id, &why, run_dir.as_deref(), &args, notes)
    }

    /// Submits run `id` again with the sbatch arguments `args` of its first submission (a
    /// retry, `why`); the new job's id, or `None` when Slurm refused it (the run is then
    /// `failed`, with Slurm's message among its ends).
    fn resubmit(
        &self,
        id: i64,
        why: &str,
        run_dir: Option<&Path>,
        args: &[String],
        notes: &mut Vec<String>,
    ) -> Result<Option<String>> {
        let resubmitted = match args.is_empty() {
            true => Err(anyhow::anyhow!(
                "its sbatch arguments were not recorded (submitted by an earlier version)"
            )),
            false => {
                self.db.execute(
                    "UPDATE jobs SET attempt_started = ?2, started = datetime('now') WHERE id = ?1",
                    params![id, retry::unix_seconds(std::time::SystemTime::now())],
                )?;
                sbatch(args)
            }
        };
        match resubmitted {
            Ok(new_id) => {
                let dir = run_dir.unwrap_or(Path::new(""));
                self.record_submitted_in(id, &new_id, dir, args)?;
                notes.push(format!(
                    "queue: run {id} {why}: submitted again as Slurm job {new_id}"
                ));
                Ok(Some(new_id))
            }
            Err(e) => {
                let why = format!("not submitted again: {e:#}");
                notes.push(format!("queue: run {id} {why}"));
                self.db.execute(
                    "UPDATE jobs SET state = ?2, ended = datetime('now') WHERE id = ?1",
                    params![id, state::FAILED],
                )?;
                self.push_end(id, &why)?;
                Ok(None)
            }
        }
    }

    /// [`Queue::record_submitted`] inside a transaction the caller holds.
    fn record_submitted_in(
        &self,
        id: i64,
        job_id: &str,
        run_dir: &Path,
        resubmit: &[String],
    ) -> Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO slurm_jobs (id, job_id, state, sbatch)
             VALUES (?1, ?2, 'PENDING', ?3)",
            params![id, job_id, serde_json::to_string(resubmit)?],
        )?;
        self.db.execute(
            "UPDATE jobs SET state = ?2, device = ?3, run_dir = ?4, pid = NULL WHERE id = ?1",
            params![
                id,
                state::SUBMITTED,
                format!("slurm:{job_id}"),
                run_dir.display().to_string()
            ],
        )?;
        Ok(())
    }

    /// Appends a sentence to run `id`'s list of why its attempts ended.
    fn push_end(&self, id: i64, why: &str) -> Result<()> {
        let ends: String = self
            .db
            .query_row("SELECT ends FROM jobs WHERE id = ?1", [id], |r| r.get(0))?;
        let mut ends: Vec<String> = serde_json::from_str(&ends).unwrap_or_default();
        ends.push(why.to_owned());
        self.db.execute(
            "UPDATE jobs SET ends = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(&ends)?],
        )?;
        Ok(())
    }

    /// Asks Slurm for the state of every submitted run and records it (deciding, as
    /// [`Queue::record_status`] does, the runs whose job ended); returns how many are still in
    /// Slurm's hands, and what happened in words (a run submitted again, a job Slurm could
    /// not be asked about: it keeps its last state). Prints nothing: a terminal UI calls it.
    ///
    /// # Errors
    /// The database cannot be used.
    pub fn refresh_slurm(&self) -> Result<(usize, Vec<String>)> {
        let submitted: Vec<i64> = self
            .list()?
            .into_iter()
            .filter(|j| j.state == state::SUBMITTED)
            .map(|j| j.id)
            .collect();
        let mut live = 0;
        let mut notes = Vec::new();
        for id in submitted {
            let Some(job) = self.slurm_job(id)? else {
                continue;
            };
            match query_status(&job.job_id) {
                Ok(s) => {
                    let again = self.record_status(id, &job.job_id, &s, &mut notes)?;
                    if !s.is_final() || again.is_some() {
                        live += 1;
                    }
                }
                Err(e) => {
                    notes.push(format!("queue: run {id}: {e:#}"));
                    live += 1;
                }
            }
        }
        Ok((live, notes))
    }

    /// `queue hold` of a submitted run: `scontrol hold` its Slurm job.
    ///
    /// # Errors
    /// Slurm refuses (its message).
    pub fn hold_slurm(&self, id: i64) -> Result<bool> {
        self.act_on_slurm(id, &["scontrol", "hold"])
    }

    /// `queue release` of a submitted run: `scontrol release` its Slurm job.
    ///
    /// # Errors
    /// Slurm refuses (its message).
    pub fn release_slurm(&self, id: i64) -> Result<bool> {
        self.act_on_slurm(id, &["scontrol", "release"])
    }

    /// `queue rm` of a submitted run: `scancel` its Slurm job, then the row goes.
    ///
    /// # Errors
    /// Slurm refuses (its message), or the database cannot be written.
    pub fn remove_slurm(&self, id: i64) -> Result<bool> {
        if !self.act_on_slurm(id, &["scancel"])? {
            return Ok(false);
        }
        self.db.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
        self.db
            .execute("DELETE FROM slurm_jobs WHERE id = ?1", [id])?;
        Ok(true)
    }

    /// Runs `command JOBID` when run `id` is in Slurm's hands; `false` when it is not, or its
    /// job has ended (the caller acts on the queue alone).
    fn act_on_slurm(&self, id: i64, command: &[&str]) -> Result<bool> {
        let submitted: Option<String> = self
            .db
            .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        if submitted.as_deref() != Some(state::SUBMITTED) {
            return Ok(false);
        }
        let Some(job) = self.slurm_job(id)? else {
            return Ok(false);
        };
        // A job that ended since the last look is the queue's alone to act on, unless it was
        // submitted again just now (a retry): then the new job is acted on.
        let mut notes = Vec::new();
        let mut job_id = job.job_id;
        if let Ok(s) = query_status(&job_id) {
            match self.record_status(id, &job_id, &s, &mut notes)? {
                Some(again) => job_id = again,
                None if s.is_final() => return Ok(false),
                None => {}
            }
        }
        slurm_command(command[0], &[&command[1..], &[job_id.as_str()]].concat())?;
        if let Ok(s) = query_status(&job_id) {
            self.record_status(id, &job_id, &s, &mut notes)?;
        }
        // What happened is in the run's ends (`queue ls`); nothing is printed (the UI calls
        // this too).
        Ok(true)
    }
}

/// Runs a Slurm command; its standard output.
///
/// # Errors
/// The command is not on the PATH, or it fails: Slurm's own message, in words.
fn slurm_command(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "`{program}` is not on the PATH: the Slurm backend needs Slurm's client \
                 commands (sbatch, squeue, scontrol, scancel) on this machine; run `mislas \
                 queue run` without --slurm to train here"
            )
        } else {
            anyhow::anyhow!("cannot run {program}: {e}")
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let msg = err
            .lines()
            .map(|l| l.trim().trim_start_matches(&format!("{program}: ")))
            .map(|l| l.trim_start_matches("error: "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        bail!(
            "Slurm refused `{program} {}`: {}",
            args.join(" "),
            if msg.is_empty() {
                format!("{} with no message", out.status)
            } else {
                msg
            }
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What Slurm says of job `job_id`: `squeue` while it is listed, else `scontrol show job`,
/// else `sacct`.
///
/// # Errors
/// No command knows the job (all three messages).
pub fn query_status(job_id: &str) -> Result<SlurmStatus> {
    let squeue = slurm_command("squeue", &["-h", "-j", job_id, "-o", "%T|%r"]);
    if let Ok(text) = &squeue {
        if let Some(line) = text.lines().find(|l| !l.trim().is_empty()) {
            let (st, reason) = line.split_once('|').unwrap_or((line, ""));
            return Ok(status(st, reason, None));
        }
    }
    let scontrol = slurm_command("scontrol", &["-o", "show", "job", job_id]);
    if let Ok(text) = &scontrol {
        if let Some(s) = parse_scontrol(text) {
            return Ok(s);
        }
    }
    let sacct = slurm_command(
        "sacct",
        &[
            "-n",
            "-X",
            "-P",
            "-j",
            job_id,
            "-o",
            "State,Reason,ExitCode",
        ],
    );
    if let Ok(text) = &sacct {
        if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() == 3 {
                return Ok(status(f[0], f[1], Some(f[2])));
            }
        }
    }
    let err = |r: &Result<String>| match r {
        Ok(_) => "does not list it".to_owned(),
        Err(e) => format!("{e:#}"),
    };
    bail!(
        "Slurm job {job_id}: squeue {}; scontrol {}; sacct {}",
        err(&squeue),
        err(&scontrol),
        err(&sacct)
    )
}

fn status(state: &str, reason: &str, exit_code: Option<&str>) -> SlurmStatus {
    let state = state.split_whitespace().next().unwrap_or("UNKNOWN");
    let reason = reason.trim();
    SlurmStatus {
        state: state.trim_end_matches('+').to_ascii_uppercase(),
        reason: (!reason.is_empty() && reason != "None" && reason != "(null)")
            .then(|| reason.to_owned()),
        exit_code: exit_code.map(str::to_owned),
    }
}

/// Reads `JobState=`, `Reason=` and `ExitCode=` of `scontrol -o show job`'s one line.
fn parse_scontrol(text: &str) -> Option<SlurmStatus> {
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_owned)
    };
    let state = field("JobState=")?;
    let reason = field("Reason=").unwrap_or_default();
    Some(status(&state, &reason, field("ExitCode=").as_deref()))
}

/// The run folders a job of run `job` writes (`run_dir` of each stage), and the overrides that
/// name them.
fn run_folders(job: &Job) -> (PathBuf, Vec<String>) {
    let value = |key: &str| {
        job.args
            .iter()
            .rposition(|a| a == key)
            .and_then(|i| job.args.get(i + 1))
            .cloned()
    };
    let folder = |name: String| job.saved.join(format!("{name}_q{}", job.id));
    if job.args.first().map(String::as_str) == Some("pipeline") {
        let s1 = folder(value("stage1.name").unwrap_or_else(|| format!("{}_stage1", job.name)));
        let s2 = folder(value("stage2.name").unwrap_or_else(|| format!("{}_stage2", job.name)));
        let overrides = vec![
            "stage1.run_dir".into(),
            s1.display().to_string(),
            "stage2.run_dir".into(),
            s2.display().to_string(),
        ];
        (s1, overrides)
    } else {
        let dir = folder(value("name").unwrap_or_else(|| job.name.clone()));
        (
            dir.clone(),
            vec!["run_dir".into(), dir.display().to_string()],
        )
    }
}

/// Quotes a word for bash (single quotes).
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return w.to_owned();
    }
    format!("'{}'", w.replace('\'', r"'\''"))
}

/// The lines that start run `job`: `cd` to its project, then `exec mislas …` (so that Slurm's
/// USR1 to the batch shell reaches the run itself), or for a run of several tasks `exec srun
/// --kill-on-bad-exit=1 mislas …` (srun passes the USR1 on to every task, and starts one
/// task per GPU, ranked from Slurm's variables).
fn run_lines(job: &Job, exe: &Path, opts: &SlurmOptions, overrides: &[String]) -> String {
    let mut words = Vec::new();
    if opts.multi_task() {
        words.extend(["srun".to_owned(), "--kill-on-bad-exit=1".into()]);
    }
    words.extend([
        exe.display().to_string(),
        "--saved".into(),
        job.saved.display().to_string(),
    ]);
    words.extend(job.args.iter().cloned());
    // One task with several GPUs is not made (`multi_task`); one task with one GPU needs no
    // `gpus` key. Under srun each task is one rank.
    words.extend(overrides.iter().cloned());
    let line: Vec<String> = words.iter().map(|w| shell_word(w)).collect();
    format!(
        "cd {project} || exit 1\nexec {line}\n",
        project = shell_word(&job.project.display().to_string()),
        line = line.join(" ")
    )
}

/// The batch script of run `job` submitted alone.
fn batch_script(job: &Job, exe: &Path, opts: &SlurmOptions, overrides: &[String]) -> String {
    format!(
        "#!/bin/bash\n# mislas queue run {id} ({name}), submitted by `mislas queue run --slurm`\n{}",
        run_lines(job, exe, opts, overrides),
        id = job.id,
        name = job.name,
    )
}

/// The batch script of a job array whose task `i` runs `runs[i]`: a `case` on
/// `SLURM_ARRAY_TASK_ID` (the map of task to run, in the script itself, so that nothing but
/// the script has to reach the node), each branch sending its output to its run's log
/// `logs/<id>.log` (appended) and starting the run as a lone job would.
fn array_script(
    runs: &[(Job, Vec<String>)],
    exe: &Path,
    opts: &SlurmOptions,
    logs: &Path,
) -> String {
    let ids: Vec<String> = runs.iter().map(|(j, _)| j.id.to_string()).collect();
    let mut s = format!(
        "#!/bin/bash\n# mislas queue runs {} as one job array (task i runs the i-th), submitted by \
         `mislas queue run --slurm --array-throttle`\ncase \"$SLURM_ARRAY_TASK_ID\" in\n",
        ids.join(", ")
    );
    for (i, (job, overrides)) in runs.iter().enumerate() {
        let log = logs.join(format!("{}.log", job.id));
        s.push_str(&format!(
            "{i})  # run {} ({})\nexec >>{} 2>&1\n{};;\n",
            job.id,
            job.name,
            shell_word(&log.display().to_string()),
            run_lines(job, exe, opts, overrides)
        ));
    }
    s.push_str(
        "*) echo \"mislas: no queued run for array task $SLURM_ARRAY_TASK_ID\" >&2; exit 1 ;;\nesac\n",
    );
    s
}

/// Runs `sbatch --parsable ARGS…`; Slurm's job id.
///
/// # Errors
/// No sbatch, Slurm refuses (its message), or it printed no job id.
fn sbatch(args: &[String]) -> Result<String> {
    let mut argv = vec!["--parsable"];
    argv.extend(args.iter().map(String::as_str));
    let out = slurm_command("sbatch", &argv)?;
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let id = out.trim().split(';').next().unwrap_or_default().to_owned();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch gave no job id (it printed '{}')", out.trim());
    }
    Ok(id)
}

/// Writes run `job`'s lone batch script `logs/<id>.sbatch`; the sbatch arguments that submit
/// it, its run folder and the overrides that name that folder.
///
/// # Errors
/// The script cannot be written.
fn prepare(
    job: &Job,
    exe: &Path,
    opts: &SlurmOptions,
    logs: &Path,
) -> Result<(Vec<String>, PathBuf, Vec<String>)> {
    let (run_dir, overrides) = run_folders(job);
    let script = logs.join(format!("{}.sbatch", job.id));
    fs::write(&script, batch_script(job, exe, opts, &overrides))
        .with_context(|| format!("cannot write {}", script.display()))?;
    let mut args = opts.sbatch_args(job.id, &job.name, &logs.join(format!("{}.log", job.id)));
    args.push(script.display().to_string());
    Ok((args, run_dir, overrides))
}

/// A run handed to Slurm: its job id (`12`, or `12_3` for an array's task), its run folder,
/// and the sbatch arguments that submit it alone (again, after a failure).
pub type Submitted = (String, PathBuf, Vec<String>);

/// Submits run `job` as an sbatch job; returns Slurm's job id, the run's folder and the sbatch
/// arguments (kept to submit it again after a failure).
///
/// # Errors
/// No sbatch, Slurm refuses the job (its message: a partition or account it does not know,
/// a time over the limit), or the script cannot be written.
pub fn submit(job: &Job, exe: &Path, opts: &SlurmOptions, logs: &Path) -> Result<Submitted> {
    let (args, run_dir, _) = prepare(job, exe, opts, logs)?;
    Ok((sbatch(&args)?, run_dir, args))
}

/// Submits `jobs` as one job array of at most `throttle` running tasks (`--array=0-N%K`);
/// returns, per run, its task's job id (`12_3`), its run folder and its lone sbatch arguments
/// (a failed task is submitted again alone).
///
/// # Errors
/// No sbatch, Slurm refuses the array (its message), or a script cannot be written.
pub fn submit_array(
    jobs: &[Job],
    exe: &Path,
    opts: &SlurmOptions,
    logs: &Path,
    throttle: u32,
) -> Result<Vec<Submitted>> {
    let mut runs = Vec::new();
    let mut each = Vec::new();
    for job in jobs {
        let (args, run_dir, overrides) = prepare(job, exe, opts, logs)?;
        runs.push((job.clone(), overrides));
        each.push((run_dir, args));
    }
    let first = jobs.first().map_or(0, |j| j.id);
    let script = logs.join(format!("array-{first}.sbatch"));
    fs::write(&script, array_script(&runs, exe, opts, logs))
        .with_context(|| format!("cannot write {}", script.display()))?;
    let mut args = vec![
        format!("--job-name=mislas-array-{first}"),
        format!("--output={}", logs.join("slurm-%A_%a.out").display()),
        format!(
            "--array=0-{}%{}",
            jobs.len().saturating_sub(1),
            throttle.max(1)
        ),
    ];
    args.extend(opts.common_args());
    args.push(script.display().to_string());
    let array = sbatch(&args)?;
    Ok(each
        .into_iter()
        .enumerate()
        .map(|(i, (dir, a))| (format!("{array}_{i}"), dir, a))
        .collect())
}

/// `mislas queue run --slurm`: submits every queued run in queue order, each as an sbatch job
/// or, with `array_throttle`, all as one job array; then, unless `detach`, follows the jobs
/// through Slurm until none is pending or running (submitting again the runs [`retry`]
/// restarts), printing each change. Runs Slurm refuses are `failed` with Slurm's message. A
/// run over several nodes whose run folder is not on a shared file system is warned about
/// before it is submitted ([`super::shared_fs`]).
///
/// # Errors
/// No sbatch on the PATH (before anything is taken), or the database cannot be used.
pub fn run_on_slurm(
    queue: &mut Queue,
    exe: &Path,
    opts: &SlurmOptions,
    detach: bool,
) -> Result<()> {
    slurm_command("sbatch", &["--version"])?;
    let logs = queue.dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut taken = Vec::new();
    while let Some(job) = queue.take_next("slurm")? {
        taken.push(job);
    }
    if opts.nodes.unwrap_or(1) > 1 {
        for job in &taken {
            if let Some(w) = super::shared_fs::warning(&run_folders(job).0, opts.nodes.unwrap_or(1))
            {
                eprintln!("queue: run {} ({}): warning: {w}", job.id, job.name);
            }
        }
    }
    let submitted: Vec<(&Job, Result<Submitted>)> = match opts.array_throttle {
        Some(k) if !taken.is_empty() => match submit_array(&taken, exe, opts, &logs, k) {
            Ok(each) => taken.iter().zip(each.into_iter().map(Ok)).collect(),
            Err(e) => {
                let msg = format!("{e:#}");
                taken
                    .iter()
                    .map(|j| (j, Err(anyhow::anyhow!("{msg}"))))
                    .collect()
            }
        },
        _ => taken
            .iter()
            .map(|j| (j, submit(j, exe, opts, &logs)))
            .collect(),
    };
    for (job, result) in submitted {
        match result {
            Ok((job_id, run_dir, args)) => {
                queue.record_submitted(job.id, &job_id, &run_dir, &args)?;
                println!(
                    "queue: run {} ({}) submitted as Slurm job {job_id}; run folder {}",
                    job.id,
                    job.name,
                    run_dir.display()
                );
            }
            Err(e) => {
                eprintln!("queue: run {} not submitted: {e:#}", job.id);
                queue.ended(job.id, None, None)?;
                queue.db.execute(
                    "INSERT OR REPLACE INTO slurm_jobs (id, job_id, state, reason)
                     VALUES (?1, '', 'REFUSED', ?2)",
                    params![job.id, format!("{e:#}")],
                )?;
            }
        }
    }
    if detach {
        return Ok(());
    }
    follow(queue)
}

/// Follows the submitted runs through Slurm until none pends or runs, printing each change.
fn follow(queue: &Queue) -> Result<()> {
    let mut seen: std::collections::HashMap<i64, String> = Default::default();
    loop {
        let (live, notes) = queue.refresh_slurm()?;
        notes.iter().for_each(|n| println!("{n}"));
        for j in queue.slurm_jobs()? {
            let shown = format!(
                "{}{}",
                j.state,
                j.reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(" ({r})"))
            );
            let key = format!("{} {shown}", j.job_id);
            if seen.get(&j.id) != Some(&key) && !j.job_id.is_empty() {
                println!("queue: run {} Slurm job {}: {shown}", j.id, j.job_id);
                seen.insert(j.id, key);
            }
        }
        if live == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scontrol_and_squeue_lines_give_state_reason_and_exit_code() {
        let line = "JobId=7 JobName=x UserId=root(0) JobState=CANCELLED Reason=None \
                    Dependency=(null) Requeue=1 Restarts=1 ExitCode=0:15";
        let s = parse_scontrol(line).unwrap();
        assert_eq!(
            s,
            SlurmStatus {
                state: "CANCELLED".into(),
                reason: None,
                exit_code: Some("0:15".into())
            }
        );
        assert!(s.is_final() && s.queue_state() == state::FAILED);
        let pending = status("PENDING", "BeginTime", None);
        assert_eq!(pending.reason.as_deref(), Some("BeginTime"));
        assert!(!pending.is_final());
        assert_eq!(status("CANCELLED by 0", "", Some("0:0")).state, "CANCELLED");
        assert_eq!(status("COMPLETED", "None", None).queue_state(), state::DONE);
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_sbatch_gets_every_option() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("slurm.yaml");
        fs::write(
            &f,
            "partition: gpu\naccount: lab\ntime: '1-00:00:00'\nextra: [--qos=low]\n",
        )
        .unwrap();
        let file = SlurmOptions::from_file(&f).unwrap();
        let cli = SlurmOptions {
            partition: Some("debug".into()),
            gpus: Some(4),
            extra: vec!["--constraint=a100".into()],
            ..Default::default()
        };
        let o = file.overridden_by(cli);
        let a = o.sbatch_args(3, "seed_0", Path::new("/q/logs/3.log"));
        for want in [
            "--partition=debug",
            "--account=lab",
            "--time=1-00:00:00",
            "--nodes=1",
            "--ntasks-per-node=4",
            "--gpus-per-node=4",
            "--requeue",
            "--open-mode=append",
            "--signal=B:USR1@120",
            "--output=/q/logs/3.log",
            "--qos=low",
            "--constraint=a100",
        ] {
            assert!(a.contains(&want.to_owned()), "{want} not in {a:?}");
        }
        // One GPU: one task, its GPU its own.
        let one = SlurmOptions {
            gpus: Some(1),
            ..Default::default()
        };
        let a1 = one.sbatch_args(1, "x", Path::new("/l"));
        assert!(
            a1.contains(&"--ntasks=1".to_owned()) && a1.contains(&"--gpus-per-task=1".to_owned()),
            "{a1:?}"
        );
        fs::write(&f, "partiton: gpu\n").unwrap();
        let e = SlurmOptions::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("slurm.yaml") && e.contains("partiton"), "{e}");
        assert_eq!(
            SlurmOptions::from_file(&dir.path().join("none.yaml")).unwrap(),
            SlurmOptions::default()
        );
    }

    #[test]
    fn a_run_gets_a_fixed_folder_per_stage_and_a_quoted_script() {
        let job = Job {
            id: 5,
            name: "a b".into(),
            args: ["pipeline", "stage1.name", "s1", "stage2.name", "s2"]
                .map(String::from)
                .to_vec(),
            project: "/p q".into(),
            saved: "/p q/saved".into(),
            state: state::QUEUED.into(),
            device: None,
            run_dir: None,
            pid: None,
            restarts: 0,
            ends: Vec::new(),
            resume: None,
            slurm: None,
        };
        let (dir, over) = run_folders(&job);
        assert_eq!(dir, Path::new("/p q/saved/s1_q5"));
        assert_eq!(
            over,
            [
                "stage1.run_dir",
                "/p q/saved/s1_q5",
                "stage2.run_dir",
                "/p q/saved/s2_q5"
            ]
        );
        let script = batch_script(&job, Path::new("/bin/mislas"), &Default::default(), &over);
        assert!(
            script.contains("cd '/p q' || exit 1\nexec /bin/mislas --saved '/p q/saved' pipeline"),
            "{script}"
        );
        assert!(
            script.contains("stage2.run_dir '/p q/saved/s2_q5'"),
            "{script}"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_missing_command_is_named_with_what_to_do() {
        let e = slurm_command("mislas-no-such-sbatch", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not on the PATH") && e.contains("without --slurm"),
            "{e}"
        );
    }

    fn job(id: i64, name: &str) -> Job {
        Job {
            id,
            name: name.into(),
            args: ["train", "--cfg", "a.yaml", "seed", &id.to_string()]
                .map(String::from)
                .to_vec(),
            project: "/p".into(),
            saved: "/p/saved".into(),
            state: state::QUEUED.into(),
            device: None,
            run_dir: None,
            pid: None,
            restarts: 0,
            ends: Vec::new(),
            resume: None,
            slurm: None,
        }
    }

    #[test]
    fn a_run_over_nodes_starts_one_task_per_gpu_with_srun() {
        let opts = SlurmOptions {
            nodes: Some(2),
            gpus: Some(4),
            ..Default::default()
        };
        let a = opts.sbatch_args(7, "big", Path::new("/q/logs/7.log"));
        for want in [
            "--nodes=2",
            "--ntasks-per-node=4",
            "--gpus-per-node=4",
            "--signal=B:USR1@120",
        ] {
            assert!(a.contains(&want.to_owned()), "{want} not in {a:?}");
        }
        assert!(!a.iter().any(|x| x.starts_with("--ntasks=")), "{a:?}");
        let j = job(7, "big");
        let (_, over) = run_folders(&j);
        let script = batch_script(&j, Path::new("/bin/mislas"), &opts, &over);
        assert!(
            script.ends_with(
                "cd /p || exit 1\nexec srun --kill-on-bad-exit=1 /bin/mislas --saved /p/saved \
                 train --cfg a.yaml seed 7 run_dir /p/saved/big_q7\n"
            ),
            "{script}"
        );
        // Nodes without GPUs: one task per node, no GPU option.
        let cpu = SlurmOptions {
            nodes: Some(3),
            ..Default::default()
        };
        let a = cpu.sbatch_args(1, "c", Path::new("/l"));
        assert!(a.contains(&"--ntasks-per-node=1".to_owned()), "{a:?}");
        assert!(!a.iter().any(|x| x.contains("gpus")), "{a:?}");
        // One node, one GPU: the lone task execs mislas itself.
        let one = batch_script(&j, Path::new("/bin/mislas"), &Default::default(), &over);
        assert!(one.contains("\nexec /bin/mislas --saved"), "{one}");
    }

    #[test]
    fn an_array_maps_each_task_to_its_run_and_log() {
        let runs: Vec<(Job, Vec<String>)> = [job(4, "s0"), job(5, "s1")]
            .into_iter()
            .map(|j| {
                let o = run_folders(&j).1;
                (j, o)
            })
            .collect();
        let s = array_script(
            &runs,
            Path::new("/bin/mislas"),
            &Default::default(),
            Path::new("/q/logs"),
        );
        assert!(s.contains("case \"$SLURM_ARRAY_TASK_ID\" in\n"), "{s}");
        assert!(
            s.contains(
                "0)  # run 4 (s0)\nexec >>/q/logs/4.log 2>&1\ncd /p || exit 1\nexec /bin/mislas \
                 --saved /p/saved train --cfg a.yaml seed 4 run_dir /p/saved/s0_q4\n;;\n"
            ),
            "{s}"
        );
        assert!(s.contains("1)  # run 5 (s1)\nexec >>/q/logs/5.log"), "{s}");
        assert!(
            s.contains("*) echo \"mislas: no queued run for array task"),
            "{s}"
        );
        // The script runs in bash: an unknown task fails with the message.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.sh");
        fs::write(&f, &s).unwrap();
        let out = Command::new("bash")
            .arg(&f)
            .env("SLURM_ARRAY_TASK_ID", "9")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("array task 9"));
    }

    #[test]
    fn an_ended_job_is_the_attempt_a_local_run_would_be() {
        let t0 = std::time::SystemTime::now();
        let ended = |st: &str, code: &str| status(st, "", Some(code)).attempt(None, t0).ending;
        assert_eq!(ended("COMPLETED", "0:0"), Ending::Exit(0, None));
        // `exec mislas` killed by SIGKILL: Slurm says FAILED, 0:9.
        assert_eq!(ended("FAILED", "0:9"), Ending::Signal(9));
        assert_eq!(ended("FAILED", "1:0"), Ending::Exit(1, None));
        assert_eq!(
            ended("CANCELLED by 0", "0:15"),
            Ending::Slurm {
                state: "CANCELLED".into(),
                reason: None
            }
        );
        let timeout = status("TIMEOUT", "", Some("0:15")).attempt(None, t0);
        let (d, why) = retry::decide(&timeout, 0, 2);
        assert_eq!(d, Decision::Final(state::FAILED));
        assert!(
            why.starts_with("ended in Slurm as TIMEOUT: before its first checkpoint"),
            "{why}"
        );
        let cancelled = status("CANCELLED", "", Some("0:15")).attempt(None, t0);
        let (_, why) = retry::decide(&cancelled, 0, 2);
        assert!(why.contains("cancelled (scancel), not retried"), "{why}");
        assert_eq!(status("FAILED", "", Some("x")).exit_status(), None);
    }
}
