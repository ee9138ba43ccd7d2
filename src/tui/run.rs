//! The live run screen: progress of stage, epoch and batch with ETA and images/s, lr and device;
//! the smoothed training loss per batch; validation top-1 and ECE per epoch across both stages
//! with the stage boundary marked; the latest reliability diagram; per-class accuracy by
//! training frequency; the run's log.
use super::keys::{lookup, Binding, SCROLL_CODES, SCROLL_KEYS};
use super::theme::Theme;
use super::view::{format_duration, panel};
use super::widgets::{Band, ClassBar, ClassBars, Curve, LineChart, Reliability};
use crate::events::{BatchStats, EvalProgress, Event, StageFinished, StageStarted};
use crate::metrics::EvalReport;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// What a key of the run screen does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKey {
    /// Pause, or resume a paused run.
    Pause,
    /// Ask to stop after a checkpoint.
    Stop,
    /// Focus the next (Tab) or previous (Shift-Tab) panel.
    Focus,
    /// Zoom the focused panel in or out.
    Zoom,
    /// Back to all panels.
    Unzoom,
    /// Scroll the log by a line or a page.
    Scroll,
    /// The log's oldest line, or follow its newest.
    Ends,
}

/// Keys of the run screen, most used first.
pub const KEYS: &[Binding<RunKey>] = &[
    Binding::new(
        &[KeyCode::Char('p')],
        "p",
        RunKey::Pause,
        "pause",
        "pause between batches, or resume",
    ),
    Binding::new(
        &[KeyCode::Char('s')],
        "s",
        RunKey::Stop,
        "stop",
        "stop after saving a checkpoint (asks first)",
    ),
    Binding::new(
        &[KeyCode::Tab, KeyCode::BackTab],
        "Tab/S-Tab",
        RunKey::Focus,
        "focus",
        "focus the next / previous panel",
    ),
    Binding::new(
        &[KeyCode::Enter, KeyCode::Char('z')],
        "Enter/z",
        RunKey::Zoom,
        "zoom",
        "zoom the focused panel in or out",
    ),
    Binding::new(
        &[KeyCode::Esc],
        "Esc",
        RunKey::Unzoom,
        "unzoom",
        "back to all panels",
    ),
    Binding::new(
        SCROLL_CODES,
        SCROLL_KEYS,
        RunKey::Scroll,
        "log",
        "scroll the log a line / a page",
    ),
    Binding::new(
        &[
            KeyCode::Home,
            KeyCode::Char('g'),
            KeyCode::End,
            KeyCode::Char('G'),
        ],
        "g/G Home/End",
        RunKey::Ends,
        "log ends",
        "the log's oldest line / follow the newest",
    ),
];

/// Points kept per curve; older points are merged pairwise beyond this.
const MAX_POINTS: usize = 2048;
/// Log lines kept.
const MAX_LOG: usize = 5000;
/// Smoothing of the loss curve and of images/s (exponential moving average weight of the past).
const SMOOTHING: f64 = 0.9;

/// Where a run is.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Launched; the first stage has not started yet (data loading).
    Starting,
    /// Training.
    Running,
    /// Paused between batches.
    Paused,
    /// A stop was asked; the trainer saves a checkpoint and ends.
    Stopping,
    /// Every stage ended.
    Finished,
    /// The run was stopped (a stop, here or from another front end) and has ended, its
    /// checkpoint saved: resumable.
    Stopped,
    /// The run failed with this message.
    Failed(String),
}

/// The panels of the dashboard, in focus order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    /// Smoothed training loss per batch.
    Loss,
    /// Validation top-1 per epoch.
    Top1,
    /// Validation ECE per epoch.
    Ece,
    /// Reliability diagram of the latest evaluation.
    Reliability,
    /// Per-class accuracy bars.
    Classes,
    /// The run's log.
    Log,
}

const PANELS: [Panel; 6] = [
    Panel::Loss,
    Panel::Top1,
    Panel::Ece,
    Panel::Reliability,
    Panel::Classes,
    Panel::Log,
];

/// A curve of bounded size: beyond 2048 points, pairs of points are averaged and each new
/// point averages twice as many inputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    points: Vec<(f64, f64)>,
    stride: usize,
    pending: (f64, f64, usize),
}

