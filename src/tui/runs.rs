//! The runs screen: the run folders in `saved/` with their final and best figures; one opened
//! shows its curves, last reliability diagram and per-class accuracy from `metrics.jsonl`,
//! re-read every second so that a run a headless `mislas train` is writing is followed live;
//! two can be compared side by side.
use super::run::{class_bars, class_title, epoch_curves, EpochCurves};
use super::theme::Theme;
use super::view::{panel, KeyHelp};
use super::widgets::{ClassBars, Curve, LineChart, Reliability};
use crate::events::EpochReport;
use crate::run_dir::RunSummary;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};
use ratatui::Frame;
use std::path::PathBuf;

/// Keys of the runs screen.
pub const KEYS: &[KeyHelp] = &[
    ("↑↓/jk", "move"),
    ("Enter", "open"),
    ("c", "mark, then compare"),
    ("r", "refresh"),
    ("Esc", "back to the list"),
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
}

/// What a key on the runs screen asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsAction {
    /// Nothing beyond the screen's own state.
    None,
    /// List the runs again.
    Refresh,
    /// Read these runs' `metrics.jsonl` again.
    Load(Vec<PathBuf>),
}

impl RunsScreen {
    /// Replaces the list, keeping the selection on the same folder.
    pub fn set_runs(&mut self, runs: Vec<RunSummary>) {
        let current = self.runs.get(self.selected).map(|r| r.dir.clone());
        self.runs = runs;
        self.selected = current
            .and_then(|d| self.runs.iter().position(|r| r.dir == d))
            .unwrap_or(0);
    }

    /// Updates one run's epochs.
    pub fn set_metrics(&mut self, dir: &std::path::Path, epochs: Vec<EpochReport>) {
        if let Some(r) = self.runs.iter_mut().find(|r| r.dir == dir) {
            r.epochs = epochs;
        }
    }

    /// The folders on screen, to re-read on each tick.
    pub fn open_dirs(&self) -> Vec<PathBuf> {
        match &self.view {
            RunsView::List => Vec::new(),
            RunsView::Detail(d) => vec![d.clone()],
            RunsView::Compare(a, b) => vec![a.clone(), b.clone()],
        }
    }

    fn find(&self, dir: &std::path::Path) -> Option<&RunSummary> {
        self.runs.iter().find(|r| r.dir == dir)
    }

