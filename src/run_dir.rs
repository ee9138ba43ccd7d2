//! The `saved/` layout of a run (the reference's `create_logger` with `add_date`):
//!
//! ```text
//! saved/<name>_<YYYYMMDDHHMM>/
//!   config.yaml                 the resolved configuration
//!   train_subset.json           per-class counts and SHA-256 of the kept training indices
//!   train_subset_indices.txt    those indices, decimal, one per line, class order
//!   metrics.jsonl               one JSON EpochReport per evaluated epoch
//!   <log_dir>/<name>.txt        the reference's text log
//!   <model_dir>/current.safetensors, <model_dir>/model_best.safetensors
//!   restarts.json               how many times the run was continued (RESTARTS), when it was
//! ```
//!
//! With the `run_dir` key the folder is the one it names instead ([`RunDir::create_at`]).
use crate::config::{Config, Stage};
use crate::events::EpochReport;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// File name of the latest checkpoint inside the model folder.
pub const CURRENT: &str = "current.safetensors";
/// File name of the best checkpoint inside the model folder.
pub const BEST: &str = "model_best.safetensors";

/// File of a run folder that counts the run's restarts ([`Restarts`]).
pub const RESTARTS: &str = "restarts.json";

/// How many times a run was continued in its folder after its first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restarts {
    /// Restarts so far: Slurm's `SLURM_RESTART_COUNT` when the run is a Slurm job's, else the
    /// folder's own count (one more than the last record).
    pub count: u64,
    /// Where `count` comes from: `SLURM_RESTART_COUNT` or `run folder`.
    pub source: String,
    /// Starts of the run in this folder, the first included (the folder's own count + 1).
    pub starts: u64,
    /// The Slurm job of the latest start, when under Slurm.
    pub slurm_job: Option<String>,
}

/// Record of the long-tailed training subset, so anyone can check it against the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsetRecord {
    /// Images kept per class, in class order.
    pub class_counts: Vec<usize>,
    /// Total kept images.
    pub num_images: usize,
    /// SHA-256 of the kept indices (into the full training set) written as decimal numbers
    /// joined by `\n`, class order, no trailing newline.
    pub sha256: String,
}

/// An open run folder.
#[derive(Debug)]
pub struct RunDir {
    /// `saved/<name>_<YYYYMMDDHHMM>`.
    pub root: PathBuf,
    /// Checkpoint folder (`<root>/<model_dir>`).
    pub ckpt_dir: PathBuf,
    /// The text log and `metrics.jsonl`; `None` on a rank other than 0 of a data-parallel
    /// run, which writes nothing ([`RunDir::replica`]).
    files: Option<(File, File)>,
}

