//! The queue of runs and the index of run folders: a SQLite database (bundled SQLite, WAL
//! journal) in the per-user data folder, as MLflow and Optuna keep theirs, that
//! `mislas queue add|ls|rm|hold|release|first|run|index` read and write, several at once. The
//! run folders stay the source of truth: `queue index` rebuilds the index from them. A queued run is a `mislas train …` or `mislas pipeline …`
//! command line; the scheduler (`mislas queue run`) starts them in queue order as processes of
//! their own (attachable like any run, see [`crate::live`]): one at a time on a CPU-only
//! machine, else one per CUDA device (`device cuda:N` appended). Only one scheduler runs at a
//! time: it holds `scheduler.lock` (flock); a second one is refused with the first one's pid.
//!
//! A start is durable at every instant, so that a scheduler killed anywhere never loses,
//! doubles or orphans a run:
//!
//! 1. `queued` → `starting` is committed (one transaction) before anything else;
//! 2. the scheduler takes `logs/<id>.lock` (flock) and spawns the run with that lock's file
//!    descriptor inherited: from then on the lock is held exactly while the run's processes
//!    live, whoever started them;
//! 3. `running` and the pid are recorded; the run announces its run folder in
//!    `logs/<id>.run_dir` once it has one ([`crate::live::ANNOUNCE_ENV`]).
//!
//! A scheduler that finds a run `starting` or `running` it did not start decides from that
//! lock and the announced folder, never from a missing pid: a held lock is a live run, adopted
//! (its device stays busy until the lock is free); a free lock with a run folder is a run that
//! ended unwatched (`ended`, its folder says how); a free lock without a run folder is a run
//! that never did any work, and it goes back to the queue at its place.
//! `MISLAS_QUEUE_FAULT` ([`FAULT_ENV`]) aborts the scheduler at a named step, for fault drills.
//!
//! A run that ended is started again or not as [`retry`] decides: one that failed or died after
//! writing a checkpoint resumes from it (at most `max_restarts` times), a preempted one
//! (exit 75) always; each attempt's end is recorded in words (`queue ls`).
//!
//! A sweep is a grid over keys ([`expand_grid`]): `--grid smooth_head 0.1,0.2 --grid seed 0,1`
//! queues one run per point, named by its values; a value may set other keys with it
//! (`ce+stage1.mixup=false`).
use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::config::DATA_DIR_ENV;
/// Environment variable of the fault drills: the scheduler aborts (as a `kill -9` would end
/// it) at the step it names: `after_take` (`starting` committed, nothing spawned),
/// `after_spawn` (the run spawned, `running` not recorded), `after_running` (`running` and pid
/// recorded), `before_ended` (a run ended, its end not recorded).
pub const FAULT_ENV: &str = "MISLAS_QUEUE_FAULT";
/// More runs than this in one sweep need `--yes`.
pub const MAX_SWEEP_WITHOUT_YES: usize = 100;

/// The per-user data folder ([`crate::config::user_data_dir`]).
///
/// # Errors
/// It is not known (no home folder).
pub fn data_dir() -> Result<PathBuf> {
    crate::config::user_data_dir()
        .context("no per-user data folder on this system (set MISLAS_DATA_DIR)")
}

/// A state of a queued run.
pub mod state {
    /// Waits its turn.
    pub const QUEUED: &str = "queued";
    /// Waits, but is not started until released.
    pub const HELD: &str = "held";
    /// Taken by a scheduler, its process being started (see the module's start protocol).
    pub const STARTING: &str = "starting";
    /// Its process runs.
    pub const RUNNING: &str = "running";
    /// Ended with status 0.
    pub const DONE: &str = "done";
    /// Stopped (status 130: a stop from a front end or a signal), with its checkpoint.
    pub const STOPPED: &str = "stopped";
    /// Ended with an error.
    pub const FAILED: &str = "failed";
    /// Handed to Slurm (`queue run --slurm`): its Slurm job (`slurm_jobs`) says whether it
    /// pends or runs.
    pub const SUBMITTED: &str = "submitted";
    /// Ended while no scheduler watched it (the one that started it had ended): its run
    /// folder says how.
    pub const ENDED: &str = "ended";
}

