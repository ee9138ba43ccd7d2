//! The runs screen: the run folders in `saved/` with their final and best figures; one opened
//! shows its curves, last reliability diagram and per-class accuracy from `metrics.jsonl`,
//! re-read every second so that a run a headless `mislas train` is writing is followed live;
//! two can be compared side by side. Each run shows its state (live, finished, stopped, failed);
//! a stopped or failed one with a current checkpoint can be resumed from here; a finished
//! stage-1 one opens the Methods screen ([`super::methods`]). The runs and their metrics are
//! read on the loader thread ([`super::loader`]); the list says "loading…" until they come.
use super::keys::{lookup, Binding, NAV_CODES};
use super::run::{class_bars, draw_classes, epoch_curves, EpochCurves, CLASS_TITLE};
use super::theme::Theme;
use super::view::panel;
use super::widgets::{Curve, LineChart, Reliability};
use crate::events::EpochReport;
use crate::run_dir::RunSummary;
use crate::runs::status::{status, FolderFacts, RunStatus};
use crate::seeds::{MeanStd, Role};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};
use ratatui::Frame;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What a key of the runs screen does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsKey {
    /// Open the selected run.
    Open,
    /// Resume a stopped, failed or dead run from its current checkpoint (opens the form).
    Resume,
    /// Attach to a live run (its own process): the run screen, replayed from its beginning.
    Attach,
    /// Open the run's configuration as a new run in the form (a new name; not resumed).
    Rerun,
    /// Archive the run's folder to `saved/.archive/`, or delete it (asks first; not a live run).
    Remove,
    /// Hide stopped, failed, killed and unfinished runs from the list, or show them again.
    HideEnded,
    /// Mark the run; on a second run, compare the two.
    Compare,
    /// Read the runs (or the open ones) again.
    Refresh,
    /// Move the selection.
    Move,
    /// Show runs that differ only in seed as groups with mean ± std, or the list again.
    Groups,
    /// Filter the runs by `key=value` terms.
    Filter,
    /// Show the queue, or the list again.
    Queue,
    /// In the queue: hold a queued run, release a held one.
    Hold,
    /// In the queue: remove (cancel) a run that is not running.
    Cancel,
    /// In the queue: move a run to the front.
    First,
    /// On a finished stage-1 run: the Methods view (compare post-hoc and trained methods).
    Methods,
    /// Back to the list; in the list, unmark.
    Back,
}

/// Keys of the runs screen, most used first.
pub const KEYS: &[Binding<RunsKey>] = &[
    Binding::new(
        &[KeyCode::Enter, KeyCode::Right, KeyCode::Char('l')],
        "Enter/→",
        RunsKey::Open,
        "open",
        "open the run: curves, reliability, per-class",
    ),
    Binding::new(
        &[KeyCode::Char('R')],
        "R",
        RunsKey::Resume,
        "resume",
        "resume a stopped, failed or dead run (opens its form)",
    ),
    Binding::new(
        &[KeyCode::Char('a')],
        "a",
        RunsKey::Attach,
        "attach",
        "follow and control a live run on the run screen",
    ),
    Binding::new(
        &[KeyCode::Char('c')],
        "c",
        RunsKey::Compare,
        "compare",
        "mark a run, then c on another compares them",
    ),
    Binding::new(
        &[KeyCode::Char('m')],
        "m",
        RunsKey::Methods,
        "methods",
        "finished stage-1 run: compare methods (table, reliability)",
    ),
    Binding::new(
        &[KeyCode::Char('e')],
        "e",
        RunsKey::Rerun,
        "re-run",
        "re-run with a change: the run's config.yaml as a new run in the form (new name, not resumed)",
    ),
    Binding::new(
        &[KeyCode::Char('g')],
        "g",
        RunsKey::Groups,
        "seeds",
        "group runs that differ only in seed: mean ± std over seeds; Enter lists a group's runs",
    ),
    Binding::new(
        &[KeyCode::Char('/')],
        "/",
        RunsKey::Filter,
        "filter",
        "show only runs whose configuration has key=value (Enter applies, Esc clears)",
    ),
    Binding::new(
        &[KeyCode::Char('Q')],
        "Q",
        RunsKey::Queue,
        "queue",
        "the queue (mislas queue run starts it): Space holds, x cancels, t to the front",
    ),
    Binding::new(
        &[KeyCode::Char('d')],
        "d",
        RunsKey::Remove,
        "archive",
        "archive the run to saved/.archive/ (y), or delete it for good (D, asked again); \
         its queue entry goes too; a live run is refused",
    ),
    Binding::new(
        &[KeyCode::Char('H')],
        "H",
        RunsKey::HideEnded,
        "hide ended",
        "hide stopped, failed, killed and unfinished runs from the list, or show them again",
    ),
    Binding::new(
        &[KeyCode::Char(' ')],
        "Space",
        RunsKey::Hold,
        "hold",
        "in the queue: hold a queued run, release a held one",
    ),
    Binding::new(
        &[KeyCode::Char('x')],
        "x",
        RunsKey::Cancel,
        "cancel",
        "in the queue: remove a run that is not running",
    ),
    Binding::new(
        &[KeyCode::Char('t')],
        "t",
        RunsKey::First,
        "to front",
        "in the queue: move the run to the front",
    ),
    Binding::new(
        &[KeyCode::Char('r')],
        "r",
        RunsKey::Refresh,
        "refresh",
        "read the runs again",
    ),
    Binding::new(
        NAV_CODES,
        // `g` groups seeds here (its row above comes first), so Home goes to the top.
        "↑↓ jk PgUp/Dn Home/End G",
        RunsKey::Move,
        "move",
        "move between runs",
    ),
    Binding::new(
        &[
            KeyCode::Esc,
            KeyCode::Backspace,
            KeyCode::Left,
            KeyCode::Char('h'),
        ],
        "Esc/←",
        RunsKey::Back,
        "back",
        "back to the list; in the list, unmark (Esc, nothing marked: clear the filter)",
    ),
];