impl RunDir {
    /// Creates `saved_root/<name>_<YYYYMMDDHHMM>` (with `_2`, `_3`, … if that exists, so that no
    /// earlier run is overwritten) and its sub-folders.
    ///
    /// # Errors
    /// A folder or file cannot be created; the message names it.
    pub fn create(saved_root: &Path, cfg: &Config) -> Result<RunDir> {
        let stamp = chrono::Local::now().format("%Y%m%d%H%M");
        let base = format!("{}_{stamp}", cfg.name);
        fs::create_dir_all(saved_root)
            .with_context(|| format!("cannot create {}", saved_root.display()))?;
        // `create_dir` fails on an existing folder, so two runs started in the same minute, even
        // by two processes, never share one.
        let mut n = 1;
        loop {
            let root = match n {
                1 => saved_root.join(&base),
                _ => saved_root.join(format!("{base}_{n}")),
            };
            match fs::create_dir(&root) {
                Ok(()) => return Self::open(root, cfg),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", root.display()))
                }
            }
        }
    }

    /// The run folder `root` itself (the `run_dir` key), for a run that starts there from
    /// nothing: created when missing; an existing one that holds no checkpoint (a run killed
    /// before its first) loses its `metrics.jsonl`, which no checkpoint continues.
    ///
    /// # Errors
    /// `root` already holds a checkpoint (`<model_dir>/current.safetensors` or
    /// `model_best.safetensors`) that this run does not continue: starting afresh there would
    /// overwrite another run; or a folder or file cannot be created.
    pub fn create_at(root: &Path, cfg: &Config) -> Result<RunDir> {
        let ckpt_dir = root.join(&cfg.model_dir);
        for f in [CURRENT, BEST] {
            if ckpt_dir.join(f).is_file() {
                anyhow::bail!(
                    "run_dir {}: its checkpoint {} is not one this stage continues (another \
                     stage or run wrote it); name another folder in run_dir, or leave run_dir \
                     empty for a new one",
                    root.display(),
                    ckpt_dir.join(f).display()
                );
            }
        }
        let metrics = root.join("metrics.jsonl");
        if metrics.is_file() {
            fs::remove_file(&metrics)
                .with_context(|| format!("cannot remove {}", metrics.display()))?;
        }
        Self::open(root.to_path_buf(), cfg)
    }

    /// Records one more start of a run continued in this folder in [`RESTARTS`] and returns
    /// the record: the count is `slurm` (`SLURM_RESTART_COUNT`, with the job id) when given,
    /// else one more than the folder's last record.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn record_restart(&self, slurm: Option<(u64, String)>) -> Result<Restarts> {
        let p = self.root.join(RESTARTS);
        let last = read_restarts(&self.root);
        let starts = last.as_ref().map_or(1, |r| r.starts) + 1;
        let record = match slurm {
            Some((count, job)) => Restarts {
                count,
                source: "SLURM_RESTART_COUNT".into(),
                starts,
                slurm_job: Some(job),
            },
            None => Restarts {
                count: last.map_or(0, |r| r.count) + 1,
                source: "run folder".into(),
                starts,
                slurm_job: None,
            },
        };
        if self.writes() {
            fs::write(&p, serde_json::to_string_pretty(&record)?)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        Ok(record)
    }

    /// Opens (or creates) a run folder and appends to its log and metrics. Temporary
    /// checkpoint files a kill left in its checkpoint folder (`.<name>.tmp`, see
    /// `checkpoint::write_atomically`) are removed: the run resumes from the last complete one.
    ///
    /// # Errors
    /// As [`RunDir::create`].
    pub fn open(root: PathBuf, cfg: &Config) -> Result<RunDir> {
        let log_dir = root.join(&cfg.log_dir);
        let ckpt_dir = root.join(&cfg.model_dir);
        for d in [&root, &log_dir, &ckpt_dir] {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        remove_partial_checkpoints(&ckpt_dir);
        let append = |p: PathBuf| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .with_context(|| format!("cannot open {}", p.display()))
        };
        Ok(RunDir {
            files: Some((
                append(log_dir.join(format!("{}.txt", cfg.name)))?,
                append(root.join("metrics.jsonl"))?,
            )),
            root,
            ckpt_dir,
        })
    }

    /// The run folder `root` that rank 0 of a data-parallel run writes, seen from another rank:
    /// the same paths, and [`RunDir::log`] and [`RunDir::append_metrics`] write nothing.
    pub fn replica(root: PathBuf, cfg: &Config) -> RunDir {
        RunDir {
            ckpt_dir: root.join(&cfg.model_dir),
            root,
            files: None,
        }
    }

    /// Whether this process writes the folder (not a [`RunDir::replica`]).
    pub fn writes(&self) -> bool {
        self.files.is_some()
    }

    /// Path of the latest checkpoint.
    pub fn current_checkpoint(&self) -> PathBuf {
        self.ckpt_dir.join(CURRENT)
    }

    /// Path of the best checkpoint.
    pub fn best_checkpoint(&self) -> PathBuf {
        self.ckpt_dir.join(BEST)
    }

    /// Writes `config.yaml`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_config(&self, cfg: &Config) -> Result<()> {
        let p = self.root.join("config.yaml");
        fs::write(&p, cfg.to_yaml()).with_context(|| format!("cannot write {}", p.display()))
    }

    /// Writes `train_subset.json` and `train_subset_indices.txt`.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn write_subset(&self, record: &SubsetRecord, indices: &[usize]) -> Result<()> {
        let p = self.root.join("train_subset.json");
        fs::write(&p, serde_json::to_string_pretty(record)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        let p = self.root.join("train_subset_indices.txt");
        let text: Vec<String> = indices.iter().map(usize::to_string).collect();
        fs::write(&p, text.join("\n")).with_context(|| format!("cannot write {}", p.display()))
    }

    /// Appends a line to the text log, prefixed like Python's logging `%(asctime)-15s`.
    ///
    /// # Errors
    /// The log cannot be written.
    pub fn log(&mut self, line: &str) -> Result<()> {
        let Some((log, _)) = &mut self.files else {
            return Ok(());
        };
        let ts = chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f");
        writeln!(log, "{ts} {line}").context("cannot write the run log")?;
        log.flush().context("cannot write the run log")
    }

    /// Appends one epoch to `metrics.jsonl` (flushed, so a follower sees it at once).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn append_metrics(&mut self, report: &EpochReport) -> Result<()> {
        let Some((_, metrics)) = &mut self.files else {
            return Ok(());
        };
        let line = serde_json::to_string(report)?;
        writeln!(metrics, "{line}").context("cannot write metrics.jsonl")?;
        metrics.flush().context("cannot write metrics.jsonl")
    }
}

/// The [`RESTARTS`] record of a run folder; `None` for a run never continued (or an
/// unreadable record).
pub fn read_restarts(run_dir: &Path) -> Option<Restarts> {
    let text = fs::read_to_string(run_dir.join(RESTARTS)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Reads `metrics.jsonl` of a run folder; a partly written last line (a run still writing) is
/// skipped. An epoch recorded twice (a run resumed from a checkpoint older than its last metrics
/// line, after a failed checkpoint write) counts once, with its later record.
///
/// # Errors
/// The file cannot be read, or a complete line is not an epoch record (named with its line
/// number).
pub fn read_metrics(run_dir: &Path) -> Result<Vec<EpochReport>> {
    let p = run_dir.join("metrics.jsonl");
    let f = File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
    let lines: Vec<String> = BufReader::new(f)
        .lines()
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot read {}", p.display()))?;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => {
                let r: EpochReport = r;
                out.retain(|o: &EpochReport| (o.stage, o.epoch) != (r.stage, r.epoch));
                out.push(r);
            }
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => anyhow::bail!("{} line {}: not an epoch record: {e}", p.display(), i + 1),
        }
    }
    Ok(out)
}

