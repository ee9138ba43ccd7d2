//! What the Methods view asks for, as data, below the UI: the stage-1 backbones a comparison puts
//! side by side ([`Backbone`]: the view's run as `ce`, each other one as a `mislas compare
//! --base NAME`), which finished stage-1 runs can stand beside it ([`base_candidates`]), and
//! what Enter does with the checked methods ([`run_plan`]): the stage-2 runs to train, those in
//! progress, and the `mislas compare` options of the rest — every checked method on every
//! backbone, as `compare --base` and `--trained` take them. Nothing here draws or touches a
//! tensor; the UI turns a [`RunPlan`] into launches, queued runs and a comparison worker.
use super::stage2::{find_trained, last_checkpoint, stage2_plan, Found, Stage2Plan, Trained};
use super::status::{status, FolderFacts, RunStatus};
use crate::compare::cli::{base_label, CompareOptions};
use crate::compare::methods::MethodSpec;
use crate::config::{Config, Stage};
use crate::engine::recipe::catalogue;
use crate::presets::Preset;
use crate::run_dir::RunSummary;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The base name of the view's own run: `mislas compare`'s `--checkpoint`.
pub const PRIMARY: &str = "ce";

/// The saved runs as a front end sees them: every run of `saved/`, what their folders say, and
/// the folders this process writes.
#[derive(Debug, Clone, Copy)]
pub struct Saved<'a> {
    /// Every run in `saved/`.
    pub runs: &'a [RunSummary],
    /// What their folders say.
    pub facts: &'a HashMap<PathBuf, FolderFacts>,
    /// Folders this process writes.
    pub live: &'a [PathBuf],
}

impl Saved<'_> {
    /// How the run in `r` stands now.
    fn status(&self, r: &RunSummary) -> RunStatus {
        let f = self.facts.get(&r.dir).cloned().unwrap_or_default();
        status(r, &f, self.live.contains(&r.dir), SystemTime::now())
    }
}

/// A finished stage-1 run compared as a base: its name in the comparison, its folder, its
/// configuration, the checkpoint scored and trained from, and how each trained method's
/// stage-2 run on it would be configured.
#[derive(Debug, Clone)]
pub struct Backbone {
    /// Its base name: [`PRIMARY`] for the view's run, else a word of its stage-1 loss
    /// ([`base_name`]).
    pub name: String,
    /// Its run folder.
    pub dir: PathBuf,
    /// Its run's name.
    pub run: String,
    /// Its configuration.
    pub config: Config,
    /// Its last epoch's `current.safetensors`, or `model_best.safetensors` when that is all
    /// it has ([`last_checkpoint`]).
    pub checkpoint: PathBuf,
    /// Each trained method's stage-2 configuration on it, or why there is none.
    pub plans: Vec<(Trained, Result<Stage2Plan, String>)>,
}

impl Backbone {
    /// The run `r` as base `name`, its trained methods configured from `presets`; `None`
    /// when it has no readable configuration or no checkpoint.
    pub fn new(name: &str, r: &RunSummary, presets: &[Preset]) -> Option<Self> {
        let (config, checkpoint) = (r.config.clone()?, last_checkpoint(r)?);
        let plans = catalogue::classifier_stages()
            .map(|t| (t, stage2_plan(t, &config, &checkpoint, presets)))
            .collect();
        Some(Backbone {
            name: name.to_owned(),
            dir: r.dir.clone(),
            run: r.name.clone(),
            config,
            checkpoint,
            plans,
        })
    }

    /// The stage-2 plan of a trained method on it.
    pub fn plan_of(&self, t: Trained) -> Option<&Result<Stage2Plan, String>> {
        self.plans.iter().find(|(m, _)| *m == t).map(|(_, p)| p)
    }

    /// The base name of trained method `t` on this backbone in the comparison: the method's
    /// name (`mislas`) on [`PRIMARY`], `mislas-NAME` on another backbone (`compare` labels it
    /// `MiSLAS on Balanced Softmax` from its run folder).
    pub fn trained_name(&self, t: Trained) -> String {
        if self.name == PRIMARY {
            t.name.to_owned()
        } else {
            format!("{}-{}", t.name, self.name)
        }
    }

    /// The label of its stage-1 loss: `CE (stage 1)`, `Balanced Softmax`.
    pub fn label(&self) -> &'static str {
        catalogue::of_stage1(&self.config).label
    }

    /// `spec` (written on `ce`) on this backbone: `ce+ts` → `balanced_softmax+ts`.
    pub fn method(&self, spec: &MethodSpec) -> MethodSpec {
        MethodSpec {
            base: self.name.clone(),
            steps: spec.steps.clone(),
        }
    }
}

/// The base name of a new backbone of configuration `c` beside the backbones named `taken`:
/// the catalogue name of its stage-1 loss (`balanced_softmax`, `ldam`, …), followed by 2, 3,
/// … when that is taken (`ce2`: `ce` is the view's own run). A word `mislas compare` takes
/// as a base name (no `+`, `,`, `=` or space).
pub fn base_name(c: &Config, taken: &[&str]) -> String {
    let word = catalogue::of_stage1(c).name;
    if !taken.contains(&word) {
        return word.to_owned();
    }
    (2..)
        .map(|k| format!("{word}{k}"))
        .find(|w| !taken.contains(&w.as_str()))
        .expect("an unused number")
}