/// One row of the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Id, shown by `queue ls`.
    pub id: i64,
    /// Name (a sweep point's values).
    pub name: String,
    /// The command line after `mislas` (`train --cfg … KEY VALUE …` or `pipeline …`).
    pub args: Vec<String>,
    /// Folder the run starts in (relative paths of the command resolve against it).
    pub project: PathBuf,
    /// Folder of run folders (`--saved`).
    pub saved: PathBuf,
    /// One of [`state`].
    pub state: String,
    /// Device it runs on, once started.
    pub device: Option<String>,
    /// Its job folder, once known.
    pub run_dir: Option<PathBuf>,
    /// Its process, while running.
    pub pid: Option<i64>,
    /// Times it was started again ([`retry`]).
    pub restarts: u32,
    /// Why each attempt ended, in words, oldest first ([`retry::decide`]).
    pub ends: Vec<String>,
    /// The checkpoint its next (or current) attempt resumes from, after a restart.
    pub resume: Option<PathBuf>,
    /// Its Slurm job as last seen (`queue run --slurm`), or why Slurm refused it.
    pub slurm: Option<slurm::SlurmJob>,
}

impl Job {
    /// The configuration a queued single run trains (`train --cfg FILE`, the file the queue
    /// wrote or was given, read now); `None` for a pipeline or a file that cannot be read.
    pub fn single_config(&self) -> Option<crate::config::Config> {
        match self.args.as_slice() {
            [train, cfg, file, ..] if train == "train" && cfg == "--cfg" => {
                let path = std::path::Path::new(file);
                let path = match path.is_absolute() {
                    true => path.to_path_buf(),
                    false => self.project.join(path),
                };
                crate::config::Config::from_file(&path)
                    .ok()
                    .map(|l| l.config)
            }
            _ => None,
        }
    }
}

/// The queue database.
pub struct Queue {
    db: Connection,
    dir: PathBuf,
}