/// What the runs screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunsView {
    /// The list.
    #[default]
    List,
    /// One run.
    Detail(PathBuf),
    /// Two runs side by side.
    Compare(PathBuf, PathBuf),
    /// Runs that differ only in seed, grouped ([`crate::seeds::group_by_seed`]).
    Groups,
    /// The runs and seeds of the `n`-th seed group.
    Group(usize),
    /// The queue.
    Queue,
}

/// State of the runs screen.
#[derive(Debug, Clone, Default)]
pub struct RunsScreen {
    /// The runs, newest first.
    pub runs: Vec<RunSummary>,
    /// The selected run.
    pub selected: usize,
    /// The run marked for comparison.
    pub marked: Option<PathBuf>,
    /// What is shown.
    pub view: RunsView,
    /// What each run's folder says beyond its metrics.
    pub facts: HashMap<PathBuf, FolderFacts>,
    /// Every run in `saved/` (`runs` holds those the filter keeps).
    pub all_runs: Vec<RunSummary>,
    /// The `key=value` filter applied.
    pub filter: String,
    /// The filter being typed (`/`), when it is.
    pub filter_input: Option<String>,
    /// The queue, as last read.
    pub queue: Vec<crate::queue::Job>,
    /// The selected row of the queue.
    pub queue_selected: usize,
    /// The selected seed group.
    pub group_selected: usize,
    /// Whether the runs are being read (the loader thread answers).
    pub loading: bool,
    /// Whether the queue is being read.
    pub queue_loading: bool,
    /// Whether stopped, failed, killed and unfinished runs are hidden from the list (`H`).
    pub hide_ended: bool,
    /// How many runs the filter keeps that `hide_ended` hides.
    pub hidden: usize,
    /// Ticks while the queue view was shown (it reads the queue every few).
    pub queue_ticks: u32,
    /// Whether the queue was read once (a read after that is not "loading…").
    pub queue_read: bool,
    /// When the queue was last read: a run that ended since a read older than
    /// [`QUEUE_FRESH`] is not news (the view was not watching), so it does not ring.
    pub queue_read_at: Option<std::time::Instant>,
}

/// How old the previous read of the queue may be for what ended since to be said and rung:
/// a few of the view's 2-second reads.
pub const QUEUE_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// What a key on the runs screen asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsAction {
    /// Nothing beyond the screen's own state.
    None,
    /// List the runs again.
    Refresh,
    /// Read these runs' `metrics.jsonl` again.
    Load(Vec<PathBuf>),
    /// Resume the run in this folder.
    Resume(PathBuf),
    /// Open the configuration of the run in this folder as a new run.
    Rerun(PathBuf),
    /// Archive or delete the run in this folder (the app asks first).
    Remove(PathBuf),
    /// Attach to the live run in this folder.
    Attach(PathBuf),
    /// Show this in the status bar (an error).
    Status(String),
    /// Read the queue.
    LoadQueue,
    /// Change the queue.
    Queue(QueueEdit),
    /// Open the Methods screen of the run in this folder.
    OpenMethods(PathBuf),
}

/// A change to a queued run from the queue view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueEdit {
    /// Hold a queued run, or release a held one.
    ToggleHold(i64),
    /// Remove a run that is not running.
    Remove(i64),
    /// Move a run to the front.
    First(i64),
}

impl RunsScreen {
    /// Replaces the list, keeping the selection on the same folder.
    pub fn set_runs(&mut self, runs: Vec<RunSummary>) {
        self.all_runs = runs;
        self.apply_filter();
    }

    /// `runs`: those of `all_runs` the filter keeps (all of them when it is not usable), less
    /// the ended ones when `hide_ended` ([`is_debris`]).
    fn apply_filter(&mut self) {
        let current = self.runs.get(self.selected).map(|r| r.dir.clone());
        let filter = self.filter.clone();
        let kept: Vec<RunSummary> = self
            .all_runs
            .iter()
            .filter(|r| {
                filter.trim().is_empty()
                    || r.config
                        .as_ref()
                        .is_some_and(|c| crate::seeds::matches(c, &filter) == Ok(true))
            })
            .cloned()
            .collect();
        let now = SystemTime::now();
        let n = kept.len();
        self.runs = kept
            .into_iter()
            .filter(|r| !(self.hide_ended && is_debris(status(r, &self.facts(&r.dir), false, now))))
            .collect();
        self.hidden = n - self.runs.len();
        self.selected = current
            .and_then(|d| self.runs.iter().position(|r| r.dir == d))
            .unwrap_or(0)
            .min(self.runs.len().saturating_sub(1));
    }

    /// Records what the folders of the runs say.
    pub fn set_facts(&mut self, facts: HashMap<PathBuf, FolderFacts>) {
        self.facts.extend(facts);
        if self.hide_ended {
            self.apply_filter();
        }
    }

    /// What a run's folder says (nothing when it was not read).
    pub fn facts(&self, dir: &Path) -> FolderFacts {
        self.facts.get(dir).cloned().unwrap_or_default()
    }

