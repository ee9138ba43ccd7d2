//! Trained methods of a stage-1 run, beside its run folder: which stage-2 run of `saved/` trains
//! a classifier-stage method from a stage-1 checkpoint ([`find_trained`]), the stage-2
//! configuration that would train it ([`stage2_plan`]), the checkpoint a comparison of a run
//! scores ([`last_checkpoint`]) and the newest comparison written for it
//! ([`latest_comparison`]). The Methods view of the UI, `compare` and the queue read them; nothing
//! here draws or touches a tensor.
use super::status::{status, FolderFacts, RunStatus};
use crate::compare::report::Comparison;
use crate::compare::test_priors::TestPriorComparison;
use crate::config::{is_shared_key, Config, Stage};
use crate::engine::recipe::catalogue::{Builds, Method};
use crate::presets::Preset;
use crate::run_dir::RunSummary;
use serde_yaml::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A trained classifier-stage method, ablations included: a stage-2 run on the stage-1
/// checkpoint, as the method catalogue's row describes it.
pub type Trained = &'static Method;

/// Keys besides the shared ones that a stage-2 run takes from its stage-1 run: the data and
/// what suits this machine.
const DATA_KEYS: &[&str] = &[
    "train_list",
    "test_list",
    "image_size",
    "eval_resize",
    "on_bad_image",
    "workers",
];

/// The stage-2 run of a trained method from this checkpoint, as the saved runs show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A finished run and the checkpoint a comparison scores.
    Finished {
        /// Its folder.
        dir: PathBuf,
        /// Its last epoch's `current.safetensors` (no epoch picked on the test images that
        /// the comparison scores), or its `model_best.safetensors` when that is all it has.
        checkpoint: PathBuf,
    },
    /// A run in progress (no finished one yet).
    Training(PathBuf),
    /// None: Enter trains it.
    Missing,
}

/// Whether `resume` (as a configuration holds it) is a checkpoint of the same run as
/// `checkpoint`: the same file, or another file of the same `ckps/` folder (a stage 2 started
/// from the run's `current.safetensors` as well as from its `model_best`).
fn same_run(resume: &str, checkpoint: &Path) -> bool {
    if resume.is_empty() {
        return false;
    }
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (r, c) = (canonical(Path::new(resume)), canonical(checkpoint));
    r == c || (r.parent().is_some() && r.parent() == c.parent())
}

/// The newest finished run of `method` whose `resume` is `checkpoint`, else one in progress;
/// `live` are the folders this process writes.
pub fn find_trained(
    method: Trained,
    checkpoint: &Path,
    runs: &[RunSummary],
    facts: &HashMap<PathBuf, FolderFacts>,
    live: &[PathBuf],
) -> Found {
    let mut found = Found::Missing;
    for r in runs {
        let Some(c) = &r.config else { continue };
        if Method::of_config(c) != Some(method) || !same_run(&c.resume, checkpoint) {
            continue;
        }
        let f = facts.get(&r.dir).cloned().unwrap_or_default();
        match (
            status(r, &f, live.contains(&r.dir), SystemTime::now()),
            &r.best_checkpoint,
        ) {
            (RunStatus::Finished, Some(best)) => {
                let current = best.with_file_name(crate::run_dir::CURRENT);
                return Found::Finished {
                    dir: r.dir.clone(),
                    checkpoint: if current.is_file() {
                        current
                    } else {
                        best.clone()
                    },
                };
            }
            (RunStatus::Live | RunStatus::Writing, _) if found == Found::Missing => {
                found = Found::Training(r.dir.clone());
            }
            _ => {}
        }
    }
    found
}

/// How a trained method's stage-2 run would be configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage2Plan {
    /// The configuration (`resume` is the stage-1 checkpoint).
    pub config: Config,
    /// Where it comes from, in words: the preset's file name, or the stage-1 configuration.
    pub from: String,
}

/// The data set's stage-2 preset of `method` (same data set, imbalance and backbone): one
/// that trains it as it is (an ablation preset), else the first of its recipe.
fn stage2_preset(method: Trained, stage1: &Config, presets: &[Preset]) -> Option<(Config, String)> {
    let fitting = presets.iter().filter_map(|p| {
        let c = p.config.as_ref().ok()?;
        let fits = c.stage() == Stage::Stage2
            && c.dataset == stage1.dataset
            && c.imb_factor == stage1.imb_factor
            && c.backbone == stage1.backbone
            && method.builds == Builds::Classifier(c.recipe);
        fits.then_some((c, p))
    });
    let (c, p) = fitting
        .clone()
        .find(|(c, _)| Method::of_config(c) == Some(method))
        .or_else(|| fitting.clone().next())?;
    Some((c.clone(), format!("preset {}", p.name())))
}

