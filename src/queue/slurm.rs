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
    /// GPUs per run (`--gpus-per-task` with one task, and `gpus N` for the run).
    pub gpus: Option<u32>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem`, Slurm's format (`16G`).
    pub mem: Option<String>,
    /// Seconds before the time limit at which Slurm sends USR1 (`--signal=B:USR1@SECONDS`);
    /// default [`DEFAULT_SIGNAL_SECONDS`].
    pub signal_seconds: Option<u64>,
    /// More sbatch options, as given (`--qos=high`, `--constraint=a100`).
    pub extra: Vec<String>,
}

impl SlurmOptions {
    /// `self` with every option `over` sets replaced by it (`extra` is appended).
    pub fn overridden_by(mut self, over: SlurmOptions) -> SlurmOptions {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(partition, account, time, gpus, cpus, mem, signal_seconds);
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
                "{}: {e} (keys: partition, account, time, gpus, cpus, mem, signal_seconds, \
                 extra)",
                path.display()
            )
        })
    }

    /// The sbatch options of these settings, for run `id` writing its output to `log`.
    pub fn sbatch_args(&self, id: i64, name: &str, log: &Path) -> Vec<String> {
        let mut a = vec![
            format!("--job-name=mislas-{id}-{name}"),
            format!("--output={}", log.display()),
            "--open-mode=append".into(),
            "--requeue".into(),
            format!(
                "--signal=B:USR1@{}",
                self.signal_seconds.unwrap_or(DEFAULT_SIGNAL_SECONDS)
            ),
            "--ntasks=1".into(),
        ];
        let mut opt = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(format!("--{flag}={v}"));
            }
        };
        opt("partition", self.partition.clone());
        opt("account", self.account.clone());
        opt("time", self.time.clone());
        opt("gpus-per-task", self.gpus.map(|g| g.to_string()));
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
    )
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

    fn record_submitted(&self, id: i64, job_id: &str, run_dir: &Path) -> Result<()> {
        let tx = self.db.unchecked_transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO slurm_jobs (id, job_id, state) VALUES (?1, ?2, 'PENDING')",
            params![id, job_id],
        )?;
        tx.execute(
            "UPDATE jobs SET state = ?2, device = ?3, run_dir = ?4, pid = NULL WHERE id = ?1",
            params![
                id,
                state::SUBMITTED,
                format!("slurm:{job_id}"),
                run_dir.display().to_string()
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn record_status(&self, id: i64, s: &SlurmStatus) -> Result<()> {
        self.db.execute(
            "UPDATE slurm_jobs SET state = ?2, reason = ?3, exit_code = ?4 WHERE id = ?1",
            params![id, s.state, s.reason, s.exit_code],
        )?;
        if s.is_final() {
            let code = s
                .exit_code
                .as_deref()
                .and_then(|c| c.split(':').next())
                .and_then(|c| c.parse::<i64>().ok());
            self.db.execute(
                "UPDATE jobs SET state = ?2, exit_code = ?3, ended = datetime('now')
                 WHERE id = ?1 AND state = ?4",
                params![id, s.queue_state(), code, state::SUBMITTED],
            )?;
        }
        Ok(())
    }

    /// Asks Slurm for the state of every submitted run and records it; returns how many are
    /// still in Slurm's hands. A job Slurm cannot be asked about keeps its last state.
    ///
    /// # Errors
    /// The database cannot be used.
    pub fn refresh_slurm(&self) -> Result<usize> {
        let submitted: Vec<i64> = self
            .list()?
            .into_iter()
            .filter(|j| j.state == state::SUBMITTED)
            .map(|j| j.id)
            .collect();
        let mut live = 0;
        for id in submitted {
            let Some(job) = self.slurm_job(id)? else {
                continue;
            };
            match query_status(&job.job_id) {
                Ok(s) => {
                    self.record_status(id, &s)?;
                    if !s.is_final() {
                        live += 1;
                    }
                }
                Err(e) => {
                    eprintln!("queue: run {id}: {e:#}");
                    live += 1;
                }
            }
        }
        Ok(live)
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
        // A job that ended since the last look is the queue's alone to act on.
        if let Ok(s) = query_status(&job.job_id) {
            self.record_status(id, &s)?;
            if s.is_final() {
                return Ok(false);
            }
        }
        slurm_command(
            command[0],
            &[&command[1..], &[job.job_id.as_str()]].concat(),
        )?;
        if let Ok(s) = query_status(&job.job_id) {
            self.record_status(id, &s)?;
        }
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

/// The batch script of run `job`: `cd` to its project, then `exec mislas` (so that Slurm's
/// USR1 to the batch shell reaches the run itself).
fn batch_script(job: &Job, exe: &Path, opts: &SlurmOptions, overrides: &[String]) -> String {
    let mut words = vec![
        exe.display().to_string(),
        "--saved".into(),
        job.saved.display().to_string(),
    ];
    words.extend(job.args.iter().cloned());
    if let Some(g) = opts.gpus {
        words.extend(["gpus".into(), g.to_string()]);
    }
    words.extend(overrides.iter().cloned());
    let line: Vec<String> = words.iter().map(|w| shell_word(w)).collect();
    format!(
        "#!/bin/bash\n# mislas queue run {id} ({name}), submitted by `mislas queue run --slurm`\n\
         cd {project} || exit 1\nexec {line}\n",
        id = job.id,
        name = job.name,
        project = shell_word(&job.project.display().to_string()),
        line = line.join(" ")
    )
}

/// Submits run `job` as an sbatch job; returns Slurm's job id and the run's folder.
///
/// # Errors
/// No sbatch, Slurm refuses the job (its message: a partition or account it does not know,
/// a time over the limit), or the script cannot be written.
pub fn submit(
    job: &Job,
    exe: &Path,
    opts: &SlurmOptions,
    logs: &Path,
) -> Result<(String, PathBuf)> {
    let (run_dir, overrides) = run_folders(job);
    let script = logs.join(format!("{}.sbatch", job.id));
    fs::write(&script, batch_script(job, exe, opts, &overrides))
        .with_context(|| format!("cannot write {}", script.display()))?;
    let mut args = vec!["--parsable".to_owned()];
    args.extend(opts.sbatch_args(job.id, &job.name, &logs.join(format!("{}.log", job.id))));
    args.push(script.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = slurm_command("sbatch", &argv)?;
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let id = out.trim().split(';').next().unwrap_or_default().to_owned();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch gave no job id (it printed '{}')", out.trim());
    }
    Ok((id, run_dir))
}

/// `mislas queue run --slurm`: submits every queued run in queue order as an sbatch job,
/// then, unless `detach`, follows the jobs through Slurm until none is pending or running,
/// printing each change. Runs Slurm refuses are `failed` with Slurm's message.
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
    while let Some(job) = queue.take_next("slurm")? {
        match submit(&job, exe, opts, &logs) {
            Ok((job_id, run_dir)) => {
                queue.record_submitted(job.id, &job_id, &run_dir)?;
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
    let mut seen: std::collections::HashMap<i64, String> = Default::default();
    loop {
        let live = queue.refresh_slurm()?;
        for j in queue.slurm_jobs()? {
            let shown = format!(
                "{}{}",
                j.state,
                j.reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(" ({r})"))
            );
            if seen.get(&j.id) != Some(&shown) && !j.job_id.is_empty() {
                println!("queue: run {} Slurm job {}: {shown}", j.id, j.job_id);
                seen.insert(j.id, shown);
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
            "--gpus-per-task=4",
            "--requeue",
            "--open-mode=append",
            "--signal=B:USR1@120",
            "--output=/q/logs/3.log",
            "--qos=low",
            "--constraint=a100",
        ] {
            assert!(a.contains(&want.to_owned()), "{want} not in {a:?}");
        }
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
}
