//! The Methods screen (`m` on a finished stage-1 run of the runs screen, then `5`): a checklist of the
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
//! loop, which answers with [`CompareMsg`]s. On the results page `p` picks the table's test
//! prior among the shifted sets the comparison scored ([`crate::compare::test_priors`]), and
//! the charts draw top-1 and ECE against the test prior. Which stage-2 runs train which method
//! and how a missing one would be configured is not UI logic: it lives in
//! [`crate::runs::stage2`].
//!
//! Several backbones side by side: under the checklist, the other finished stage-1 runs of the
//! same data ([`crate::runs::plan::base_candidates`]) are offered; Space on one adds it as a
//! base (`mislas compare --base NAME=…`, NAME a word of its loss), Space again removes it. Enter
//! then runs every checked method on every backbone — post-hoc ones on each checkpoint,
//! trained ones compared where that backbone has their stage-2 run, trained where it has none —
//! in one comparison with the same splits and resamples, the table's rows grouped by method.
//! What Enter does is [`crate::runs::plan::run_plan`]'s [`RunPlan`]. Nothing here touches a
//! tensor.
use super::keys::{lookup, Binding, NAV_CODES, NAV_KEYS};
use crate::compare::cli::base_label;
use crate::compare::methods::MethodSpec;
use crate::compare::report::Comparison;
use crate::compare::test_priors::{PriorFigures, TestPriorComparison};
use crate::engine::recipe::catalogue;
use crate::presets::Preset;
use crate::run_dir::RunSummary;
pub use crate::runs::plan::{base_candidates, base_name, Backbone, RunPlan, Saved, PRIMARY};
pub use crate::runs::stage2::{
    find_trained, last_checkpoint, latest_comparison, stage2_plan, test_priors_of, unavailable,
    Found, Stage2Plan, Trained,
};
use crate::runs::status::{FolderFacts, RunStatus};
use crossterm::event::{KeyCode, KeyEvent};
use std::collections::HashMap;
use std::path::PathBuf;

/// Optional post-hoc methods the checklist offers beyond `mislas compare`'s default set.
const OPTIONAL_POST_HOC: &[&str] = &["ce+vs"];

/// Checked when the view opens.
const CHECKED_AT_FIRST: &[&str] = &["ce", "ce+ts"];