    /// The state of the run in `dir`, given the folders this process is writing.
    pub fn status(&self, dir: &Path, live: &[PathBuf]) -> Option<RunStatus> {
        let r = self.find(dir)?;
        let live = live.iter().any(|d| d == dir);
        Some(status(r, &self.facts(dir), live, SystemTime::now()))
    }

    /// Updates one run's epochs.
    pub fn set_metrics(&mut self, dir: &std::path::Path, epochs: Vec<EpochReport>) {
        for r in self.runs.iter_mut().chain(self.all_runs.iter_mut()) {
            if r.dir == dir {
                r.epochs = epochs.clone();
            }
        }
    }

    /// Replaces the queue's rows, keeping the selection on the same run (`t` moves it to the
    /// front: the cursor follows it), else in range.
    pub fn set_queue(&mut self, jobs: Vec<crate::queue::Job>) {
        let id = self.queue.get(self.queue_selected).map(|j| j.id);
        self.queue = jobs;
        self.queue_read = true;
        self.queue_read_at = Some(std::time::Instant::now());
        self.queue_selected = id
            .and_then(|id| self.queue.iter().position(|j| j.id == id))
            .unwrap_or(self.queue_selected)
            .min(self.queue.len().saturating_sub(1));
    }

    /// A key of the queue view.
    fn on_queue_key(&mut self, action: RunsKey, code: KeyCode) -> RunsAction {
        use QueueEdit as QueueOp;
        let id = self.queue.get(self.queue_selected).map(|j| j.id);
        match (action, id) {
            (RunsKey::Queue | RunsKey::Back, _) => self.view = RunsView::List,
            (RunsKey::Move, _) => {
                super::list_nav::navigate(&mut self.queue_selected, self.queue.len(), code);
            }
            (RunsKey::Refresh, _) => return RunsAction::LoadQueue,
            (RunsKey::Hold, Some(id)) => return RunsAction::Queue(QueueOp::ToggleHold(id)),
            (RunsKey::Cancel, Some(id)) => return RunsAction::Queue(QueueOp::Remove(id)),
            (RunsKey::First, Some(id)) => return RunsAction::Queue(QueueOp::First(id)),
            _ => {}
        }
        RunsAction::None
    }

    /// A key of the seed groups (`Group(i)`: one group's runs): ↑↓ select a group, Enter
    /// lists its runs, Esc goes back a level, `g` back to the list.
    fn on_groups_key(&mut self, action: RunsKey, code: KeyCode) -> RunsAction {
        let groups = crate::seeds::group_by_seed(&self.runs).len();
        self.group_selected = self.group_selected.min(groups.saturating_sub(1));
        match (action, &self.view) {
            (RunsKey::Groups, _) | (RunsKey::Back, RunsView::Groups) => self.view = RunsView::List,
            (RunsKey::Back, _) => self.view = RunsView::Groups,
            (RunsKey::Refresh, _) => return RunsAction::Refresh,
            (RunsKey::Move, RunsView::Groups) => {
                super::list_nav::navigate(&mut self.group_selected, groups, code);
            }
            (RunsKey::Open, RunsView::Groups) if groups > 0 => {
                self.view = RunsView::Group(self.group_selected);
            }
            _ => {}
        }
        RunsAction::None
    }

    /// Back in the list: unmark a marked run, else (Esc) clear the filter.
    fn back_in_list(&mut self, code: KeyCode) {
        if self.marked.is_some() {
            self.marked = None;
        } else if code == KeyCode::Esc {
            self.filter.clear();
            self.apply_filter();
        }
    }

    /// Whether the filter is being typed (keys are text then).
    pub fn is_typing(&self) -> bool {
        self.filter_input.is_some()
    }

    /// A key while the filter is typed: Enter applies it (or says what is wrong with it), Esc
    /// clears it.
    fn on_filter_key(&mut self, key: KeyEvent) -> RunsAction {
        let Some(text) = &mut self.filter_input else {
            return RunsAction::None;
        };
        let ctrl = key
            .modifiers
            .contains(crossterm::event::KeyModifiers::CONTROL);
        match key.code {
            // Ctrl-U clears the line, Ctrl-W its last word (as a shell's line editor); other
            // Ctrl keys type nothing.
            KeyCode::Char('u') if ctrl => text.clear(),
            KeyCode::Char('w') if ctrl => {
                let keep = text.trim_end().rfind(' ').map_or(0, |i| i + 1);
                text.truncate(keep);
            }
            KeyCode::Char(_) if ctrl => {}
            KeyCode::Char(c) => text.push(c),
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Esc => {
                self.filter_input = None;
                self.filter.clear();
                self.apply_filter();
            }
            KeyCode::Enter => {
                let text = self.filter_input.take().unwrap_or_default();
                let probe = crate::config::Config::default();
                if let Err(e) = crate::seeds::matches(&probe, &text) {
                    self.filter_input = Some(text);
                    return RunsAction::Status(format!("filter: {e}"));
                }
                self.filter = text;
                self.selected = 0;
                self.apply_filter();
            }
            _ => {}
        }
        RunsAction::None
    }

    /// The folders on screen, to re-read on each tick.
    pub fn open_dirs(&self) -> Vec<PathBuf> {
        match &self.view {
            RunsView::List | RunsView::Groups | RunsView::Group(_) | RunsView::Queue => Vec::new(),
            RunsView::Detail(d) => vec![d.clone()],
            RunsView::Compare(a, b) => vec![a.clone(), b.clone()],
        }
    }

