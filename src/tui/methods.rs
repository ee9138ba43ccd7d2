//! The Methods view of the runs screen (`m` on a finished stage-1 run): a checklist of the
//! methods of `mislas compare` — post-hoc ones on the run's last checkpoint
//! (`ckps/current.safetensors`, as `mislas compare` and the README's protocol use: no epoch
//! picked on the test set it scores; `model_best` only when the run has nothing else), and the
//! trained classifier-stage ones, each marked with the finished stage-2 run from that checkpoint when
//! there is one — and, once run, their table with 95 % intervals and an overlaid reliability
//! diagram (drawn by [`super::methods_view`]).
//!
//! Enter runs the checked methods: a trained one without a finished run becomes a stage-2 run,
//! started by the app's own launch (or queued behind a run in progress), so the run screen and
//! the queue show it; the others go to [`crate::compare::cli::run`] on a worker thread of the
//! loop, which answers with [`CompareMsg`]s. Nothing here touches a tensor.
use super::keys::{lookup, Binding, NAV_CODES, NAV_KEYS};
use super::run_status::{status, FolderFacts, RunStatus};
use crate::compare::cli::{base_label, CompareOptions};
use crate::compare::methods::MethodSpec;
use crate::compare::report::Comparison;
use crate::config::{is_shared_key, Config, Stage};
use crate::engine::recipe::catalogue::{self, Builds, Method};
use crate::presets::Preset;
use crate::run_dir::RunSummary;
use crossterm::event::{KeyCode, KeyEvent};
use serde_yaml::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Optional post-hoc methods the checklist offers beyond `mislas compare`'s default set.
const OPTIONAL_POST_HOC: &[&str] = &["ce+vs"];

/// Checked when the view opens.
const CHECKED_AT_FIRST: &[&str] = &["ce", "ce+ts"];

/// Progress lines kept.
const LOG_LINES: usize = 200;

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

/// A trained classifier-stage method, ablations included: a stage-2 run on the stage-1
/// checkpoint, as the method catalogue's row describes it.
pub type Trained = &'static Method;

/// A line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A post-hoc method on the stage-1 checkpoint.
    PostHoc(MethodSpec),
    /// A trained classifier-stage method.
    Trained(Trained),
}

impl Item {
    /// The name in the checklist: `CE + τ-norm + TS`, `cRT`, `MiSLAS w/o LAS`.
    pub fn label(&self) -> String {
        match self {
            Item::PostHoc(spec) => spec.label("CE"),
            Item::Trained(t) => base_label(t.name),
        }
    }
}

/// The checklist: `mislas compare`'s default post-hoc methods on the stage-1 checkpoint, the
/// optional ones, then the trained ones.
pub fn items() -> Vec<Item> {
    crate::compare::cli::default_methods(&[])
        .into_iter()
        .chain(
            OPTIONAL_POST_HOC
                .iter()
                .filter_map(|s| MethodSpec::parse(s).ok()),
        )
        .map(Item::PostHoc)
        .chain(catalogue::classifier_stages().map(Item::Trained))
        .collect()
}

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

/// What the comparison worker says.
#[derive(Debug, Clone)]
pub enum CompareMsg {
    /// A progress line.
    Line(String),
    /// How far the backbone pass is.
    Progress(crate::compare::cache::PassProgress),
    /// The comparison and its output folder.
    Done(Box<Comparison>, PathBuf),
    /// Why it failed, in words.
    Failed(String),
}

/// Which half of the view is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The methods to run.
    Checklist,
    /// The last comparison's table and diagram.
    Results,
}

/// The comparison's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Not run yet (or its result is shown).
    Idle,
    /// Running on the worker thread.
    Running,
    /// Failed: why.
    Failed(String),
}

/// What a key of the Methods view does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodsKey {
    /// Check or uncheck a method; in the results, show or hide its curve.
    Toggle,
    /// Run the checked methods.
    Run,
    /// Switch between the checklist and the results.
    Page,
    /// Check every post-hoc method, or none.
    All,
    /// Move.
    Move,
    /// Cancel the comparison in progress.
    Cancel,
    /// Back to the runs.
    Back,
}

/// Keys of the Methods view, most used first.
pub const KEYS: &[Binding<MethodsKey>] = &[
    Binding::new(
        &[KeyCode::Char(' ')],
        "Space",
        MethodsKey::Toggle,
        "check",
        "check a method; in the results, show or hide its curve",
    ),
    Binding::new(
        &[KeyCode::Enter],
        "Enter",
        MethodsKey::Run,
        "run",
        "run the checked: post-hoc now, trained as stage-2 runs",
    ),
    Binding::new(
        &[KeyCode::Tab],
        "Tab",
        MethodsKey::Page,
        "results",
        "switch between the checklist and the results table",
    ),
    Binding::new(
        &[KeyCode::Char('a')],
        "a",
        MethodsKey::All,
        "all",
        "check every post-hoc method, or none",
    ),
    Binding::new(
        &[KeyCode::Char('x')],
        "x",
        MethodsKey::Cancel,
        "cancel",
        "cancel the comparison in progress",
    ),
    Binding::new(
        NAV_CODES,
        NAV_KEYS,
        MethodsKey::Move,
        "move",
        "move between methods",
    ),
    Binding::new(
        &[KeyCode::Esc, KeyCode::Backspace, KeyCode::Left],
        "Esc/←",
        MethodsKey::Back,
        "back",
        "back to the runs (a comparison goes on)",
    ),
];