impl Queue {
    /// Opens `dir/queue.sqlite`, creating it when there is none. A new database is made
    /// aside and linked into place once complete, so an empty (0-byte) file is never a queue:
    /// it is refused, named, rather than read as an empty queue.
    ///
    /// # Errors
    /// The folder or database cannot be created or read; the file is empty or not a mislas
    /// queue (named, with what to do).
    pub fn open(dir: &Path) -> Result<Queue> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("queue.sqlite");
        if !path.exists() {
            let tmp = dir.join(format!("queue.sqlite.new-{}", std::process::id()));
            let _ = fs::remove_file(&tmp);
            drop(Self::open_file(&tmp, dir)?);
            // Another process may have made it meanwhile: theirs stays.
            let _ = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
        }
        if fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            bail!(
                "{} is empty (0 bytes): not a queue database (cut short or emptied); move it \
                 away and `mislas queue` starts a new, empty queue",
                path.display()
            );
        }
        Self::open_file(&path, dir)
    }

    /// Opens (creating) the database `path` of the data folder `dir`, with its tables.
    fn open_file(path: &Path, dir: &Path) -> Result<Queue> {
        let db = Connection::open(path)
            .with_context(|| format!("cannot open the queue {}", path.display()))?;
        db.busy_timeout(Duration::from_secs(10))?;
        db.pragma_update(None, "journal_mode", "WAL")
            .with_context(|| {
                format!(
                    "{}: not a mislas queue database (damaged?): move it away and `mislas queue` \
                     starts a new, empty queue",
                    path.display()
                )
            })?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS jobs (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 position INTEGER NOT NULL,
                 name TEXT NOT NULL,
                 args TEXT NOT NULL,
                 project TEXT NOT NULL,
                 saved TEXT NOT NULL,
                 state TEXT NOT NULL,
                 device TEXT,
                 run_dir TEXT,
                 pid INTEGER,
                 exit_code INTEGER,
                 added TEXT NOT NULL DEFAULT (datetime('now')),
                 started TEXT,
                 ended TEXT
             );
             CREATE TABLE IF NOT EXISTS runs (
                 dir TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 stage TEXT,
                 seed INTEGER,
                 epochs INTEGER NOT NULL,
                 best_top1 REAL,
                 last_top1 REAL,
                 last_ece REAL,
                 last_nll REAL
             );",
        )
        .with_context(|| format!("{}: not a mislas queue", path.display()))?;
        retry::migrate(&db)
            .with_context(|| format!("{}: cannot add the restart columns", path.display()))?;
        slurm::migrate(&db).with_context(|| format!("{}: not a mislas queue", path.display()))?;
        Ok(Queue {
            db,
            dir: dir.to_path_buf(),
        })
    }

    /// Appends a run; returns its id.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn add(&self, name: &str, args: &[String], project: &Path, saved: &Path) -> Result<i64> {
        self.db.execute(
            "INSERT INTO jobs (position, name, args, project, saved, state)
             VALUES ((SELECT COALESCE(MAX(position), 0) + 1 FROM jobs), ?1, ?2, ?3, ?4, ?5)",
            params![
                name,
                serde_json::to_string(args)?,
                project.display().to_string(),
                saved.display().to_string(),
                state::QUEUED
            ],
        )?;
        Ok(self.db.last_insert_rowid())
    }

    /// Every run, in queue order.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn list(&self) -> Result<Vec<Job>> {
        let mut st = self.db.prepare(
            "SELECT j.id, j.name, j.args, j.project, j.saved, j.state, j.device, j.run_dir,
                    j.pid, j.restarts, j.ends, j.resume,
                    s.job_id, s.state, s.reason, s.exit_code
             FROM jobs j LEFT JOIN slurm_jobs s ON s.id = j.id ORDER BY j.position, j.id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<i64>>(8)?,
                (
                    r.get::<_, i64>(9)?,
                    r.get::<_, String>(10)?,
                    r.get::<_, Option<String>>(11)?,
                    r.get::<_, Option<String>>(12)?.map(|job_id| {
                        Ok::<_, rusqlite::Error>(slurm::SlurmJob {
                            id: r.get(0)?,
                            job_id,
                            state: r.get(13)?,
                            reason: r.get(14)?,
                            exit_code: r.get(15)?,
                        })
                    }),
                ),
            ))
        })?;
        rows.map(|r| {
            let (id, name, args, project, saved, state, device, run_dir, pid, more) = r?;
            let (restarts, ends, resume, slurm) = more;
            Ok(Job {
                id,
                name,
                args: serde_json::from_str(&args)?,
                project: project.into(),
                saved: saved.into(),
                state,
                device,
                run_dir: run_dir.map(PathBuf::from),
                pid,
                restarts: restarts as u32,
                ends: serde_json::from_str(&ends).unwrap_or_default(),
                resume: resume.map(PathBuf::from),
                slurm: slurm.transpose()?,
            })
        })
        .collect()
    }

    fn set_state(&self, id: i64, from: &[&str], to: &str) -> Result<()> {
        let now: Option<String> = self
            .db
            .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        match now {
            None => bail!("no queued run {id} (mislas queue ls lists them)"),
            Some(s) if !from.contains(&s.as_str()) => {
                bail!(
                    "run {id} is {s}: only a {} run can be {to}",
                    from.join(" or ")
                )
            }
            Some(_) => {
                self.db
                    .execute("UPDATE jobs SET state = ?2 WHERE id = ?1", params![id, to])?;
                Ok(())
            }
        }
    }

    /// Removes a run that has not started, or the record of one that ended.
    ///
    /// # Errors
    /// No such run, or it is running (stop it first: its run screen's `s`).
    pub fn remove(&self, id: i64) -> Result<()> {
        let running: Option<String> = self
            .db
            .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        match running.as_deref() {
            None => bail!("no queued run {id} (mislas queue ls lists them)"),
            Some(s @ (state::RUNNING | state::STARTING)) => {
                bail!("run {id} is {s}: stop it first (s on its run screen)")
            }
            Some(_) => {
                self.db.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
                Ok(())
            }
        }
    }

    /// Holds a queued run: the scheduler passes it by.
    ///
    /// # Errors
    /// No such run, or it is not queued.
    pub fn hold(&self, id: i64) -> Result<()> {
        self.set_state(id, &[state::QUEUED], state::HELD)
    }

    /// Puts a held run back in the queue.
    ///
    /// # Errors
    /// No such run, or it is not held.
    pub fn release(&self, id: i64) -> Result<()> {
        self.set_state(id, &[state::HELD], state::QUEUED)
    }

    /// Moves a queued or held run to the front of the queue.
    ///
    /// # Errors
    /// No such run, or it has started or ended (its place in the queue no longer matters).
    pub fn to_front(&self, id: i64) -> Result<()> {
        let now: Option<String> = self
            .db
            .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        match now.as_deref() {
            None => bail!("no queued run {id} (mislas queue ls lists them)"),
            Some(state::QUEUED | state::HELD) => {
                self.db.execute(
                    "UPDATE jobs SET position = (SELECT MIN(position) FROM jobs) - 1 WHERE id = ?1",
                    [id],
                )?;
                Ok(())
            }
            Some(s) => bail!("run {id} is {s}: only a queued or held run can move to the front"),
        }
    }

    /// Takes the next queued run for `device`: marks it `starting` there, atomically (two
    /// schedulers, were the lock gone, never take the same run).
    fn take_next(&mut self, device: &str) -> Result<Option<Job>> {
        let tx = self
            .db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM jobs WHERE state = ?1 ORDER BY position, id LIMIT 1",
                [state::QUEUED],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = id {
            tx.execute(
                "UPDATE jobs SET state = ?2, device = ?3, started = datetime('now'),
                                 attempt_started = ?4 WHERE id = ?1",
                params![
                    id,
                    state::STARTING,
                    device,
                    retry::unix_seconds(std::time::SystemTime::now())
                ],
            )?;
        }
        tx.commit()?;
        Ok(match id {
            Some(id) => self.list()?.into_iter().find(|j| j.id == id),
            None => None,
        })
    }

    /// Puts a run that never did any work back in the queue, at its place.
    fn requeue(&self, id: i64) -> Result<()> {
        self.db.execute(
            "UPDATE jobs SET state = ?2, pid = NULL, device = NULL, started = NULL WHERE id = ?1",
            params![id, state::QUEUED],
        )?;
        Ok(())
    }

    /// Records a run's process: `running`, with its pid and device.
    fn started(&self, id: i64, pid: u32, device: &str) -> Result<()> {
        self.db.execute(
            "UPDATE jobs SET state = ?2, pid = ?3, device = ?4 WHERE id = ?1",
            params![id, state::RUNNING, pid, device],
        )?;
        Ok(())
    }

    fn ended(&self, id: i64, code: Option<i32>, run_dir: Option<&Path>) -> Result<()> {
        let st = match code {
            Some(0) => state::DONE,
            Some(130) => state::STOPPED,
            _ => state::FAILED,
        };
        self.db.execute(
            "UPDATE jobs SET state = ?2, exit_code = ?3, run_dir = COALESCE(?4, run_dir),
                             pid = NULL, ended = datetime('now') WHERE id = ?1",
            params![id, st, code, run_dir.map(|p| p.display().to_string())],
        )?;
        Ok(())
    }
}