    /// The run a key acts on: the open one in the detail, the selected one in the list.
    fn target(&self, selected: Option<PathBuf>) -> Option<PathBuf> {
        match &self.view {
            RunsView::Detail(d) => Some(d.clone()),
            RunsView::List => selected,
            RunsView::Compare(..) | RunsView::Groups | RunsView::Group(_) | RunsView::Queue => None,
        }
    }

    /// The listed run in `dir`.
    pub fn find(&self, dir: &std::path::Path) -> Option<&RunSummary> {
        self.runs.iter().find(|r| r.dir == dir)
    }

    /// Handles a key: dispatches through [`KEYS`].
    pub fn on_key(&mut self, key: KeyEvent) -> RunsAction {
        if self.is_typing() {
            return self.on_filter_key(key);
        }
        let Some(action) = lookup(KEYS, &key) else {
            return RunsAction::None;
        };
        if self.view == RunsView::Queue {
            return self.on_queue_key(action, key.code);
        }
        if matches!(self.view, RunsView::Groups | RunsView::Group(_)) {
            return self.on_groups_key(action, key.code);
        }
        let selected = self.runs.get(self.selected).map(|r| r.dir.clone());
        let open = self.view != RunsView::List;
        match action {
            RunsKey::Back if open => self.view = RunsView::List,
            RunsKey::Back => self.back_in_list(key.code),
            RunsKey::Refresh if open => return RunsAction::Load(self.open_dirs()),
            RunsKey::Refresh => return RunsAction::Refresh,
            RunsKey::Resume
            | RunsKey::Rerun
            | RunsKey::Remove
            | RunsKey::Attach
            | RunsKey::Methods => return run_action(action, self.target(selected)),
            RunsKey::HideEnded => {
                self.hide_ended = !self.hide_ended;
                self.apply_filter();
            }
            RunsKey::Groups => self.view = RunsView::Groups,
            RunsKey::Filter => self.filter_input = Some(self.filter.clone()),
            RunsKey::Queue => {
                self.view = RunsView::Queue;
                return RunsAction::LoadQueue;
            }
            RunsKey::Hold | RunsKey::Cancel | RunsKey::First => {}
            _ if open => {}
            RunsKey::Move => {
                super::list_nav::navigate(&mut self.selected, self.runs.len(), key.code);
            }
            RunsKey::Open => {
                if let Some(dir) = selected {
                    self.view = RunsView::Detail(dir);
                    return RunsAction::Load(self.open_dirs());
                }
            }
            RunsKey::Compare => {
                if let Some(dir) = selected {
                    match self.marked.take() {
                        None => self.marked = Some(dir),
                        Some(m) if m == dir => {}
                        Some(m) => {
                            self.view = RunsView::Compare(m, dir);
                            return RunsAction::Load(self.open_dirs());
                        }
                    }
                }
            }
        }
        RunsAction::None
    }
}

/// What a key that acts on one run asks for `target` (the open run, or the one selected in the
/// list; none in the other views).
fn run_action(action: RunsKey, target: Option<PathBuf>) -> RunsAction {
    let Some(d) = target else {
        return match action {
            RunsKey::Methods => RunsAction::Status("m: select a finished stage-1 run first".into()),
            _ => RunsAction::None,
        };
    };
    match action {
        RunsKey::Resume => RunsAction::Resume(d),
        RunsKey::Rerun => RunsAction::Rerun(d),
        RunsKey::Remove => RunsAction::Remove(d),
        RunsKey::Attach => RunsAction::Attach(d),
        RunsKey::Methods => RunsAction::OpenMethods(d),
        _ => RunsAction::None,
    }
}

/// The jobs of `new` that ended since `old` was read: in an end state now (done, stopped,
/// failed, ended) and waiting or running then. A job not in `old` (the first read) is not one.
pub fn ended_jobs<'a>(
    old: &[crate::queue::Job],
    new: &'a [crate::queue::Job],
) -> Vec<&'a crate::queue::Job> {
    use crate::queue::state::{
        DONE, ENDED, FAILED, HELD, QUEUED, RUNNING, STARTING, STOPPED, SUBMITTED,
    };
    new.iter()
        .filter(|j| [DONE, STOPPED, FAILED, ENDED].contains(&j.state.as_str()))
        .filter(|j| {
            old.iter().any(|o| {
                o.id == j.id
                    && [QUEUED, HELD, STARTING, RUNNING, SUBMITTED].contains(&o.state.as_str())
            })
        })
        .collect()
}

/// Whether a run in state `st` is what `H` hides: one that ended without finishing (stopped,
/// failed, killed, or with nothing to say how it ended).
pub fn is_debris(st: RunStatus) -> bool {
    matches!(
        st,
        RunStatus::Stopped | RunStatus::Failed | RunStatus::Died | RunStatus::Unfinished
    )
}

/// Epochs of the run's stage: from the last record, else its configuration.
fn total_epochs(r: &RunSummary) -> Option<usize> {
    r.epochs
        .last()
        .map(|e| e.num_epochs)
        .or(r.config.as_ref().map(|c| c.num_epochs))
}

/// Evaluated epochs: one past the last record's epoch (a resumed run's records continue).
fn epochs_done(r: &RunSummary) -> usize {
    r.epochs.last().map_or(0, |e| e.epoch + 1)
}