/// The finished stage-1 runs of `saved` that can stand beside the run in `primary` of
/// configuration `config` in one comparison: same data set, imbalance factor, classes and
/// backbone (`mislas compare` checks the same of a `--base` and of a `--trained` run), a
/// checkpoint; in `saved`'s order, `primary` left out.
pub fn base_candidates<'a>(
    primary: &Path,
    config: &Config,
    saved: &Saved<'a>,
) -> Vec<&'a RunSummary> {
    let same_data = |c: &Config| {
        (c.dataset, c.imb_factor, c.num_classes, &c.backbone)
            == (
                config.dataset,
                config.imb_factor,
                config.num_classes,
                &config.backbone,
            )
    };
    saved
        .runs
        .iter()
        .filter(|r| r.dir != primary)
        .filter(|r| {
            r.config
                .as_ref()
                .is_some_and(|c| c.stage() == Stage::Stage1 && same_data(c))
        })
        .filter(|r| last_checkpoint(r).is_some() && saved.status(r) == RunStatus::Finished)
        .collect()
}

/// What Enter does with the checked methods.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    /// Trained methods to train: their stage-2 configurations (one per backbone that has no
    /// run of it).
    pub train: Vec<(Trained, Config)>,
    /// Trained methods whose run is in progress: compared once it has finished.
    pub training: Vec<Trained>,
    /// The comparison of the rest, when there is any.
    pub compare: Option<CompareOptions>,
    /// Trained methods that cannot be configured: why.
    pub errors: Vec<String>,
}

/// What Enter does with the checked `post_hoc` methods (written on `ce`) and `trained` methods
/// on `backbones` (the view's run first, as [`PRIMARY`]): each post-hoc method on every
/// backbone, grouped by method (`ce+ts`, `balanced_softmax+ts`, …: the backbones side by side);
/// each trained method compared where its stage-2 run from that backbone's checkpoint has
/// finished, waited for where one is in progress, and trained where there is none. The
/// comparison scores the view's run's checkpoint as `ce` with every other backbone a `--base`,
/// into `compare`'s own new folder of the view's run.
pub fn run_plan(
    backbones: &[Backbone],
    post_hoc: &[MethodSpec],
    trained: &[Trained],
    saved: &Saved<'_>,
) -> RunPlan {
    let mut plan = RunPlan::default();
    let Some(primary) = backbones.first() else {
        return plan;
    };
    let mut methods: Vec<MethodSpec> = post_hoc
        .iter()
        .flat_map(|spec| backbones.iter().map(|b| b.method(spec)))
        .collect();
    let mut trained_bases = Vec::new();
    for &t in trained {
        for b in backbones {
            match find_trained(t, &b.checkpoint, saved.runs, saved.facts, saved.live) {
                Found::Finished { checkpoint, .. } => {
                    let name = b.trained_name(t);
                    methods.push(MethodSpec {
                        base: name.clone(),
                        steps: Vec::new(),
                    });
                    trained_bases.push((name, checkpoint));
                }
                Found::Training(_) => plan.training.push(t),
                Found::Missing => match b.plan_of(t) {
                    Some(Ok(p)) => plan.train.push((t, p.config.clone())),
                    Some(Err(e)) => plan.errors.push(match b.name.as_str() {
                        PRIMARY => format!("{}: {e}", base_label(t.name)),
                        _ => format!("{} on {}: {e}", base_label(t.name), b.run),
                    }),
                    None => {}
                },
            }
        }
    }
    if !methods.is_empty() {
        let mut cfg = primary.config.clone();
        cfg.resume = primary.checkpoint.display().to_string();
        let mut opts = CompareOptions::new(cfg);
        opts.trained = trained_bases;
        // Every backbone, used or not: `compare` loads only the bases some method uses, and
        // labels a trained base by the backbone it started from when there are several.
        opts.bases = backbones[1..]
            .iter()
            .map(|b| (b.name.clone(), b.checkpoint.clone()))
            .collect();
        opts.methods = methods;
        // compare's default: a new `<run>/compare/<YYYYMMDD-HHMMSS>/` of this run.
        opts.out = None;
        plan.compare = Some(opts);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StageOneLossName;

    /// A backbone is named by its stage-1 loss; a name taken gets the next free number.
    #[test]
    fn a_backbone_is_named_by_its_loss_and_numbered_when_taken() {
        let ce = Config::default();
        assert_eq!(ce.loss, StageOneLossName::Ce);
        assert_eq!(base_name(&ce, &[PRIMARY]), "ce2");
        assert_eq!(base_name(&ce, &[PRIMARY, "ce2", "ldam"]), "ce3");
        let bs = Config {
            loss: StageOneLossName::BalancedSoftmax,
            ..Config::default()
        };
        assert_eq!(base_name(&bs, &[PRIMARY]), "balanced_softmax");
        assert_eq!(
            base_name(&bs, &[PRIMARY, "balanced_softmax"]),
            "balanced_softmax2"
        );
        for name in [base_name(&ce, &[PRIMARY]), base_name(&bs, &[])] {
            assert!(!name.contains(['+', ',', '=', ' ']), "{name}");
        }
    }
}