/// Progress lines kept.
const LOG_LINES: usize = 200;

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
    /// Check or uncheck a method, or add or remove an offered stage-1 run as a backbone; in the
    /// results, show or hide a row's curve.
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
    /// The test prior the table shows: the scored split, then each shifted set.
    Prior,
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
        "check a method, or add/remove a stage-1 run as a backbone beside this one; in the \
         results, show or hide a row's curve",
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
        &[KeyCode::Char('p')],
        "p",
        MethodsKey::Prior,
        "prior",
        "results: the table's test prior (scored split, forward50 … uniform … backward50)",
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
    /// The backbones compared: this run first (as [`PRIMARY`]: its configuration, the
    /// checkpoint compared and trained from — its last epoch's `current.safetensors`, or its
    /// `model_best.safetensors` when that is all it has ([`last_checkpoint`]) —, how each
    /// trained method's run would be configured), then the runs added beside it.
    pub backbones: Vec<Backbone>,
    /// The other finished stage-1 runs of the same data, offered as backbones below the
    /// methods ([`base_candidates`]).
    pub candidates: Vec<RunSummary>,
    /// The presets that configure a trained method on an added backbone.
    pub presets: Vec<Preset>,
    /// The checklist.
    pub items: Vec<Item>,
    /// Which are checked.
    pub checked: Vec<bool>,
    /// The checklist's cursor: an item, then a candidate (`items.len() + i`).
    pub cursor: usize,
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
    /// Its figures on shifted test priors, when it scored any.
    pub priors: Option<TestPriorComparison>,
    /// The shifted set the table shows (an index into `priors.sets`); `None`: the scored split.
    pub prior: Option<usize>,
    /// The selected row of the results.
    pub row: usize,
    /// Which rows the diagram shows.
    pub shown: Vec<bool>,
    /// Whether Esc goes back to the run's detail (else to the list).
    pub from_detail: bool,
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
        let Some(primary) = Backbone::new(PRIMARY, r, presets) else {
            return Err(format!("{}: no configuration or checkpoint", r.name));
        };
        let items = items();
        let checked = items
            .iter()
            .map(|i| matches!(i, Item::PostHoc(s) if CHECKED_AT_FIRST.contains(&spec_text(s).as_str())))
            .collect();
        let result = latest_comparison(&r.dir);
        let priors = result.as_ref().and_then(|(_, out)| test_priors_of(out));
        let shown = result.as_ref().map_or_else(Vec::new, |(c, _)| {
            (0..c.rows.len())
                .map(|i| i < super::methods_view::PALETTE.len())
                .collect()
        });
        Ok(MethodsScreen {
            dir: r.dir.clone(),
            name: r.name.clone(),
            backbones: vec![primary],
            candidates: Vec::new(),
            presets: presets.to_vec(),
            items,
            checked,
            cursor: 0,
            page: Page::Checklist,
            job: Job::Idle,
            log: Vec::new(),
            progress: None,
            result,
            priors,
            prior: None,
            row: 0,
            shown,
            from_detail: false,
        })
    }

    /// This run as a backbone: the checkpoint compared and trained from, its configuration.
    pub fn primary(&self) -> &Backbone {
        &self.backbones[0]
    }

    /// The checkpoint compared and trained from (this run's).
    pub fn checkpoint(&self) -> &std::path::Path {
        &self.primary().checkpoint
    }

    /// The stage-2 plan of a trained method on this run.
    pub fn plan_of(&self, t: Trained) -> Option<&Result<Stage2Plan, String>> {
        self.primary().plan_of(t)
    }

    /// Offers the finished stage-1 runs of `saved` that can stand beside this one
    /// ([`base_candidates`]); a backbone added before stays while its run is offered, and is
    /// dropped (with its place in the checklist) when it is not any more.
    pub fn offer_bases(&mut self, saved: &Saved<'_>) {
        let primary = self.primary();
        self.candidates = base_candidates(&primary.dir, &primary.config, saved)
            .into_iter()
            .cloned()
            .collect();
        let offered: Vec<&PathBuf> = self.candidates.iter().map(|r| &r.dir).collect();
        let primary = self.backbones.remove(0);
        self.backbones.retain(|b| offered.contains(&&b.dir));
        self.backbones.insert(0, primary);
        self.cursor = self.cursor.min(self.lines() - 1);
    }

    /// Lines of the checklist: the methods, then the offered backbones.
    pub fn lines(&self) -> usize {
        self.items.len() + self.candidates.len()
    }

    /// The backbone added from candidate `i`, if it is added.
    pub fn added(&self, i: usize) -> Option<&Backbone> {
        let dir = &self.candidates.get(i)?.dir;
        self.backbones[1..].iter().find(|b| &b.dir == dir)
    }

    /// Space on candidate `i`: adds its run as a backbone (named by [`base_name`]), or removes
    /// it when it is one.
    fn toggle_candidate(&mut self, i: usize) {
        let Some(r) = self.candidates.get(i) else {
            return;
        };
        if let Some(at) = self.backbones.iter().skip(1).position(|b| b.dir == r.dir) {
            self.backbones.remove(at + 1);
            return;
        }
        let taken: Vec<&str> = self.backbones.iter().map(|b| b.name.as_str()).collect();
        let Some(config) = &r.config else { return };
        let name = base_name(config, &taken);
        if let Some(b) = Backbone::new(&name, r, &self.presets) {
            self.backbones.push(b);
        }
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
            MethodsKey::Prior => self.next_prior(),
            MethodsKey::Move if results => {
                super::list_nav::navigate(&mut self.row, self.shown.len(), key.code);
            }
            MethodsKey::Move => {
                let lines = self.lines();
                super::list_nav::navigate(&mut self.cursor, lines, key.code);
            }
            MethodsKey::Toggle if results => {
                if let Some(s) = self.shown.get_mut(self.row) {
                    *s = !*s;
                }
            }
            MethodsKey::Toggle => match self.checked.get_mut(self.cursor) {
                Some(c) => *c = !*c,
                None => self.toggle_candidate(self.cursor - self.items.len()),
            },
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

    /// `p`: the next test prior of the table — the scored split, then each shifted set in the
    /// comparison's order, then the scored split again. Nothing without shifted sets.
    fn next_prior(&mut self) {
        let n = self.priors.as_ref().map_or(0, |p| p.sets.len());
        self.prior = match self.prior {
            _ if n == 0 => None,
            None => Some(0),
            Some(i) if i + 1 < n => Some(i + 1),
            Some(_) => None,
        };
    }

    /// The name of the table's test prior: `forward50`, or `None` for the scored split.
    pub fn prior_name(&self) -> Option<&str> {
        let set = self.priors.as_ref()?.sets.get(self.prior?)?;
        Some(set.set.name.as_str())
    }

    /// The figures of the method written `spec` on the table's shifted set; `None` on the
    /// scored split or when that set did not score it.
    pub fn prior_figures(&self, spec: &str) -> Option<&PriorFigures> {
        let set = self.priors.as_ref()?.sets.get(self.prior?)?;
        set.rows.iter().find(|r| r.spec == spec).map(|r| &r.figures)
    }

    /// Whether a trained method of the checklist has a run in progress.
    pub fn waiting(
        &self,
        runs: &[RunSummary],
        facts: &HashMap<PathBuf, FolderFacts>,
        live: &[PathBuf],
    ) -> bool {
        catalogue::classifier_stages().any(|t| {
            self.backbones.iter().any(|b| {
                matches!(
                    find_trained(t, &b.checkpoint, runs, facts, live),
                    Found::Training(_)
                )
            })
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
                self.priors = test_priors_of(&out);
                self.prior = None;
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

/// `ce+tau-norm+ts`: a method as `mislas compare` writes it.
pub fn spec_text(s: &MethodSpec) -> String {
    std::iter::once(s.base.as_str())
        .chain(s.steps.iter().map(|st| st.word()))
        .collect::<Vec<_>>()
        .join("+")
}

impl MethodsScreen {
    /// What Enter does, given the saved runs and their facts, and the folders this process
    /// writes: [`crate::runs::plan::run_plan`] of the checked methods on every backbone.
    pub fn run_plan(
        &self,
        runs: &[RunSummary],
        facts: &HashMap<PathBuf, FolderFacts>,
        live: &[PathBuf],
    ) -> RunPlan {
        let (mut post_hoc, mut trained) = (Vec::new(), Vec::new());
        for item in self.checked_items() {
            match item {
                Item::PostHoc(spec) => post_hoc.push(spec.clone()),
                Item::Trained(t) => trained.push(*t),
            }
        }
        let saved = Saved { runs, facts, live };
        crate::runs::plan::run_plan(&self.backbones, &post_hoc, &trained, &saved)
    }
}