impl Series {
    /// Adds a point.
    pub fn push(&mut self, x: f64, y: f64) {
        self.stride = self.stride.max(1);
        let (sx, sy, n) = &mut self.pending;
        *sx += x;
        *sy += y;
        *n += 1;
        if *n >= self.stride {
            let k = *n as f64;
            self.points.push((*sx / k, *sy / k));
            self.pending = (0.0, 0.0, 0);
            if self.points.len() >= MAX_POINTS {
                self.points = self
                    .points
                    .chunks(2)
                    .map(|c| {
                        let k = c.len() as f64;
                        (
                            c.iter().map(|p| p.0).sum::<f64>() / k,
                            c.iter().map(|p| p.1).sum::<f64>() / k,
                        )
                    })
                    .collect();
                self.stride *= 2;
            }
        }
    }

    /// The points.
    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }
}

/// State of the run launched from this UI.
#[derive(Debug, Clone, PartialEq)]
pub struct RunScreen {
    /// What was launched ("fashion_mnist_imb001_stage1_mixup → stage 2").
    pub label: String,
    /// Stages in the plan (1, or 2 for a both-stages launch).
    pub stages_planned: usize,
    /// State.
    pub state: RunState,
    /// The stage being trained.
    pub stage: Option<StageStarted>,
    /// Which stage of the plan, 1-based (0 before the first).
    pub stage_number: usize,
    /// Current epoch, 0-based.
    pub epoch: usize,
    /// Learning rates of the current epoch.
    pub lr: Vec<f64>,
    /// The latest batch.
    pub batch: Option<BatchStats>,
    /// Progress of the evaluation under way (cleared when its epoch's figures arrive).
    pub eval: Option<EvalProgress>,
    /// Smoothed images/s.
    pub images_per_sec: Option<f64>,
    /// Smoothed training loss.
    pub loss_ema: Option<f64>,
    /// Training batches seen over the whole plan (the loss chart's x).
    pub batches_seen: usize,
    /// Smoothed loss per batch.
    pub loss: Series,
    /// Batch at which stage 2 began.
    pub loss_boundary: Option<f64>,
    /// Every evaluated epoch of the plan, in order.
    pub epochs: Vec<crate::events::EpochReport>,
    /// Stages that ended.
    pub finished: Vec<StageFinished>,
    /// Log lines.
    pub log: Vec<String>,
    /// Lines scrolled up from the end of the log (0 follows it).
    pub log_scroll: usize,
    /// Focused panel.
    pub focus: Panel,
    /// Whether the focused panel fills the dashboard.
    pub zoom: bool,
}

/// What a key on the run screen asks of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    /// Nothing beyond the screen's own state.
    None,
    /// Pause (true) or resume (false).
    Pause(bool),
    /// Ask to confirm a stop.
    ConfirmStop,
}

impl RunScreen {
    /// A run that was just launched.
    pub fn new(label: String, stages_planned: usize) -> Self {
        RunScreen {
            label,
            stages_planned,
            state: RunState::Starting,
            stage: None,
            stage_number: 0,
            epoch: 0,
            lr: Vec::new(),
            batch: None,
            eval: None,
            images_per_sec: None,
            loss_ema: None,
            batches_seen: 0,
            loss: Series::default(),
            loss_boundary: None,
            epochs: Vec::new(),
            finished: Vec::new(),
            log: Vec::new(),
            log_scroll: 0,
            focus: Panel::Loss,
            zoom: false,
        }
    }