/// Draws the runs screen in `area`; `live` are the run folders this process is writing.
pub fn draw(s: &RunsScreen, live: &[PathBuf], theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let detail = |d: &Path, f: &mut Frame<'_>, a: Rect, compact: bool| match (
        s.find(d),
        s.status(d, live),
    ) {
        (Some(r), Some(st)) => draw_detail(r, (st, &s.facts(d)), theme, f, a, compact),
        _ => f.render_widget(Paragraph::new("The run folder is gone."), a),
    };
    match &s.view {
        RunsView::List => draw_list(s, live, theme, f, area),
        RunsView::Detail(d) => detail(d, f, area, false),
        RunsView::Groups => draw_groups(s, theme, f, area),
        RunsView::Group(i) => draw_group(s, *i, theme, f, area),
        RunsView::Queue => draw_queue(s, theme, f, area),
        RunsView::Compare(a, b) => {
            let [diff, area] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
            f.render_widget(Paragraph::new(differences_line(s, a, b, theme)), diff);
            let [left, right] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(area);
            for (d, a) in [(a, left), (b, right)] {
                detail(d, f, a, true);
            }
        }
    }
}

/// The keys in which the two compared runs differ (the seed, the name and `resume` aside).
fn differences_line(s: &RunsScreen, a: &Path, b: &Path, theme: Theme) -> Line<'static> {
    let config = |d: &Path| s.find(d).and_then(|r| r.config.clone());
    let (Some(ca), Some(cb)) = (config(a), config(b)) else {
        return Line::styled("a configuration cannot be read", theme.bad());
    };
    let diffs: Vec<String> = crate::seeds::differing_keys(&ca, &cb)
        .into_iter()
        .filter(|(k, _, _)| k != "name" && k != "resume")
        .map(|(k, was, now)| format!("{k} {was} → {now}"))
        .collect();
    match diffs.is_empty() {
        true => Line::styled("same configuration", theme.dim()),
        false => Line::from(vec![
            Span::styled("differs: ", theme.dim()),
            Span::raw(diffs.join(", ")),
        ]),
    }
}

/// Runs that differ only in seed, one row per group: the seeds that count (one finished run
/// each), the runs left out, and mean ± sample std over the seeds of top-1, ECE and NLL at
/// each run's best epoch and last epoch ([`crate::seeds::group_by_seed`]).
fn draw_groups(s: &RunsScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let groups = crate::seeds::group_by_seed(&s.runs);
    let fig = |m: Option<MeanStd>, p: usize| m.map_or("–".into(), |m| m.compact(p));
    let rows: Vec<Row<'_>> = groups
        .iter()
        .map(|g| {
            Row::new(vec![
                g.label.clone(),
                g.seeds.len().to_string(),
                g.count(Role::Duplicate).to_string(),
                g.count(Role::Unfinished).to_string(),
                fig(g.best_top1, 2),
                fig(g.last_top1, 2),
                fig(g.last_ece, 2),
                fig(g.last_nll, 3),
            ])
        })
        .collect();
    let title = format!(
        "Seed groups · mean±std over seeds (sample std; — for one seed){}",
        filter_note(s)
    );
    let block = panel(&title, true, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [table_area, note] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(2)]).areas(inner);
    let table = groups_table(rows, theme);
    let mut state = TableState::default().with_selected(Some(s.group_selected));
    f.render_stateful_widget(table, table_area, &mut state);
    f.render_widget(
        Paragraph::new(
            "n seeds, one finished run each (the first to finish) · dup: runs of a seed already \
             counted · unf: not finished, not counted · Enter lists a group's runs",
        )
        .style(theme.dim())
        .wrap(ratatui::widgets::Wrap { trim: true }),
        note,
    );
}

/// The seed groups' table of `rows`, with its header.
fn groups_table(rows: Vec<Row<'_>>, theme: Theme) -> Table<'_> {
    Table::new(
        rows,
        [
            Constraint::Min(14),
            Constraint::Length(2),
            Constraint::Length(3),
            Constraint::Length(3),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(10),
            Constraint::Length(11),
        ],
    )
    .header(
        Row::new([
            "Group",
            "n",
            "dup",
            "unf",
            "Best top-1",
            "Last top-1",
            "Last ECE",
            "Last NLL",
        ])
        .style(theme.dim()),
    )
    .row_highlight_style(theme.selected())
}

/// The runs of the `i`-th seed group, newest first: seed, whether it counts, its figures.
fn draw_group(s: &RunsScreen, i: usize, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let groups = crate::seeds::group_by_seed(&s.runs);
    let Some(g) = groups.get(i) else {
        f.render_widget(
            Paragraph::new("\nThis group is gone: Esc goes back to the groups.")
                .centered()
                .block(panel("Seed group", true, theme)),
            area,
        );
        return;
    };
    let fig = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
    let rows: Vec<Row<'_>> = g
        .members
        .iter()
        .map(|m| {
            let style = match m.role {
                Role::Used => theme.good(),
                Role::Duplicate | Role::Unfinished => theme.dim(),
            };
            Row::new(vec![
                m.seed.to_string(),
                m.role.label().to_owned(),
                fig(m.best_top1),
                fig(m.last_top1),
                fig(m.last_ece),
                m.name.clone(),
            ])
            .style(style)
        })
        .collect();
    let seeds: Vec<String> = g.seeds.iter().map(u64::to_string).collect();
    let title = format!(
        "Seed group {} · seeds {} · Esc back",
        g.label,
        match seeds.is_empty() {
            true => "none finished".to_owned(),
            false => seeds.join(", "),
        }
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(14),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Min(12),
        ],
    )
    .header(Row::new(["Seed", "Counts", "Best", "Top-1", "ECE", "Run"]).style(theme.dim()))
    .block(panel(&title, true, theme));
    f.render_widget(table, area);
}