/// One run folder as the index holds it (the folder stays the source of truth).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedRun {
    /// The run folder.
    pub dir: PathBuf,
    /// Its configuration's name.
    pub name: String,
    /// `stage1` or `stage2`.
    pub stage: Option<String>,
    /// Its seed.
    pub seed: Option<u64>,
    /// Evaluated epochs.
    pub epochs: usize,
    /// Best top-1 %, last top-1 %, last ECE %, last NLL.
    pub figures: Option<[f64; 4]>,
}

impl Queue {
    /// Rebuilds the index of runs from the run folders under `saved_root` (its rows for that
    /// folder are replaced); returns how many runs it holds now.
    ///
    /// # Errors
    /// The database cannot be written.
    pub fn reindex(&mut self, saved_root: &Path) -> Result<usize> {
        let runs = crate::run_dir::list_runs(saved_root);
        let tx = self.db.transaction()?;
        let prefix = format!("{}/", saved_root.display());
        tx.execute(
            "DELETE FROM runs WHERE substr(dir, 1, length(?1)) = ?1",
            [&prefix],
        )?;
        for r in &runs {
            let best = crate::seeds::best_epoch(&r.epochs).map(|e| e.eval.top1);
            let last = r.epochs.last();
            tx.execute(
                "INSERT INTO runs (dir, name, stage, seed, epochs, best_top1, last_top1,
                                   last_ece, last_nll)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.dir.display().to_string(),
                    r.config.as_ref().map_or(r.name.clone(), |c| c.name.clone()),
                    r.stage.map(|s| s.to_string()),
                    r.config.as_ref().map(|c| c.seed as i64),
                    r.epochs.len() as i64,
                    best,
                    last.map(|e| e.eval.top1),
                    last.map(|e| e.eval.ece),
                    last.map(|e| e.eval.nll),
                ],
            )?;
        }
        tx.commit()?;
        Ok(runs.len())
    }

    /// The indexed runs, by folder.
    ///
    /// # Errors
    /// The database cannot be read.
    pub fn indexed(&self) -> Result<Vec<IndexedRun>> {
        let mut st = self.db.prepare(
            "SELECT dir, name, stage, seed, epochs, best_top1, last_top1, last_ece, last_nll
             FROM runs ORDER BY dir",
        )?;
        let rows = st.query_map([], |r| {
            let figs: [Option<f64>; 4] = [r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?];
            Ok(IndexedRun {
                dir: PathBuf::from(r.get::<_, String>(0)?),
                name: r.get(1)?,
                stage: r.get(2)?,
                seed: r.get::<_, Option<i64>>(3)?.map(|s| s as u64),
                epochs: r.get::<_, i64>(4)? as usize,
                figures: match figs {
                    [Some(a), Some(b), Some(c), Some(d)] => Some([a, b, c, d]),
                    _ => None,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl Queue {
    /// Adds a job made in the terminal UI: its configurations are written as YAML in
    /// `<data folder>/jobs/<time>/` and the queued command line names them; returns its id.
    ///
    /// # Errors
    /// The files or the database cannot be written.
    pub fn add_job(
        &self,
        job: &crate::wire::Job,
        name: &str,
        project: &Path,
        saved: &Path,
    ) -> Result<i64> {
        use crate::wire::Job as J;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = self.dir.join("jobs").join(stamp.to_string());
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let write = |file: &str, cfg: &crate::config::Config| -> Result<String> {
            let p = dir.join(file);
            fs::write(&p, cfg.to_yaml())
                .with_context(|| format!("cannot write {}", p.display()))?;
            Ok(p.display().to_string())
        };
        let args: Vec<String> = match job {
            J::Single(c) => vec!["train".into(), "--cfg".into(), write("stage.yaml", c)?],
            J::Pipeline { stage1, stage2 } => {
                let mut args = vec![
                    "pipeline".into(),
                    "--stage1".into(),
                    write("stage1.yaml", stage1)?,
                ];
                for (i, c) in stage2.iter().enumerate() {
                    let file = match i {
                        0 => "stage2.yaml".to_owned(),
                        _ => format!("stage2_{}.yaml", i + 1),
                    };
                    args.extend(["--stage2".into(), write(&file, c)?]);
                }
                args
            }
        };
        self.add(name, &args, project, saved)
    }
}

/// A grid over keys: `[(key, [v1, v2, …]), …]` → every combination, the first key varying
/// slowest, each as `KEY VALUE` pairs.
///
/// A value may bring other keys along, set at its points only: `V+KEY=VALUE+KEY=VALUE…`
/// ([`split_value`]). So one axis can hold settings that need more than one key, e.g. the
/// stage-1 losses of a comparison: `--grid stage1.loss
/// ce,ldam+stage1.reweight=drw+classifier=normed,ce+stage1.mixup=false` gives the point of
/// `ldam` the pairs `stage1.loss ldam`, `stage1.reweight drw`, `classifier normed`.
///
/// # Errors
/// A key has no values (the grid would be empty), a key appears twice (as a grid key or as a
/// key a value brings), or a value brings a pair without a value.
pub fn expand_grid(grid: &[(String, Vec<String>)]) -> Result<Vec<Vec<(String, String)>>> {
    let mut axes: Vec<Vec<Vec<(String, String)>>> = Vec::new();
    for (i, (k, vs)) in grid.iter().enumerate() {
        if vs.is_empty() {
            bail!("sweep: {k} has no values, so the sweep has no runs");
        }
        if grid[..i].iter().any(|(k2, _)| k2 == k) {
            bail!("sweep: {k} appears twice");
        }
        let mut axis = Vec::new();
        for v in vs {
            let (v, along) = split_value(v)?;
            for (k2, _) in &along {
                if k2 == k || grid.iter().any(|(k3, _)| k3 == k2) {
                    bail!(
                        "sweep: {k2} appears twice (as a grid key and with the value {v} of {k})"
                    );
                }
            }
            axis.push(std::iter::once((k.clone(), v)).chain(along).collect());
        }
        axes.push(axis);
    }
    let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for axis in &axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                axis.iter().map(move |pairs| {
                    let mut q = p.clone();
                    q.extend(pairs.iter().cloned());
                    q
                })
            })
            .collect();
    }
    Ok(points)
}

/// Splits a grid value into its own value and the `KEY=VALUE` pairs it brings along:
/// `ldam+stage1.reweight=drw+classifier=normed` → `ldam`, `[(stage1.reweight, drw),
/// (classifier, normed)]`. A `+` begins a pair only where a key (letters, digits, `_`, `.`,
/// starting with a letter) and `=` follow, so `1e+3` stays one value.
///
/// # Errors
/// A pair's value is empty (`+mixup=`).
pub fn split_value(v: &str) -> Result<(String, Vec<(String, String)>)> {
    let starts_pair = |rest: &str| {
        rest.split_once('=').is_some_and(|(k, _)| {
            k.starts_with(|c: char| c.is_ascii_alphabetic())
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
    };
    let mut cuts = vec![];
    for (i, _) in v.match_indices('+') {
        if starts_pair(&v[i + 1..]) {
            cuts.push(i);
        }
    }
    let own = v[..cuts.first().copied().unwrap_or(v.len())].to_owned();
    let mut along = Vec::new();
    for (j, &c) in cuts.iter().enumerate() {
        let end = cuts.get(j + 1).copied().unwrap_or(v.len());
        let (k, val) = v[c + 1..end].split_once('=').unwrap_or_default();
        if val.is_empty() {
            bail!("sweep: the value {v} sets {k} to nothing: write +{k}=VALUE");
        }
        along.push((k.to_owned(), val.to_owned()));
    }
    Ok((own, along))
}

/// Parses `--grid KEY VALUES` pairs (`VALUES` comma-separated) into a grid.
///
/// # Errors
/// A value list is empty.
pub fn parse_grid(pairs: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    pairs
        .chunks(2)
        .map(|kv| {
            let [k, vs] = kv else {
                bail!("--grid takes a key and its values: KEY V1,V2,…");
            };
            let values: Vec<String> = vs
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            Ok((k.clone(), values))
        })
        .collect()
}

/// The name of a sweep point: `base_key1value1_key2value2`.
pub fn point_name(base: &str, point: &[(String, String)]) -> String {
    let mut name = base.to_owned();
    for (k, v) in point {
        name.push('_');
        name.push_str(k);
        name.push_str(v);
    }
    name
}

pub mod retry;
mod scheduler;
pub mod shared_fs;
pub use scheduler::run_scheduler;
pub mod slurm;

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_two_by_two_grid_has_four_points_first_key_slowest() {
        let grid = parse_grid(&s(&["smooth_head", "0.1,0.2", "seed", "0, 1"])).unwrap();
        let points = expand_grid(&grid).unwrap();
        let names: Vec<String> = points.iter().map(|p| point_name("r", p)).collect();
        assert_eq!(
            names,
            [
                "r_smooth_head0.1_seed0",
                "r_smooth_head0.1_seed1",
                "r_smooth_head0.2_seed0",
                "r_smooth_head0.2_seed1"
            ]
        );
        assert_eq!(
            points[3],
            vec![
                ("smooth_head".into(), "0.2".into()),
                ("seed".into(), "1".into())
            ]
        );
    }

    #[test]
    fn a_value_brings_its_own_keys_to_its_points_only() {
        let grid = parse_grid(&s(&[
            "stage1.loss",
            "ce,ldam+stage1.reweight=drw+classifier=normed,ce+stage1.mixup=false",
            "seed",
            "0,1",
        ]))
        .unwrap();
        let points = expand_grid(&grid).unwrap();
        assert_eq!(points.len(), 6);
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(points[0], p(&[("stage1.loss", "ce"), ("seed", "0")]));
        assert_eq!(
            points[3],
            p(&[
                ("stage1.loss", "ldam"),
                ("stage1.reweight", "drw"),
                ("classifier", "normed"),
                ("seed", "1")
            ])
        );
        assert_eq!(
            point_name("r", &points[4]),
            "r_stage1.lossce_stage1.mixupfalse_seed0"
        );
        // A `+` that no `KEY=` follows is part of the value.
        assert_eq!(split_value("1e+3").unwrap(), ("1e+3".to_owned(), vec![]));
        let (v, along) = split_value("2e+2+lr=1e+1").unwrap();
        assert_eq!((v.as_str(), along), ("2e+2", p(&[("lr", "1e+1")])));
    }

    #[test]
    fn a_key_a_value_brings_is_checked_like_a_grid_key() {
        let e = expand_grid(&parse_grid(&s(&["loss", "ce,focal+seed=1", "seed", "0"])).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("seed appears twice"), "{e}");
        let e = expand_grid(&parse_grid(&s(&["loss", "ce+loss=focal"])).unwrap()).unwrap_err();
        assert!(e.to_string().contains("loss appears twice"), "{e}");
        let e = split_value("ce+mixup=").unwrap_err();
        assert!(e.to_string().contains("sets mixup to nothing"), "{e}");
    }

    #[test]
    fn empty_or_repeated_grids_are_refused() {
        let e = expand_grid(&parse_grid(&s(&["seed", ","])).unwrap()).unwrap_err();
        assert!(e.to_string().contains("no values"), "{e}");
        let e = expand_grid(&parse_grid(&s(&["seed", "1", "seed", "2"])).unwrap()).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        // No grid at all: one run, the command as given.
        assert_eq!(expand_grid(&[]).unwrap(), vec![Vec::new()]);
    }

    #[test]
    fn queue_order_hold_release_front_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let p = Path::new("/p");
        let a = q.add("a", &s(&["train"]), p, p).unwrap();
        let b = q.add("b", &s(&["train"]), p, p).unwrap();
        let c = q.add("c", &s(&["train"]), p, p).unwrap();
        q.hold(b).unwrap();
        assert!(q.hold(b).is_err(), "only a queued run can be held");
        q.to_front(c).unwrap();
        let names: Vec<String> = q.list().unwrap().into_iter().map(|j| j.name).collect();
        assert_eq!(names, ["c", "a", "b"]);
        // A second handle (another front end) sees the same queue.
        let mut q2 = Queue::open(dir.path()).unwrap();
        assert_eq!(q2.take_next("cpu").unwrap().unwrap().id, c);
        assert_eq!(q2.take_next("cpu").unwrap().unwrap().id, a);
        assert!(q2.take_next("cpu").unwrap().is_none(), "b is held");
        q.to_front(b).unwrap();
        q.release(b).unwrap();
        assert_eq!(q2.take_next("cpu").unwrap().unwrap().id, b);
        assert!(q.remove(a).unwrap_err().to_string().contains("starting"));
        q.ended(a, Some(0), None).unwrap();
        let e = q.to_front(a).unwrap_err().to_string();
        assert!(
            e.contains("only a queued or held run can move to the front"),
            "{e}"
        );
        q.remove(a).unwrap();
        assert_eq!(q.list().unwrap().len(), 2);
    }

    #[test]
    fn the_index_is_rebuilt_from_the_run_folders() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("saved");
        let run = saved.join("r_202601010000");
        fs::create_dir_all(&run).unwrap();
        let cfg = crate::config::Config {
            name: "r".into(),
            seed: 7,
            ..crate::config::Config::default()
        };
        fs::write(run.join("config.yaml"), cfg.to_yaml()).unwrap();
        let mut q = Queue::open(&dir.path().join("data")).unwrap();
        assert_eq!(q.reindex(&saved).unwrap(), 1);
        // Twice: the rows are replaced, not added.
        assert_eq!(q.reindex(&saved).unwrap(), 1);
        let idx = q.indexed().unwrap();
        assert_eq!(idx.len(), 1);
        assert_eq!(
            (idx[0].name.as_str(), idx[0].seed, idx[0].epochs),
            ("r", Some(7), 0)
        );
        assert_eq!(idx[0].figures, None);
    }

    #[test]
    fn an_empty_or_damaged_queue_file_is_named_not_read_as_an_empty_queue() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        q.add("a", &s(&["train"]), Path::new("/p"), Path::new("/p"))
            .unwrap();
        drop(q);
        assert_eq!(Queue::open(dir.path()).unwrap().list().unwrap().len(), 1);
        let file = dir.path().join("queue.sqlite");
        for (what, bytes) in [
            ("empty (0 bytes)", &b""[..]),
            ("not a mislas queue", b"junk junk junk junk junk"),
        ] {
            let _ = fs::remove_file(dir.path().join("queue.sqlite-wal"));
            let _ = fs::remove_file(dir.path().join("queue.sqlite-shm"));
            fs::write(&file, bytes).unwrap();
            let e = format!("{:#}", Queue::open(dir.path()).err().expect(what));
            assert!(
                e.contains(&file.display().to_string()) && e.contains(what),
                "{e}"
            );
            assert!(e.contains("move it away"), "{e}");
        }
        // No temporary database is left beside it.
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".new-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