    /// Whether the trainer is still at work (a stop has not completed).
    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            RunState::Starting | RunState::Running | RunState::Paused | RunState::Stopping
        )
    }

    /// Adds a line to the log; tabs become spaces and other control characters are dropped, so
    /// that the terminal's cursor never moves behind the UI's back.
    pub fn push_log(&mut self, line: String) {
        let line: String = line
            .replace('\t', "  ")
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        if self.log.len() >= MAX_LOG {
            self.log.drain(..MAX_LOG / 10);
        }
        self.log.push(line);
        if self.log_scroll > 0 {
            self.log_scroll += 1;
        }
    }

    /// Applies an engine event.
    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::StageStarted(s) => self.on_stage_started(s),
            Event::EpochStarted { epoch, lr, .. } => {
                self.eval = None;
                self.epoch = epoch;
                self.lr = lr;
            }
            Event::Batch(b) => self.on_batch(b),
            Event::Epoch(r) => {
                // The reference's `* Acc@1 …`, `* ECE …` and `Best Prec@1 …` lines, as in the
                // run's text log, then the dashboard's summary of the epoch.
                for line in r.log_lines() {
                    self.push_log(line);
                }
                self.on_epoch(*r)
            }
            Event::Log(_) | Event::Warning(_) => {
                for line in event.log_lines() {
                    self.push_log(line);
                }
            }
            Event::EvalProgress(p) => self.eval = Some(p),
            Event::Checkpoint { path, best } => self.push_log(format!(
                "checkpoint{} → {}",
                if best { " (best)" } else { "" },
                path.display()
            )),
            Event::Paused => {
                if self.state == RunState::Running {
                    self.state = RunState::Paused;
                }
                self.push_log("⏸ paused".into());
            }
            Event::Resumed => {
                if self.state == RunState::Paused {
                    self.state = RunState::Running;
                }
                self.push_log("▶ resumed".into());
            }
            Event::StageFinished(f) => self.on_stage_finished(f),
            Event::Finished => {
                let stopped = self.state == RunState::Stopping
                    || self.finished.last().is_some_and(|f| f.stopped);
                if stopped {
                    self.state = RunState::Stopped;
                    self.push_log(
                        "■ run stopped, its checkpoint saved: R on the Runs screen resumes it"
                            .into(),
                    );
                } else {
                    self.state = RunState::Finished;
                    self.push_log("✓ run ended".into());
                }
            }
            Event::Failed(f) => {
                self.push_log(format!("✗ {}: {}", f.kind, f.message));
                self.state = RunState::Failed(f.message);
            }
        }
    }

    /// A stage began: the loss chart marks where, and the log says what it trains.
    fn on_stage_started(&mut self, s: StageStarted) {
        if self.stage.is_some() {
            self.loss_boundary = Some(self.batches_seen as f64);
        }
        self.stage_number += 1;
        self.epoch = s.start_epoch;
        if self.state == RunState::Starting {
            self.state = RunState::Running;
        }
        self.push_log(format!(
            "▶ {} of {} on {} ({}): {} epochs from epoch [{}], {} images, run folder {}",
            s.stage,
            s.name,
            s.dataset,
            s.device.name,
            s.num_epochs,
            s.start_epoch,
            s.images_per_epoch,
            s.run_dir.display()
        ));
        self.stage = Some(s);
    }

    /// A training batch: the smoothed loss and images/s, and a point of the loss chart.
    fn on_batch(&mut self, b: BatchStats) {
        self.batches_seen += 1;
        let ema = |old: Option<f64>, v: f64| {
            if v.is_finite() {
                Some(old.map_or(v, |o| SMOOTHING * o + (1.0 - SMOOTHING) * v))
            } else {
                old
            }
        };
        self.loss_ema = ema(self.loss_ema, b.loss);
        self.images_per_sec = ema(self.images_per_sec, b.images_per_sec);
        if let Some(l) = self.loss_ema {
            self.loss.push(self.batches_seen as f64, l);
        }
        self.epoch = b.epoch;
        self.batch = Some(b);
    }

    /// An evaluated epoch: its figures, logged and kept for the charts.
    fn on_epoch(&mut self, r: crate::events::EpochReport) {
        self.eval = None;
        self.push_log(format!(
            "{} epoch [{}] of {}: top-1 {:.2} %, ECE {:.2} %, NLL {:.3}, loss {:.4}, {:.0} img/s{}",
            r.stage,
            r.epoch,
            r.num_epochs,
            r.eval.top1,
            r.eval.ece,
            r.eval.nll,
            r.train_loss,
            r.images_per_sec,
            if r.is_best { " (best)" } else { "" }
        ));
        self.epochs.push(r);
    }

    /// A stage ended: how, and its best figures and checkpoint, logged.
    fn on_stage_finished(&mut self, f: StageFinished) {
        self.eval = None;
        self.push_log(format!(
            "■ {} {}: {}{}",
            f.stage,
            if f.stopped { "stopped" } else { "finished" },
            f.best.map_or("no evaluation yet".to_owned(), |b| format!(
                "best top-1 {:.2} %, ECE at best {:.2} %",
                b.top1, b.ece
            )),
            f.best_checkpoint
                .as_ref()
                .map(|p| format!(", best checkpoint {}", p.display()))
                .unwrap_or_default()
        ));
        self.finished.push(f);
    }

    /// Handles a key of the run screen: dispatches through [`KEYS`].
    pub fn on_key(&mut self, key: KeyEvent) -> RunAction {
        let Some(action) = lookup(KEYS, &key) else {
            return RunAction::None;
        };
        let idx = PANELS.iter().position(|p| *p == self.focus).unwrap_or(0);
        let n = PANELS.len();
        match action {
            RunKey::Pause => match self.state {
                RunState::Running | RunState::Starting => return RunAction::Pause(true),
                RunState::Paused => return RunAction::Pause(false),
                _ => {}
            },
            RunKey::Stop if self.is_active() && self.state != RunState::Stopping => {
                return RunAction::ConfirmStop
            }
            RunKey::Stop => {}
            RunKey::Focus => {
                let step = if key.code == KeyCode::BackTab {
                    n - 1
                } else {
                    1
                };
                self.focus = PANELS[(idx + step) % n];
            }
            RunKey::Zoom => self.zoom = !self.zoom,
            RunKey::Unzoom => self.zoom = false,
            RunKey::Scroll => self.scroll(match key.code {
                KeyCode::Up | KeyCode::Char('k') => 1,
                KeyCode::Down | KeyCode::Char('j') => -1,
                KeyCode::PageUp => 10,
                _ => -10,
            }),
            RunKey::Ends => {
                self.log_scroll = match key.code {
                    KeyCode::Home | KeyCode::Char('g') => self.log.len().saturating_sub(1),
                    _ => 0,
                }
            }
        }
        RunAction::None
    }

    fn scroll(&mut self, by: isize) {
        let max = self.log.len().saturating_sub(1);
        self.log_scroll = self.log_scroll.saturating_add_signed(by).min(max);
    }

    /// Seconds left in the current stage: its remaining batches at the smoothed images/s, plus
    /// its remaining evaluations at their mean duration so far.
    pub fn eta_seconds(&self) -> Option<f64> {
        let s = self.stage.as_ref()?;
        let b = self.batch.as_ref()?;
        let ips = self.images_per_sec.filter(|v| *v > 0.0)?;
        let per_batch = s.images_per_epoch as f64 / s.batches_per_epoch.max(1) as f64;
        let batches_left = (s.num_epochs.saturating_sub(b.epoch + 1)) * s.batches_per_epoch
            + b.batches.saturating_sub(b.batch + 1);
        let evals: Vec<f64> = self
            .epochs
            .iter()
            .filter(|e| e.stage == s.stage)
            .map(|e| e.eval_seconds)
            .collect();
        let eval_mean = if evals.is_empty() {
            0.0
        } else {
            evals.iter().sum::<f64>() / evals.len() as f64
        };
        let evals_left = s.num_epochs.saturating_sub(b.epoch) as f64;
        Some(batches_left as f64 * per_batch / ips + evals_left * eval_mean)
    }
}