/// What a key of the Methods view asks of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodsAction {
    /// Nothing beyond the view's own state.
    None,
    /// Back to the runs.
    Back,
    /// Run the checked methods.
    Run,
    /// Cancel the comparison in progress.
    Cancel,
}

/// The state of the Methods view of one stage-1 run.
#[derive(Debug, Clone)]
pub struct MethodsScreen {
    /// The stage-1 run folder.
    pub dir: PathBuf,
    /// Its name.
    pub name: String,
    /// Its configuration.
    pub config: Config,
    /// The checkpoint compared and trained from: its last epoch's `current.safetensors`, or
    /// its `model_best.safetensors` when that is all it has ([`last_checkpoint`]).
    pub checkpoint: PathBuf,
    /// The checklist.
    pub items: Vec<Item>,
    /// Which are checked.
    pub checked: Vec<bool>,
    /// The checklist's cursor.
    pub cursor: usize,
    /// How each trained method's run would be configured.
    pub plans: Vec<(Trained, Result<Stage2Plan, String>)>,
    /// The page shown.
    pub page: Page,
    /// The comparison's state.
    pub job: Job,
    /// Its progress lines.
    pub log: Vec<String>,
    /// How far its backbone pass is, while one runs.
    pub progress: Option<crate::compare::cache::PassProgress>,
    /// The last comparison and its output folder.
    pub result: Option<(Comparison, PathBuf)>,
    /// The selected row of the results.
    pub row: usize,
    /// Which rows the diagram shows.
    pub shown: Vec<bool>,
    /// Whether Esc goes back to the run's detail (else to the list).
    pub from_detail: bool,
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

/// Why `r` has no Methods view, in words; `None` when it has one.
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

impl MethodsScreen {
    /// The view of the finished stage-1 run `r` (see [`unavailable`]), its trained methods
    /// configured from `presets`.
    ///
    /// # Errors
    /// Why the run has no Methods view.
    pub fn open(r: &RunSummary, st: RunStatus, presets: &[Preset]) -> Result<Self, String> {
        if let Some(why) = unavailable(r, st) {
            return Err(why);
        }
        let (Some(config), Some(checkpoint)) = (r.config.clone(), last_checkpoint(r)) else {
            return Err(format!("{}: no configuration or checkpoint", r.name));
        };
        let items = items();
        let checked = items
            .iter()
            .map(|i| matches!(i, Item::PostHoc(s) if CHECKED_AT_FIRST.contains(&spec_text(s).as_str())))
            .collect();
        let plans = catalogue::classifier_stages()
            .map(|t| (t, stage2_plan(t, &config, &checkpoint, presets)))
            .collect();
        let result = latest_comparison(&r.dir);
        let shown = result.as_ref().map_or_else(Vec::new, |(c, _)| {
            (0..c.rows.len())
                .map(|i| i < super::methods_view::PALETTE.len())
                .collect()
        });
        Ok(MethodsScreen {
            dir: r.dir.clone(),
            name: r.name.clone(),
            config,
            checkpoint,
            items,
            checked,
            cursor: 0,
            plans,
            page: Page::Checklist,
            job: Job::Idle,
            log: Vec::new(),
            progress: None,
            result,
            row: 0,
            shown,
            from_detail: false,
        })
    }

    /// The stage-2 plan of a trained method.
    pub fn plan_of(&self, t: Trained) -> Option<&Result<Stage2Plan, String>> {
        self.plans.iter().find(|(m, _)| *m == t).map(|(_, p)| p)
    }