/// The queue: id, state, device, name with its restarts, and, for a run handed to Slurm, its
/// job id and Slurm's state and reason ([`queue_slurm_cell`]).
fn draw_queue(s: &RunsScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let title = "Queue · mislas queue run starts it · Space hold  x cancel  t to front";
    if s.queue.is_empty() {
        let text = match s.queue_loading && !s.queue_read {
            true => "\nloading the queue…",
            false => "\nThe queue is empty: Q (or B) in the form adds a run.",
        };
        f.render_widget(
            Paragraph::new(text)
                .centered()
                .block(panel(title, true, theme)),
            area,
        );
        return;
    }
    let rows: Vec<Row<'_>> = s
        .queue
        .iter()
        .map(|j| {
            let restarts = match j.restarts {
                0 => String::new(),
                1 => " (1 restart)".to_owned(),
                n => format!(" ({n} restarts)"),
            };
            Row::new(vec![
                j.id.to_string(),
                j.state.clone(),
                j.device.clone().unwrap_or_default(),
                format!("{}{restarts}", j.name),
                queue_slurm_cell(j),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(9),
            Constraint::Length(12),
            // The name gets a third of the rest, the Slurm job and last attempt two thirds.
            Constraint::Fill(1),
            Constraint::Fill(2),
        ],
    )
    .header(Row::new(["Id", "State", "Device", "Name", "Slurm · last attempt"]).style(theme.dim()))
    .block(panel(title, true, theme))
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(s.queue_selected));
    f.render_stateful_widget(table, area, &mut state);
}

/// A queue row's Slurm job (`12_3 RUNNING`, `17 PENDING (Priority)`), and why its last
/// attempt ended when it restarted or did not finish (as `mislas queue ls` says it).
pub(crate) fn queue_slurm_cell(j: &crate::queue::Job) -> String {
    let mut cell = match &j.slurm {
        Some(sl) if sl.job_id.is_empty() => sl.state.clone(),
        Some(sl) => format!("{} {}", sl.job_id, sl.state),
        None => String::new(),
    };
    if let Some(r) = j.slurm.as_ref().and_then(|sl| sl.reason.as_deref()) {
        cell.push_str(&format!(" ({r})"));
    }
    let finished = j.ends.last().is_some_and(|w| w.starts_with("finished"));
    if let Some(last) = j.ends.last().filter(|_| j.restarts > 0 || !finished) {
        if !cell.is_empty() {
            cell.push_str(" · ");
        }
        cell.push_str(&format!("attempt {}: {last}", j.ends.len()));
    }
    cell
}

/// `name` in at most `width` characters: whole when it fits, else its start, `…` and its end,
/// the end four times longer (a run name ends with what tells runs apart: the method and the
/// time stamp; the start is mostly the data set, which the detail shows).
fn fit_middle(name: &str, width: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= width || width < 3 {
        return name.to_owned();
    }
    let head = (width - 1) / 5;
    let tail = width - 1 - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// ` · filter lr=0.1` when a filter is on (or being typed), ` · 3 ended hidden (H)` when
/// ended runs are hidden.
fn filter_note(s: &RunsScreen) -> String {
    let filter = match (&s.filter_input, s.filter.trim()) {
        (Some(t), _) => format!(" · filter: {t}▏"),
        (None, "") => String::new(),
        (None, f) => format!(" · filter {f}"),
    };
    match s.hide_ended {
        true => format!("{filter} · {} ended hidden (H)", s.hidden),
        false => filter,
    }
}

/// The list's place when it is empty: no run yet, or none the filter keeps.
fn draw_no_runs(s: &RunsScreen, title: &str, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let text = match s.all_runs.is_empty() {
        true if s.loading => "\nloading the runs of saved/…".to_owned(),
        true => "\nNo run folder in saved/ yet.".to_owned(),
        false if s.hidden > 0 && s.filter.trim().is_empty() => format!(
            "\nEvery run of the {} in saved/ ended without finishing and is hidden: H shows them.",
            s.all_runs.len()
        ),
        false => format!(
            "\nNo run of the {} in saved/ matches the filter {}: / edits it, Esc clears it.",
            s.all_runs.len(),
            s.filter.trim()
        ),
    };
    f.render_widget(
        Paragraph::new(text)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .centered()
            .block(panel(title, true, theme)),
        area,
    );
}

fn draw_list(s: &RunsScreen, live: &[PathBuf], theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let title = match &s.marked {
        Some(m) => format!(
            "Runs in saved/ · {} marked: c on another compares",
            m.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ),
        None => "Runs in saved/".to_owned(),
    } + &filter_note(s)
        + if s.loading { " · loading…" } else { "" };
    if s.runs.is_empty() {
        return draw_no_runs(s, &title, theme, f, area);
    }
    let extra = extra_columns(usize::from(area.width));
    // The name column: what the borders, the mark and the other columns (45 wide, 6 gaps, and
    // the extra columns with a gap each) leave.
    let extra_width: usize = extra.iter().map(|c| usize::from(c.width()) + 1).sum();
    let name_width = usize::from(area.width)
        .saturating_sub(2 + 2 + 45 + 6 + extra_width)
        .max(12);
    let rows: Vec<Row<'_>> = s
        .runs
        .iter()
        .map(|r| {
            let last = r.epochs.last();
            let fig = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
            let mark = if s.marked.as_ref() == Some(&r.dir) {
                "◆ "
            } else {
                "  "
            };
            let state = s.status(&r.dir, live).map_or("", RunStatus::label);
            let mut cells = vec![
                format!("{mark}{}", fit_middle(&r.name, name_width)),
                state.to_owned(),
                r.stage.map_or("?".into(), |st| st.to_string()),
                format!(
                    "{}/{}",
                    epochs_done(r),
                    total_epochs(r).map_or("?".into(), |n| n.to_string())
                ),
                fig(last.map(|e| e.eval.top1)),
                fig(last.map(|e| e.best_top1)),
                fig(last.map(|e| e.best_ece)),
            ];
            let facts = s.facts(&r.dir);
            cells.extend(extra.iter().map(|c| c.cell(r, &facts)));
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![
        Constraint::Min(20),
        Constraint::Length(12),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(8),
    ];
    widths.extend(extra.iter().map(|c| Constraint::Length(c.width())));
    let mut header = vec![
        "  Run", "State", "Stage", "Epochs", "Top-1", "Best", "ECE@best",
    ];
    header.extend(extra.iter().map(|c| c.header()));
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.dim()))
        .block(panel(&title, true, theme))
        .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(s.selected));
    f.render_stateful_widget(table, area, &mut state);
}

/// Columns of the runs list shown when the terminal is wide enough, in the order they are
/// given room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraColumn {
    /// The epoch (1-based) of the best top-1.
    BestEpoch,
    /// Training and evaluation time of its epochs.
    Duration,
    /// When it started (local time).
    Started,
    /// The device of its configuration, `×N` with N data-parallel processes.
    Device,
}