/// Validation curves over the epochs of one or two stages.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochCurves {
    /// Top-1 per epoch, x = epoch index across the plan (0-based, as the log counts).
    pub top1: Vec<(f64, f64)>,
    /// ECE per epoch.
    pub ece: Vec<(f64, f64)>,
    /// x of the stage boundary, between the last stage-1 and the first stage-2 epoch.
    pub boundary: Option<f64>,
}

/// Top-1 and ECE curves over epochs of one or two stages, with the stage boundary.
pub fn epoch_curves(epochs: &[crate::events::EpochReport]) -> EpochCurves {
    let top1 = epochs
        .iter()
        .enumerate()
        .map(|(i, e)| (i as f64, e.eval.top1))
        .collect();
    let ece = epochs
        .iter()
        .enumerate()
        .map(|(i, e)| (i as f64, e.eval.ece))
        .collect();
    let boundary = epochs
        .windows(2)
        .position(|w| w[0].stage != w[1].stage)
        .map(|i| i as f64 + 0.5);
    EpochCurves {
        top1,
        ece,
        boundary,
    }
}

/// Per-class bars of an evaluation, classes ordered by descending training count (index order
/// when the counts are unknown), banded by the head/medium/tail class-index ranges.
pub fn class_bars(eval: &EvalReport, counts: &[usize], bands: [[usize; 2]; 3]) -> Vec<ClassBar> {
    let mut order: Vec<usize> = (0..eval.per_class.len()).collect();
    if counts.len() == order.len() {
        order.sort_by_key(|&c| std::cmp::Reverse(counts[c]));
    }
    let band = |c: usize| {
        let within = |r: [usize; 2]| r[0] <= c && c < r[1];
        if within(bands[2]) {
            Band::Tail
        } else if within(bands[1]) {
            Band::Medium
        } else {
            Band::Head
        }
    };
    order
        .into_iter()
        .map(|c| ClassBar {
            accuracy: eval.per_class[c],
            band: band(c),
        })
        .collect()
}