/// A run folder as the runs screen lists it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The folder.
    pub dir: PathBuf,
    /// Folder name (`<name>_<YYYYMMDDHHMM>`).
    pub name: String,
    /// Stage of its configuration.
    pub stage: Option<Stage>,
    /// Evaluated epochs so far.
    pub epochs: Vec<EpochReport>,
    /// Its `config.yaml`, when readable.
    pub config: Option<Config>,
    /// `<model_dir>/model_best.safetensors`, when present.
    pub best_checkpoint: Option<PathBuf>,
}

/// The run folders under `saved_root`, newest first (by modification time of `metrics.jsonl`,
/// else of the folder). Unreadable folders are skipped.
pub fn list_runs(saved_root: &Path) -> Vec<RunSummary> {
    let Ok(entries) = fs::read_dir(saved_root) else {
        return Vec::new();
    };
    let mut runs: Vec<(std::time::SystemTime, RunSummary)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.yaml").is_file())
        .map(|e| {
            let dir = e.path();
            let config = Config::from_file(&dir.join("config.yaml"))
                .ok()
                .map(|l| l.config);
            let ckpt_dir = dir.join(config.as_ref().map_or("ckps", |c| c.model_dir.as_str()));
            let best = ckpt_dir.join(BEST);
            let modified = fs::metadata(dir.join("metrics.jsonl"))
                .or_else(|_| fs::metadata(&dir))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            let summary = RunSummary {
                name: e.file_name().to_string_lossy().into_owned(),
                stage: config.as_ref().map(Config::stage),
                epochs: read_metrics(&dir).unwrap_or_default(),
                config,
                best_checkpoint: best.is_file().then_some(best),
                dir,
            };
            (modified, summary)
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.0));
    runs.into_iter().map(|(_, r)| r).collect()
}

/// Removes the temporary files (`.<name>.tmp`) of checkpoint writes that a kill interrupted;
/// a file that cannot be removed is left (the next write of that name replaces it).
fn remove_partial_checkpoints(ckpt_dir: &Path) {
    let Ok(entries) = fs::read_dir(ckpt_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kill during a checkpoint write leaves `.current.safetensors.tmp`; the next run in the
    /// folder removes it and keeps every complete file.
    #[test]
    fn opening_a_run_removes_interrupted_checkpoint_writes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            name: "r".into(),
            ..Config::default()
        };
        let ckps = dir.path().join(&cfg.model_dir);
        fs::create_dir_all(&ckps).unwrap();
        for f in [".current.safetensors.tmp", ".model_best.safetensors.tmp"] {
            fs::write(ckps.join(f), "partial").unwrap();
        }
        fs::write(ckps.join("current.safetensors"), "complete").unwrap();
        RunDir::open(dir.path().to_path_buf(), &cfg).unwrap();
        let mut left: Vec<String> = fs::read_dir(&ckps)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["current.safetensors"]);
    }

    /// The folder's own count goes 1, 2; Slurm's count wins when given; starts always grow.
    #[test]
    fn restarts_are_counted_by_the_folder_or_taken_from_slurm() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::default();
        let run = RunDir::open(dir.path().to_path_buf(), &cfg).unwrap();
        assert_eq!(read_restarts(dir.path()), None);
        assert_eq!(run.record_restart(None).unwrap().count, 1);
        let second = run.record_restart(None).unwrap();
        assert_eq!((second.count, second.starts), (2, 3));
        let slurm = run.record_restart(Some((1, "17".into()))).unwrap();
        assert_eq!(
            slurm,
            Restarts {
                count: 1,
                source: "SLURM_RESTART_COUNT".into(),
                starts: 4,
                slurm_job: Some("17".into())
            }
        );
        assert_eq!(read_restarts(dir.path()), Some(slurm));
    }

    /// A fresh start in a named folder drops the metrics of a run killed before its first
    /// checkpoint, and refuses a folder whose checkpoint it would overwrite.
    #[test]
    fn a_named_folder_starts_afresh_only_without_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::default();
        let root = dir.path().join("run");
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("metrics.jsonl"), "{}\n").unwrap();
        RunDir::create_at(&root, &cfg).unwrap();
        assert_eq!(fs::read_to_string(root.join("metrics.jsonl")).unwrap(), "");
        fs::write(root.join("ckps").join(BEST), "x").unwrap();
        let e = RunDir::create_at(&root, &cfg).unwrap_err().to_string();
        assert!(
            e.contains("model_best.safetensors") && e.contains("run_dir"),
            "{e}"
        );
    }
}