impl ExtraColumn {
    /// Every extra column, the first given room first.
    pub const ALL: [ExtraColumn; 4] = [
        ExtraColumn::BestEpoch,
        ExtraColumn::Duration,
        ExtraColumn::Started,
        ExtraColumn::Device,
    ];

    fn width(self) -> u16 {
        match self {
            ExtraColumn::BestEpoch => 5,
            ExtraColumn::Duration => 7,
            ExtraColumn::Started => 11,
            ExtraColumn::Device => 9,
        }
    }

    fn header(self) -> &'static str {
        match self {
            ExtraColumn::BestEpoch => "@ep",
            ExtraColumn::Duration => "Time",
            ExtraColumn::Started => "Started",
            ExtraColumn::Device => "Device",
        }
    }

    /// The cell of run `r`.
    pub fn cell(self, r: &RunSummary, facts: &FolderFacts) -> String {
        match self {
            ExtraColumn::BestEpoch => best_epoch(r).map_or("–".into(), |e| e.to_string()),
            ExtraColumn::Duration => match r.epochs.is_empty() {
                true => "–".into(),
                false => super::view::format_duration(
                    r.epochs
                        .iter()
                        .map(|e| e.train_seconds + e.eval_seconds)
                        .sum(),
                ),
            },
            ExtraColumn::Started => facts.started.map_or("–".into(), |t| {
                chrono::DateTime::<chrono::Local>::from(t)
                    .format("%m-%d %H:%M")
                    .to_string()
            }),
            ExtraColumn::Device => r.config.as_ref().map_or("?".into(), |c| match c.gpus {
                0 | 1 => c.device.clone(),
                n => format!("{}×{n}", c.device),
            }),
        }
    }
}

/// The extra columns that fit `width` columns beside a name column of at least 20 (none at
/// 80 columns: the name keeps its room).
pub fn extra_columns(width: usize) -> Vec<ExtraColumn> {
    let mut room = width.saturating_sub(2 + 2 + 45 + 6 + 20);
    let mut out = Vec::new();
    for c in ExtraColumn::ALL {
        let w = usize::from(c.width()) + 1;
        if w > room {
            break;
        }
        room -= w;
        out.push(c);
    }
    out
}

/// The epoch (1-based) whose top-1 is the run's best: the last record marked best.
pub fn best_epoch(r: &RunSummary) -> Option<usize> {
    r.epochs
        .iter()
        .rev()
        .find(|e| e.is_best)
        .map(|e| e.epoch + 1)
}

/// The detail's line on where the run stands; "following" only when something writes it.
fn progress_line(
    r: &RunSummary,
    (st, facts): (RunStatus, &FolderFacts),
    theme: Theme,
) -> Line<'static> {
    let stage = r.stage.map_or("?".into(), |s| s.to_string());
    let done = format!(
        "{}/{} epochs",
        epochs_done(r),
        total_epochs(r).map_or("?".into(), |n| n.to_string())
    );
    let age = facts
        .modified
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .map_or_else(String::new, |a| {
            format!(" {} ago", super::view::format_duration(a.as_secs_f64()))
        });
    let resume = if facts.current_checkpoint.is_some() {
        " · R resumes"
    } else {
        ""
    };
    let (text, style) = match st {
        RunStatus::Live => match &facts.node {
            // Another machine's run: its process cannot be checked from here.
            Some(node) => (
                format!("{stage} · {done} · {node} · a attaches"),
                theme.good(),
            ),
            None => (
                format!("{stage} · {done} · live · a attaches"),
                theme.good(),
            ),
        },
        RunStatus::Died => (
            format!("{stage} · {done} · dead: its process was killed{resume}"),
            theme.bad(),
        ),
        RunStatus::Writing => (
            format!("{stage} · {done} · written{age} · following metrics.jsonl"),
            theme.warn(),
        ),
        RunStatus::Finished => (
            format!("{stage} · {done} · finished · {}", r.dir.display()),
            theme.dim(),
        ),
        RunStatus::Stopped => (format!("{stage} · {done} · stopped{resume}"), theme.warn()),
        RunStatus::Failed => {
            let why = facts.last_log_line.as_deref().unwrap_or("");
            (
                format!("{stage} · {done} · failed{resume}: {why}"),
                theme.bad(),
            )
        }
        RunStatus::Unfinished => (
            format!("{stage} · {done} · ended{age}, no stop or error logged"),
            theme.dim(),
        ),
    };
    Line::styled(text, style)
}