    /// Handles a key: dispatches through [`KEYS`].
    pub fn on_key(&mut self, key: KeyEvent) -> MethodsAction {
        let Some(action) = lookup(KEYS, &key) else {
            return MethodsAction::None;
        };
        let results = self.page == Page::Results && self.result.is_some();
        match action {
            MethodsKey::Back => return MethodsAction::Back,
            MethodsKey::Run => return MethodsAction::Run,
            MethodsKey::Cancel if self.job == Job::Running => return MethodsAction::Cancel,
            MethodsKey::Cancel => {}
            MethodsKey::Page if self.result.is_some() => {
                self.page = match self.page {
                    Page::Checklist => Page::Results,
                    Page::Results => Page::Checklist,
                };
            }
            MethodsKey::Page => {}
            MethodsKey::Move if results => {
                super::list_nav::navigate(&mut self.row, self.shown.len(), key.code);
            }
            MethodsKey::Move => {
                super::list_nav::navigate(&mut self.cursor, self.items.len(), key.code);
            }
            MethodsKey::Toggle if results => {
                if let Some(s) = self.shown.get_mut(self.row) {
                    *s = !*s;
                }
            }
            MethodsKey::Toggle => {
                if let Some(c) = self.checked.get_mut(self.cursor) {
                    *c = !*c;
                }
            }
            MethodsKey::All => {
                let post_hoc = |i: &Item| matches!(i, Item::PostHoc(_));
                let all = self
                    .items
                    .iter()
                    .zip(&self.checked)
                    .all(|(i, &c)| c || !post_hoc(i));
                for (i, c) in self.items.iter().zip(self.checked.iter_mut()) {
                    if post_hoc(i) {
                        *c = !all;
                    }
                }
            }
        }
        MethodsAction::None
    }

    /// Whether a trained method of the checklist has a run in progress.
    pub fn waiting(
        &self,
        runs: &[RunSummary],
        facts: &HashMap<PathBuf, FolderFacts>,
        live: &[PathBuf],
    ) -> bool {
        catalogue::classifier_stages().any(|t| {
            matches!(
                find_trained(t, &self.checkpoint, runs, facts, live),
                Found::Training(_)
            )
        })
    }

    /// The checked items.
    pub fn checked_items(&self) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .zip(&self.checked)
            .filter(|(_, &c)| c)
            .map(|(i, _)| i)
    }

    /// Applies a message of the comparison worker.
    pub fn on_compare(&mut self, msg: CompareMsg) {
        match msg {
            CompareMsg::Line(l) => {
                self.log.push(l);
                let extra = self.log.len().saturating_sub(LOG_LINES);
                self.log.drain(..extra);
            }
            CompareMsg::Progress(p) => self.progress = Some(p),
            CompareMsg::Done(c, out) => {
                self.progress = None;
                self.shown = (0..c.rows.len())
                    .map(|i| i < super::methods_view::PALETTE.len())
                    .collect();
                self.row = 0;
                self.result = Some((*c, out));
                self.page = Page::Results;
                self.job = Job::Idle;
            }
            CompareMsg::Failed(why) => {
                self.progress = None;
                self.job = Job::Failed(why);
            }
        }
    }
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

/// `ce+tau-norm+ts`: a method as `mislas compare` writes it.
pub fn spec_text(s: &MethodSpec) -> String {
    std::iter::once(s.base.as_str())
        .chain(s.steps.iter().map(|st| st.word()))
        .collect::<Vec<_>>()
        .join("+")
}

/// What Enter does with the checked methods.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    /// Trained methods to train: their stage-2 configurations.
    pub train: Vec<(Trained, Config)>,
    /// Trained methods whose run is in progress: compared once it has finished.
    pub training: Vec<Trained>,
    /// The comparison of the rest, when there is any.
    pub compare: Option<CompareOptions>,
    /// Trained methods that cannot be configured: why.
    pub errors: Vec<String>,
}

impl MethodsScreen {
    /// What Enter does, given the saved runs and their facts, and the folders this process
    /// writes.
    pub fn run_plan(
        &self,
        runs: &[RunSummary],
        facts: &HashMap<PathBuf, FolderFacts>,
        live: &[PathBuf],
    ) -> RunPlan {
        let mut plan = RunPlan::default();
        let (mut methods, mut trained) = (Vec::new(), Vec::new());
        for item in self.checked_items() {
            let t = match item {
                Item::PostHoc(spec) => {
                    methods.push(spec.clone());
                    continue;
                }
                Item::Trained(t) => *t,
            };
            match find_trained(t, &self.checkpoint, runs, facts, live) {
                Found::Finished { checkpoint, .. } => {
                    trained.push((t.name.to_owned(), checkpoint));
                    methods.push(MethodSpec {
                        base: t.name.to_owned(),
                        steps: Vec::new(),
                    });
                }
                Found::Training(_) => plan.training.push(t),
                Found::Missing => match self.plan_of(t) {
                    Some(Ok(p)) => plan.train.push((t, p.config.clone())),
                    Some(Err(e)) => plan.errors.push(format!("{}: {e}", base_label(t.name))),
                    None => {}
                },
            }
        }
        if !methods.is_empty() {
            let mut cfg = self.config.clone();
            cfg.resume = self.checkpoint.display().to_string();
            let mut opts = CompareOptions::new(cfg);
            opts.trained = trained;
            opts.methods = methods;
            // compare's default: a new `<run>/compare/<YYYYMMDD-HHMMSS>/` of this run.
            opts.out = None;
            plan.compare = Some(opts);
        }
        plan
    }
}