/// Title of the per-class panel.
pub const CLASS_TITLE: &str = "Per-class top-1";

/// The two splits of an evaluation's per-class accuracy, each under its own name: many/medium/
/// few-shot by training count (> 100, 20–100, < 20 images, as the paper's tables) and
/// head/medium/tail by the preset's class-index ranges. Short forms when `width` is narrow.
pub fn split_lines(e: &EvalReport, width: usize) -> [String; 2] {
    let f = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"));
    let (many, med, few) = (f(e.many_shot), f(e.medium_shot), f(e.few_shot));
    let (h, m, t) = (f(Some(e.head)), f(Some(e.medium)), f(Some(e.tail)));
    let long = [
        format!("many-shot {many} · medium-shot {med} · few-shot {few}"),
        format!("head {h} · medium {m} · tail {t} (index ranges)"),
    ];
    let mid = [
        format!("many/med/few-shot {many}/{med}/{few}"),
        format!("head/med/tail {h}/{m}/{t}"),
    ];
    let fits = |l: &[String; 2]| l.iter().all(|l| l.chars().count() <= width);
    if fits(&long) {
        long
    } else if fits(&mid) {
        mid
    } else {
        [format!("many/med/few {many}/{med}/{few}"), mid[1].clone()]
    }
}

/// Draws the per-class panel's inside: the two splits, then the bars.
pub fn draw_classes(
    eval: Option<&EvalReport>,
    bars: &[ClassBar],
    theme: Theme,
    f: &mut Frame<'_>,
    area: Rect,
) {
    let Some(e) = eval else {
        f.render_widget(ClassBars::new(bars, theme), area);
        return;
    };
    let [text, plot] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(area);
    let lines = split_lines(e, usize::from(text.width)).map(|l| Line::styled(l, theme.dim()));
    f.render_widget(Paragraph::new(lines.to_vec()), text);
    f.render_widget(ClassBars::new(bars, theme), plot);
}

/// `text` cut into pieces of at most `width` chars.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() || width == 0 {
        return vec![String::new()];
    }
    chars.chunks(width).map(|c| c.iter().collect()).collect()
}

/// Rows of the progress panel below its first line: the error of a failed run wrapped (at most
/// 6 rows), else 2.
fn progress_rows(run: &RunScreen, width: u16) -> u16 {
    match &run.state {
        RunState::Failed(msg) => failure_lines(msg, usize::from(width)).len().clamp(2, 6) as u16,
        _ => 2,
    }
}

/// An error message wrapped to `width`, line breaks kept.
fn failure_lines(msg: &str, width: usize) -> Vec<String> {
    msg.lines()
        .map(|l| l.replace('\t', "  ").replace(char::is_control, ""))
        .flat_map(|l| wrap(&l, width))
        .collect()
}