    /// Handles a key.
    pub fn on_key(&mut self, key: KeyEvent) -> RunsAction {
        if self.view != RunsView::List {
            return match key.code {
                KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
                    self.view = RunsView::List;
                    RunsAction::None
                }
                KeyCode::Char('r') => RunsAction::Load(self.open_dirs()),
                _ => RunsAction::None,
            };
        }
        let n = self.runs.len();
        match key.code {
            code if super::list_nav::navigate(&mut self.selected, n, code) => {}
            KeyCode::Char('r') => return RunsAction::Refresh,
            KeyCode::Esc => self.marked = None,
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => {
                if let Some(r) = self.runs.get(self.selected) {
                    self.view = RunsView::Detail(r.dir.clone());
                    return RunsAction::Load(self.open_dirs());
                }
            }
            KeyCode::Char('c') => {
                if let Some(r) = self.runs.get(self.selected) {
                    let dir = r.dir.clone();
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
            _ => {}
        }
        RunsAction::None
    }
}

/// Epochs of the run's stage: from the last record, else its configuration.
fn total_epochs(r: &RunSummary) -> Option<usize> {
    r.epochs
        .last()
        .map(|e| e.num_epochs)
        .or(r.config.as_ref().map(|c| c.num_epochs))
}

/// Draws the runs screen in `area`.
pub fn draw(s: &RunsScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    match &s.view {
        RunsView::List => draw_list(s, theme, f, area),
        RunsView::Detail(d) => match s.find(d) {
            Some(r) => draw_detail(r, theme, f, area, false),
            None => f.render_widget(Paragraph::new("The run folder is gone."), area),
        },
        RunsView::Compare(a, b) => {
            let [left, right] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(area);
            for (d, a) in [(a, left), (b, right)] {
                match s.find(d) {
                    Some(r) => draw_detail(r, theme, f, a, true),
                    None => f.render_widget(Paragraph::new("The run folder is gone."), a),
                }
            }
        }
    }
}

fn draw_list(s: &RunsScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let title = match &s.marked {
        Some(m) => format!(
            "Runs in saved/ · {} marked: c on another compares",
            m.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ),
        None => "Runs in saved/".to_owned(),
    };
    if s.runs.is_empty() {
        f.render_widget(
            Paragraph::new("\nNo run folder in saved/ yet.")
                .centered()
                .block(panel(&title, true, theme)),
            area,
        );
        return;
    }
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
            Row::new(vec![
                format!("{mark}{}", r.name),
                r.stage.map_or("?".into(), |st| st.to_string()),
                format!(
                    "{}/{}",
                    r.epochs.len(),
                    total_epochs(r).map_or("?".into(), |n| n.to_string())
                ),
                fig(last.map(|e| e.eval.top1)),
                fig(last.map(|e| e.best_top1)),
                fig(last.map(|e| e.best_ece)),
                fig(last.map(|e| e.eval.ece)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Min(24),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new([
            "  Run", "Stage", "Epochs", "Top-1", "Best", "ECE@best", "ECE",
        ])
        .style(theme.dim()),
    )
    .block(panel(&title, true, theme))
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(s.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_detail(r: &RunSummary, theme: Theme, f: &mut Frame<'_>, area: Rect, compact: bool) {
    let block = panel(&r.name, !compact, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let dim = theme.dim();
    let last = r.epochs.last();
    let total = total_epochs(r);
    let mut lines = vec![];
    match last {
        Some(e) => {
            let best_epoch = r
                .epochs
                .iter()
                .rfind(|e| e.is_best)
                .map_or(0, |e| e.epoch + 1);
            lines.push(Line::from(vec![
                Span::styled("final ", dim),
                Span::styled(format!("top-1 {:.2}%", e.eval.top1), theme.title()),
                Span::raw(format!(" ECE {:.2}% NLL {:.3}", e.eval.ece, e.eval.nll)),
            ]));
            lines.push(Line::from(vec![
                Span::styled("best  ", dim),
                Span::styled(format!("top-1 {:.2}%", e.best_top1), theme.good()),
                Span::raw(format!(" (epoch {best_epoch}) ECE {:.2}%", e.best_ece)),
            ]));
        }
        None => lines.push(Line::styled("no evaluated epoch yet", dim)),
    }
    let progress = match (r.epochs.len(), total) {
        (n, Some(t)) if n < t => Span::styled(
            format!(
                "{} · epoch {n}/{t} · following metrics.jsonl",
                r.stage.map_or("?".into(), |s| s.to_string())
            ),
            theme.warn(),
        ),
        (n, _) => Span::styled(
            format!(
                "{} · {n} epochs · {}",
                r.stage.map_or("?".into(), |s| s.to_string()),
                r.dir.display()
            ),
            dim,
        ),
    };
    lines.push(Line::from(progress));
    let [summary, charts, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Percentage(50),
        Constraint::Percentage(50),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(lines), summary);
    let EpochCurves {
        top1,
        ece,
        boundary,
    } = epoch_curves(&r.epochs);
    let chart_areas: [Rect; 2] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
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
    let bins = last.map_or(&[][..], |e| &e.eval.bins[..]);
    let rel_title = last.map_or("Reliability".into(), |e| {
        format!("Reliability · epoch {}", e.epoch + 1)
    });
    if compact {
        let block = panel(&rel_title, false, theme);
        let ri = block.inner(bottom);
        f.render_widget(block, bottom);
        f.render_widget(Reliability::new(bins, theme), ri);
        return;
    }
    let [rel, classes] =
        Layout::horizontal([Constraint::Max(40), Constraint::Min(20)]).areas(bottom);
    let block = panel(&rel_title, false, theme);
    let ri = block.inner(rel);
    f.render_widget(block, rel);
    f.render_widget(Reliability::new(bins, theme), ri);
    let block = panel(&class_title(last.map(|e| &e.eval)), false, theme);
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
    f.render_widget(ClassBars::new(&bars, theme), ci);
}