/// The stage-1 configuration turned into the reference's stage 2: 10 cosine epochs at lr 0.1
/// on the class-balanced sampler, no mixup.
fn stage2_from_stage1(stage1: &Config) -> Config {
    let mut c = stage1.clone();
    c.mode = Some(Stage::Stage2);
    c.mixup = false;
    c.alpha = None;
    c.num_epochs = 10;
    c.lr = 0.1;
    c.cos = true;
    c.warmup_epochs = None;
    c.smooth_head = Some(0.3);
    c.smooth_tail = Some(0.0);
    c.lr_factor = Some(0.5);
    c
}

/// `into` with the data keys (and the machine's) of `from`.
fn with_data_of(into: &Config, from: &Config) -> Result<Config, String> {
    let map = |c: &Config| match serde_yaml::to_value(c) {
        Ok(Value::Mapping(m)) => Ok(m),
        _ => Err("internal: a configuration is not a mapping".to_owned()),
    };
    let (mut to, source) = (map(into)?, map(from)?);
    for (k, v) in &source {
        let key = k.as_str().unwrap_or_default();
        if is_shared_key(key) || DATA_KEYS.contains(&key) {
            to.insert(k.clone(), v.clone());
        }
    }
    serde_yaml::from_value(Value::Mapping(to)).map_err(|e| format!("internal: {e}"))
}

/// The stage-2 configuration of `method` on `checkpoint`: the data set's stage-2 preset of its
/// recipe when there is one, else the stage-1 configuration turned into stage 2; with the
/// stage-1 run's data keys, `resume` the checkpoint and a name that says the method.
///
/// # Errors
/// The configuration does not validate (its first issue, in words).
pub fn stage2_plan(
    method: Trained,
    stage1: &Config,
    checkpoint: &Path,
    presets: &[Preset],
) -> Result<Stage2Plan, String> {
    let (base, from) = stage2_preset(method, stage1, presets).unwrap_or_else(|| {
        (
            stage2_from_stage1(stage1),
            "the stage-1 configuration (no stage-2 preset of this recipe)".into(),
        )
    });
    let mut config = with_data_of(&base, stage1)?;
    config.name = format!("{}_{}", stage1.name, method.name);
    config.resume = checkpoint.display().to_string();
    method.apply(&mut config);
    if let Some(issue) = config.validate().first() {
        return Err(format!("{}: {}", issue.key, issue.message));
    }
    Ok(Stage2Plan { config, from })
}

/// The checkpoint a comparison of run `r` uses: `<model_dir>/current.safetensors` (its last
/// epoch), else `<model_dir>/model_best.safetensors`; `None` when it has neither.
pub fn last_checkpoint(r: &RunSummary) -> Option<PathBuf> {
    let model_dir = r.config.as_ref().map_or("ckps", |c| c.model_dir.as_str());
    let current = r.dir.join(model_dir).join(crate::run_dir::CURRENT);
    if current.is_file() {
        Some(current)
    } else {
        r.best_checkpoint.clone()
    }
}

/// Why `r` cannot be the base of a comparison (the Methods view), in words; `None` when it can:
/// a finished stage-1 run with a readable configuration and a checkpoint.
pub fn unavailable(r: &RunSummary, st: RunStatus) -> Option<String> {
    let stage = r.config.as_ref().map(Config::stage).or(r.stage);
    Some(match (stage, st, last_checkpoint(r), &r.config) {
        (_, _, _, None) => format!("{}: its config.yaml cannot be read", r.name),
        (Some(Stage::Stage2), ..) => format!(
            "{} is a stage-2 run: m compares methods on a finished stage-1 run",
            r.name
        ),
        (_, s, ..) if s != RunStatus::Finished => format!(
            "{} is not finished ({}): methods need a finished stage-1 run",
            r.name,
            s.label()
        ),
        (_, _, None, _) => format!(
            "{} has no ckps/current.safetensors nor ckps/model_best.safetensors",
            r.name
        ),
        _ => return None,
    })
}

/// The newest comparison written for the run in `dir` (`compare/<YYYYMMDD-HHMMSS>/`, or
/// `compare/` itself as older versions wrote it), read from its `comparison.json`; `None`
/// when there is none or it cannot be read.
pub fn latest_comparison(dir: &Path) -> Option<(Comparison, PathBuf)> {
    let root = dir.join("compare");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("comparison.json").is_file())
        .collect();
    // The stamps sort as times; the folder itself (older layout) comes last.
    folders.sort();
    folders.push(root);
    folders.into_iter().rev().find_map(|f| {
        let text = std::fs::read_to_string(f.join("comparison.json")).ok()?;
        let c = serde_json::from_str::<Comparison>(&text).ok()?;
        Some((c, f))
    })
}

/// The shifted-test-prior figures a comparison wrote beside its table (`<out>/test_priors.json`,
/// [`crate::compare::test_priors`]); `None` when it scored none or the file cannot be read.
pub fn test_priors_of(out: &Path) -> Option<TestPriorComparison> {
    let text = std::fs::read_to_string(out.join("test_priors.json")).ok()?;
    serde_json::from_str::<TestPriorComparison>(&text)
        .ok()
        .filter(|t| !t.sets.is_empty())
}