/// Draws one run in `area`: its summary, its curves, and its last evaluation (the
/// reliability diagram only when `compact`).
fn draw_detail(
    r: &RunSummary,
    state: (RunStatus, &FolderFacts),
    theme: Theme,
    f: &mut Frame<'_>,
    area: Rect,
    compact: bool,
) {
    let block = panel(&r.name, !compact, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let lines = detail_summary(r, state, theme);
    let [summary, charts, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Percentage(50),
        Constraint::Percentage(50),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(lines), summary);
    draw_detail_charts(r, theme, f, charts);
    draw_detail_bottom(r, theme, f, bottom, compact);
}

/// The summary lines of a run: its final and best figures, then its progress.
fn detail_summary(
    r: &RunSummary,
    state: (RunStatus, &FolderFacts),
    theme: Theme,
) -> Vec<Line<'static>> {
    let dim = theme.dim();
    let mut lines = vec![];
    match r.epochs.last() {
        Some(e) => {
            let best_epoch = r.epochs.iter().rfind(|e| e.is_best).map_or(0, |e| e.epoch);
            lines.push(Line::from(vec![
                Span::styled("last  ", dim),
                Span::styled(format!("top-1 {:.2}%", e.eval.top1), theme.title()),
                Span::raw(format!(
                    " (epoch [{}]) ECE {:.2}% NLL {:.3}",
                    e.epoch, e.eval.ece, e.eval.nll
                )),
            ]));
            lines.push(Line::from(vec![
                Span::styled("best  ", dim),
                Span::styled(format!("top-1 {:.2}%", e.best_top1), theme.good()),
                Span::raw(format!(" (epoch [{best_epoch}]) ECE {:.2}%", e.best_ece)),
            ]));
        }
        None => lines.push(Line::styled("no evaluated epoch yet", dim)),
    }
    lines.push(progress_line(r, state, theme));
    lines
}

/// The top-1 and ECE charts of a run's epochs, side by side in `area`.
fn draw_detail_charts(r: &RunSummary, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let EpochCurves {
        top1,
        ece,
        boundary,
    } = epoch_curves(&r.epochs);
    let chart_areas: [Rect; 2] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    for ((title, points, color), a) in [
        ("Top-1 %", &top1, Color::Green),
        ("ECE %", &ece, Color::Red),
    ]
    .into_iter()
    .zip(chart_areas)
    {
        let block = panel(title, false, theme);
        let ci = block.inner(a);
        f.render_widget(block, a);
        f.render_widget(
            LineChart::new(
                vec![Curve {
                    points: points.as_slice(),
                    color,
                }],
                "no epoch yet",
                theme,
            )
            .boundary(boundary, "s2")
            .y_floor(0.0),
            ci,
        );
    }
}

/// The last evaluation's reliability diagram in `area`, and beside it (unless `compact`) its
/// accuracy per class.
fn draw_detail_bottom(r: &RunSummary, theme: Theme, f: &mut Frame<'_>, area: Rect, compact: bool) {
    let last = r.epochs.last();
    let bins = last.map_or(&[][..], |e| &e.eval.bins[..]);
    let rel_title = last.map_or("Reliability".into(), |e| {
        format!("Reliability · epoch [{}]", e.epoch)
    });
    if compact {
        let block = panel(&rel_title, false, theme);
        let ri = block.inner(area);
        f.render_widget(block, area);
        f.render_widget(Reliability::new(bins, theme), ri);
        return;
    }
    let [rel, classes] = Layout::horizontal([Constraint::Max(40), Constraint::Min(20)]).areas(area);
    let block = panel(&rel_title, false, theme);
    let ri = block.inner(rel);
    f.render_widget(block, rel);
    f.render_widget(Reliability::new(bins, theme), ri);
    let block = panel(CLASS_TITLE, false, theme);
    let ci = block.inner(classes);
    f.render_widget(block, classes);
    let bars = match (last, &r.config) {
        (Some(e), Some(c)) => class_bars(
            &e.eval,
            &[],
            [c.head_class_idx, c.med_class_idx, c.tail_class_idx],
        ),
        _ => Vec::new(),
    };
    draw_classes(last.map(|e| &e.eval), &bars, theme, f, ci);
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_run_names_keep_their_start_and_their_distinguishing_end() {
        let n = "fashion_mnist_imb001_stage2_crt_202612060919";
        assert_eq!(super::fit_middle(n, 25), "fash…ge2_crt_202612060919");
        assert_eq!(
            super::fit_middle("fashion_mnist_imb001_stage2_mislas_no_las_202612060911", 25),
            "fash…_no_las_202612060911"
        );
        assert_eq!(super::fit_middle(n, 25).chars().count(), 25);
        assert_eq!(super::fit_middle(n, 60), n);
        assert_eq!(super::fit_middle("short", 5), "short");
    }
}