/// A text progress bar of `width` cells.
fn bar(frac: f64, width: usize) -> (String, String) {
    let filled = ((frac.clamp(0.0, 1.0)) * width as f64).round() as usize;
    ("━".repeat(filled), "─".repeat(width - filled))
}

fn state_badge(state: &RunState, theme: Theme) -> Span<'static> {
    match state {
        RunState::Starting => Span::styled("◌ starting", theme.warn()),
        RunState::Running => Span::styled("● running", theme.good()),
        RunState::Paused => Span::styled("⏸ paused", theme.warn()),
        RunState::Stopping => Span::styled("■ stopping: saving a checkpoint…", theme.warn()),
        RunState::Finished => Span::styled("✓ ended", theme.good()),
        RunState::Stopped => Span::styled("■ stopped", theme.warn()),
        RunState::Failed(_) => Span::styled("✗ failed", theme.bad()),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Draws the run screen in `area`.
pub fn draw(run: Option<&RunScreen>, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let Some(run) = run else {
        let text = vec![
            Line::from(""),
            Line::from("No run launched from this window yet."),
            Line::from(""),
            Line::from(
                "Pick a preset (1), adjust it (Enter), then r runs its stage or b both stages.",
            ),
            Line::from(
                "Runs already in saved/, including headless ones, are on the runs screen (4).",
            ),
        ];
        f.render_widget(
            Paragraph::new(text)
                .block(panel("Run", false, theme))
                .centered(),
            area,
        );
        return;
    };
    let top_h = 2 + 1 + progress_rows(run, area.width.saturating_sub(2));
    let [top, rest] = Layout::vertical([Constraint::Length(top_h), Constraint::Min(0)]).areas(area);
    draw_progress(run, theme, f, top);
    if run.zoom {
        draw_panel(run, run.focus, theme, f, rest);
        return;
    }
    let [charts, bottom] =
        Layout::vertical([Constraint::Percentage(47), Constraint::Percentage(53)]).areas(rest);
    let [loss, top1, ece] = Layout::horizontal([
        Constraint::Percentage(40),
        Constraint::Percentage(30),
        Constraint::Percentage(30),
    ])
    .areas(charts);
    let [rel, classes, log] = Layout::horizontal([
        Constraint::Max(40),
        Constraint::Percentage(33),
        Constraint::Min(20),
    ])
    .areas(bottom);
    for (p, a) in [
        (Panel::Loss, loss),
        (Panel::Top1, top1),
        (Panel::Ece, ece),
        (Panel::Reliability, rel),
        (Panel::Classes, classes),
        (Panel::Log, log),
    ] {
        draw_panel(run, p, theme, f, a);
    }
}

fn draw_progress(run: &RunScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let mut device =
        run.stage
            .as_ref()
            .map_or_else(String::new, |s| match s.device.memory_total_bytes {
                Some(m) => format!(" {} · {}", s.device.name, gib(m)),
                None => format!(" {}", s.device.name),
            });
    if let Some(b) = &run.batch {
        device.push_str(&format!(" · RAM {}", gib(b.memory_bytes)));
    }
    let mut block = panel(&format!("Run · {}", run.label), false, theme);
    if !device.is_empty() {
        // No title at all when empty: a lone space would leave a gap in the border.
        device.push(' ');
        block = block.title(Line::from(device).right_aligned());
    }
    let inner = block.inner(area);
    f.render_widget(block, area);
    let w = usize::from(inner.width);
    let dim = theme.dim();
    let mut head = vec![state_badge(&run.state, theme), Span::raw("  ")];
    if let Some(s) = &run.stage {
        head.push(Span::styled(
            format!(
                "stage {} of {} ({}) · {} · {}",
                run.stage_number, run.stages_planned, s.stage, s.name, s.dataset
            ),
            theme.title(),
        ));
    } else if let RunState::Failed(_) = &run.state {
        head.push(Span::styled("before the first stage started", dim));
    } else {
        head.push(Span::styled("loading the data set…", dim));
    }
    let mut lines = vec![Line::from(head)];
    if let RunState::Failed(msg) = &run.state {
        // The error in full, in place of the progress bars it ended.
        lines.extend(
            failure_lines(msg, w)
                .into_iter()
                .map(|l| Line::styled(l, theme.bad())),
        );
    } else if let (Some(s), Some(b)) = (&run.stage, &run.batch) {
        lines.extend(progress_bars(run, (s, b), w, theme));
    } else if let Some(s) = &run.stage {
        lines.push(Line::from(Span::styled(
            format!(
                "Epoch [{}] of {} · {} batches of {} images per epoch",
                run.epoch, s.num_epochs, s.batches_per_epoch, s.images_per_epoch
            ),
            dim,
        )));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// The epoch and batch bars of a run at batch `b` of stage `s`, for `w` columns.
fn progress_bars(
    run: &RunScreen,
    (s, b): (&StageStarted, &BatchStats),
    w: usize,
    theme: Theme,
) -> [Line<'static>; 2] {
    let dim = theme.dim();
    let epoch_label = format!("Epoch [{}] of {}", run.epoch, s.num_epochs);
    let label_w = epoch_label.chars().count().max(13) + 1;
    let tail_w = 34usize;
    let bar_w = w.saturating_sub(label_w + tail_w + 2).max(4);
    // Between an epoch's start and its first batch, the new epoch is at batch 0.
    let (done_batches, batches) = if b.epoch == run.epoch {
        (b.batch + 1, b.batches.max(1))
    } else {
        (0, s.batches_per_epoch.max(1))
    };
    let ep_frac =
        (run.epoch as f64 + done_batches as f64 / batches as f64) / s.num_epochs.max(1) as f64;
    let (done, todo) = bar(ep_frac, bar_w);
    // An ended run has nothing left to wait for.
    let eta = match run.is_active() {
        true => run.eta_seconds().map(format_duration),
        false => None,
    }
    .unwrap_or_else(|| "–".into());
    let epoch_line = Line::from(vec![
        Span::raw(format!("{:<label_w$}", epoch_label)),
        Span::styled(done, theme.fg(Color::Cyan)),
        Span::styled(todo, dim),
        Span::raw(format!(" {:>3.0}%  ETA {eta}", ep_frac * 100.0)),
    ]);
    if let Some(p) = &run.eval {
        return [epoch_line, eval_line(p, label_w, bar_w, theme)];
    }
    let (done, todo) = bar(done_batches as f64 / batches as f64, bar_w);
    let lr = run.lr.first().copied().unwrap_or(b.lr);
    let batch_line = Line::from(vec![
        Span::raw(format!(
            "{:<label_w$}",
            format!("Batch {done_batches}/{batches}")
        )),
        Span::styled(done, theme.fg(Color::Cyan)),
        Span::styled(todo, dim),
        Span::raw(format!(
            " {:.0} img/s · lr {lr:.4} · loss {:.3}",
            run.images_per_sec.unwrap_or(0.0),
            run.loss_ema.unwrap_or(b.loss)
        )),
    ]);
    [epoch_line, batch_line]
}

/// The evaluation's progress in place of the batch bar: test images done, images/s, ETA.
fn eval_line(p: &EvalProgress, label_w: usize, bar_w: usize, theme: Theme) -> Line<'static> {
    let frac = p.images_done as f64 / p.images_total.max(1) as f64;
    let (done, todo) = bar(frac, bar_w);
    Line::from(vec![
        Span::raw(format!("{:<label_w$}", "Evaluating")),
        Span::styled(done, theme.fg(Color::Yellow)),
        Span::styled(todo, theme.dim()),
        Span::raw(format!(
            " {}/{} · {:.0} img/s · ETA {}",
            p.images_done,
            p.images_total,
            p.images_per_sec,
            format_duration(p.eta_seconds())
        )),
    ])
}

/// Draws panel `p` of the dashboard in `area`.
fn draw_panel(run: &RunScreen, p: Panel, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let focused = run.focus == p;
    match p {
        Panel::Loss => draw_loss(run, focused, theme, f, area),
        Panel::Top1 | Panel::Ece => draw_epoch_chart(run, p, theme, f, area),
        Panel::Reliability => draw_reliability(run, focused, theme, f, area),
        Panel::Classes => draw_class_panel(run, focused, theme, f, area),
        Panel::Log => draw_log(run, focused, theme, f, area),
    }
}

/// Draws a panel's frame titled `title` in `area`; returns the area inside it.
fn draw_frame(title: &str, focused: bool, theme: Theme, f: &mut Frame<'_>, area: Rect) -> Rect {
    let block = panel(title, focused, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    inner
}

/// The loss panel: the smoothed training loss per batch over the whole plan.
fn draw_loss(run: &RunScreen, focused: bool, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let title = match run.loss_ema {
        Some(l) => format!("Train loss {l:.3}"),
        None => "Train loss".into(),
    };
    let inner = draw_frame(&title, focused, theme, f, area);
    let chart = LineChart::new(
        vec![Curve {
            points: run.loss.points(),
            color: Color::Cyan,
        }],
        "waiting for the first batch",
        theme,
    )
    .boundary(run.loss_boundary, "s2");
    f.render_widget(chart, inner);
}

/// The top-1 or the ECE panel (`p`): the figure of every evaluated epoch.
fn draw_epoch_chart(run: &RunScreen, p: Panel, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let focused = run.focus == p;
    let last = run.epochs.last();
    let EpochCurves {
        top1,
        ece,
        boundary,
    } = epoch_curves(&run.epochs);
    let (title, points, color) = if p == Panel::Top1 {
        let t = match last {
            Some(e) => format!("Top-1 {:.2}% · best {:.2}", e.eval.top1, e.best_top1),
            None => "Top-1 %".into(),
        };
        (t, top1, Color::Green)
    } else {
        let t = match last {
            Some(e) => format!("ECE {:.2}% · at best {:.2}", e.eval.ece, e.best_ece),
            None => "ECE %".into(),
        };
        (t, ece, Color::Red)
    };
    let inner = draw_frame(&title, focused, theme, f, area);
    let chart = LineChart::new(
        vec![Curve {
            points: &points,
            color,
        }],
        "after the first epoch",
        theme,
    )
    .boundary(boundary, "s2")
    .y_floor(0.0);
    f.render_widget(chart, inner);
}

/// The reliability panel: the last evaluation's confidence bins.
fn draw_reliability(run: &RunScreen, focused: bool, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let last = run.epochs.last();
    let title = match last {
        Some(e) => format!("Reliability · ECE {:.2}%", e.eval.ece),
        None => "Reliability".into(),
    };
    let inner = draw_frame(&title, focused, theme, f, area);
    let bins = last.map_or(&[][..], |e| &e.eval.bins[..]);
    f.render_widget(Reliability::new(bins, theme), inner);
}

/// The classes panel: the last evaluation's accuracy per class.
fn draw_class_panel(run: &RunScreen, focused: bool, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let last = run.epochs.last();
    let inner = draw_frame(CLASS_TITLE, focused, theme, f, area);
    let bars = match (last, &run.stage) {
        (Some(e), Some(s)) => class_bars(
            &e.eval,
            &s.class_counts,
            [s.head_class_idx, s.med_class_idx, s.tail_class_idx],
        ),
        _ => Vec::new(),
    };
    draw_classes(last.map(|e| &e.eval), &bars, theme, f, inner);
}

/// The log panel: the newest lines that fit, or the lines scrolled back to.
fn draw_log(run: &RunScreen, focused: bool, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let title = if run.log_scroll > 0 {
        format!("Log · {} lines up (End follows)", run.log_scroll)
    } else {
        "Log".into()
    };
    let inner = draw_frame(&title, focused, theme, f, area);
    let h = usize::from(inner.height);
    let end = run.log.len().saturating_sub(run.log_scroll);
    // Long lines wrap; gather rows from the newest line back until the panel is full.
    let mut rows: Vec<Line<'_>> = Vec::new();
    for l in run.log[..end].iter().rev() {
        let style = if l.starts_with('✗') {
            theme.bad()
        } else {
            ratatui::style::Style::new()
        };
        let mut wrapped = wrap(l, usize::from(inner.width));
        while let Some(piece) = wrapped.pop() {
            rows.push(Line::styled(piece, style));
        }
        if rows.len() >= h {
            break;
        }
    }
    rows.truncate(h);
    rows.reverse();
    f.render_widget(Paragraph::new(rows), inner);
}
