//! Drawing the Methods view ([`super::methods`]): the checklist with each trained method's
//! run on each backbone, the stage-1 runs offered as backbones beside this one, the
//! comparison's progress; the results table (top-1 and ECE with their 95 % intervals, NLL,
//! what was fitted), its protocol, backbones and output folder, and the reliability curves of
//! the rows shown, one colour each, over the diagonal. Nothing here changes state.
use super::methods::{
    base_name, find_trained, Backbone, Found, Item, Job, MethodsScreen, Page, Trained,
};
use super::theme::Theme;
use super::view::panel;
use crate::compare::cli::base_label;
use crate::compare::methods::{MethodResult, MethodSpec};
use crate::compare::posthoc::Fitted;
use crate::compare::test_priors::TestPriorComparison;
use crate::run_dir::RunSummary;
use crate::runs::status::FolderFacts;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Colours of the reliability curves, by row (the table's `●` is the legend).
pub const PALETTE: [Color; 6] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::LightRed,
    Color::LightBlue,
];

/// What the Methods screen draws besides its own state: the saved runs and their folders'
/// facts (which trained methods have a run), the folders this process writes, the styles.
#[derive(Debug, Clone, Copy)]
pub struct MethodsView<'a> {
    /// Every run in `saved/`.
    pub runs: &'a [RunSummary],
    /// What their folders say.
    pub facts: &'a HashMap<PathBuf, FolderFacts>,
    /// Folders this process writes.
    pub live: &'a [PathBuf],
    /// Styles.
    pub theme: Theme,
}

/// Draws the Methods screen of `m` in `area` (a word on how to open one when there is none).
pub fn draw(m: Option<&MethodsScreen>, v: &MethodsView<'_>, f: &mut Frame<'_>, area: Rect) {
    let theme = v.theme;
    let Some(m) = m else {
        let block = panel("Methods", true, theme);
        let text = vec![
            Line::raw("No run chosen yet."),
            Line::styled(
                "On the runs screen (4), m on a finished stage-1 run compares methods on it.",
                theme.dim(),
            ),
        ];
        f.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: false }).block(block),
            area,
        );
        return;
    };
    match (m.page, &m.result) {
        (Page::Results, Some((c, out))) => {
            let title = format!(
                "Methods · {} · 95 % {} CI of {} bootstrap draws",
                m.name,
                c.interval.name(),
                c.draws
            );
            let block = panel(&title, true, theme);
            let inner = block.inner(area);
            f.render_widget(block, area);
            draw_results(m, (c, out), theme, f, inner);
        }
        _ => draw_checklist(m, v, f, area),
    }
}

/// `saved/x/compare` rather than the whole path, when it lies under the current folder.
fn short_path(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|d| p.strip_prefix(d).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
        .display()
        .to_string()
}

/// The folder name of a path.
fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A trained method's mark in the checklist: its run, or what Enter does.
fn found_mark(found: &Found, theme: Theme) -> Span<'static> {
    match found {
        Found::Finished { .. } => Span::styled("✓ run done", theme.good()),
        Found::Training(_) => Span::styled("● training", theme.warn()),
        Found::Missing => Span::styled("+ trains", theme.dim()),
    }
}

/// A trained method's mark on one of several backbones: `✓` its run is done, `●` training,
/// `+` Enter trains it.
fn found_symbol(found: &Found, theme: Theme) -> Span<'static> {
    match found {
        Found::Finished { .. } => Span::styled("✓", theme.good()),
        Found::Training(_) => Span::styled("●", theme.warn()),
        Found::Missing => Span::styled("+", theme.dim()),
    }
}

/// Checklist line `i`: cursor, check box (`on`), name, then `rest`.
fn check_line(
    m: &MethodsScreen,
    (i, on): (usize, bool),
    name: &str,
    rest: Vec<Span<'static>>,
    theme: Theme,
) -> Line<'static> {
    let mark = if on { "[x]" } else { "[ ]" };
    let cursor = if i == m.cursor { "▶" } else { " " };
    let mut spans = vec![Span::raw(format!("{cursor}{mark} {name:<18}"))];
    spans.extend(rest);
    let line = Line::from(spans);
    if i == m.cursor {
        line.style(theme.selected())
    } else {
        line
    }
}

/// The checklist's lines (with headings) and the line of the cursor; `found[i]` is trained
/// item `i`'s run on each backbone.
fn checklist_lines(
    m: &MethodsScreen,
    found: &[Vec<Found>],
    theme: Theme,
) -> (Vec<Line<'static>>, usize) {
    let file = m
        .checkpoint()
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    let several = m.backbones.len() > 1;
    let post_hoc = match several {
        true => format!("Post-hoc, on each backbone's {file}"),
        false => format!("Post-hoc, on {file}"),
    };
    let mut lines = vec![Line::styled(post_hoc, theme.title())];
    let mut at = 0;
    for (i, item) in m.items.iter().enumerate() {
        if matches!(item, Item::Trained(_)) && !matches!(m.items[i - 1], Item::Trained(_)) {
            let names: Vec<&str> = m.backbones.iter().map(|b| b.name.as_str()).collect();
            lines.push(Line::styled(
                match several {
                    true => format!("Trained, from each: {}", names.join(" ")),
                    false => "Trained, stage-2 runs from it".to_owned(),
                },
                theme.title(),
            ));
        }
        if i == m.cursor {
            at = lines.len();
        }
        let marks = match found.get(i).map(Vec::as_slice) {
            Some([one]) => vec![found_mark(one, theme)],
            Some(each) => each
                .iter()
                .flat_map(|f| [found_symbol(f, theme), Span::raw(" ")])
                .collect(),
            None => Vec::new(),
        };
        lines.push(check_line(
            m,
            (i, m.checked[i]),
            &item.label(),
            marks,
            theme,
        ));
    }
    candidate_lines(m, theme, &mut lines, &mut at);
    (lines, at)
}

/// The offered backbones' lines, under a heading, appended to `lines`; `at` becomes the
/// cursor's line when it is on one of them.
fn candidate_lines(
    m: &MethodsScreen,
    theme: Theme,
    lines: &mut Vec<Line<'static>>,
    at: &mut usize,
) {
    if !m.candidates.is_empty() {
        lines.push(Line::styled(
            "Backbones beside it (Space adds)",
            theme.title(),
        ));
    }
    for (k, r) in m.candidates.iter().enumerate() {
        let i = m.items.len() + k;
        if i == m.cursor {
            *at = lines.len();
        }
        let label = r.config.as_ref().map_or("?", |c| {
            crate::engine::recipe::catalogue::of_stage1(c).label
        });
        let rest = match m.added(k) {
            Some(b) => Span::styled(format!("as {}", b.name), theme.good()),
            None => Span::styled(r.name.clone(), theme.dim()),
        };
        lines.push(check_line(
            m,
            (i, m.added(k).is_some()),
            label,
            vec![rest],
            theme,
        ));
    }
}

/// What the right pane says of trained method `t`'s run on backbone `b` (found as `found`).
fn trained_note(
    m: &MethodsScreen,
    t: Trained,
    b: &Backbone,
    found: &Found,
    theme: Theme,
) -> Line<'static> {
    let dim = theme.dim();
    let on = match m.backbones.len() {
        1 => String::new(),
        _ => format!("{}: ", b.name),
    };
    match found {
        Found::Finished { dir, .. } => {
            Line::styled(format!("{on}its run: {}", file_name(dir)), dim)
        }
        Found::Training(dir) => Line::styled(
            format!("{on}training in {}: compared once it ends", file_name(dir)),
            theme.warn(),
        ),
        Found::Missing => match b.plan_of(t) {
            Some(Ok(p)) => Line::styled(
                format!(
                    "{on}Enter trains it: {} epochs from {}",
                    p.config.num_epochs, p.from
                ),
                dim,
            ),
            Some(Err(e)) => Line::styled(format!("{on}cannot train it: {e}"), theme.bad()),
            None => Line::raw(""),
        },
    }
}

/// What the right pane says of the line under the cursor: a post-hoc method, a trained
/// method's run on each backbone, or an offered backbone.
fn cursor_note(m: &MethodsScreen, found: &[Vec<Found>], theme: Theme) -> Vec<Line<'static>> {
    let dim = theme.dim();
    let Some(item) = m.items.get(m.cursor) else {
        return candidate_note(m, m.cursor - m.items.len(), theme);
    };
    match item {
        Item::PostHoc(s) => vec![Line::styled(
            format!("{}: post-hoc, fitted on the validation split", spec_word(s)),
            dim,
        )],
        Item::Trained(t) => m
            .backbones
            .iter()
            .zip(found.get(m.cursor).into_iter().flatten())
            .map(|(b, f)| trained_note(m, t, b, f, theme))
            .collect(),
    }
}

/// What the right pane says of offered backbone `k`: its run, and what Space does.
fn candidate_note(m: &MethodsScreen, k: usize, theme: Theme) -> Vec<Line<'static>> {
    let Some(r) = m.candidates.get(k) else {
        return Vec::new();
    };
    let dim = theme.dim();
    let mut lines = vec![Line::styled(format!("run {}", r.name), dim)];
    match m.added(k) {
        Some(b) => lines.push(Line::styled(
            format!(
                "a backbone as {}: every checked method runs on its {} too (Space removes it)",
                b.name,
                file_name(&b.checkpoint)
            ),
            theme.good(),
        )),
        None => {
            let taken: Vec<&str> = m.backbones.iter().map(|b| b.name.as_str()).collect();
            let name = r
                .config
                .as_ref()
                .map_or_else(String::new, |c| base_name(c, &taken));
            lines.push(Line::styled(
                format!("Space adds it as backbone {name} beside {}", m.name),
                dim,
            ));
        }
    }
    lines
}

/// `ce+tau-norm`.
fn spec_word(s: &MethodSpec) -> String {
    super::methods::spec_text(s)
}

/// The checklist and, beside it, the note on the selected method and the comparison's
/// progress or error.
fn draw_checklist(m: &MethodsScreen, v: &MethodsView<'_>, f: &mut Frame<'_>, area: Rect) {
    let theme = v.theme;
    let title = match m.backbones.len() {
        1 => format!("Methods · {} · Space check · Enter run", m.name),
        n => format!(
            "Methods · {} + {} backbone{} · Space check · Enter run",
            m.name,
            n - 1,
            if n == 2 { "" } else { "s" }
        ),
    };
    let block = panel(&title, true, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let found: Vec<Vec<Found>> = m
        .items
        .iter()
        .map(|i| match i {
            Item::Trained(t) => m
                .backbones
                .iter()
                .map(|b| find_trained(t, &b.checkpoint, v.runs, v.facts, v.live))
                .collect(),
            Item::PostHoc(_) => Vec::new(),
        })
        .collect();
    let (lines, at) = checklist_lines(m, &found, theme);
    // 36 columns, wider for the marks and names of several backbones (at most 3/5 of the
    // view).
    let widest = lines.iter().map(Line::width).max().unwrap_or(0) as u16;
    let width = widest.clamp(36, (inner.width * 3 / 5).max(36));
    let [list, right] = Layout::horizontal([Constraint::Length(width), Constraint::Min(10)])
        .spacing(1)
        .areas(inner);
    let height = usize::from(list.height);
    let offset = (at + 1).saturating_sub(height) as u16;
    f.render_widget(Paragraph::new(lines).scroll((offset, 0)), list);
    let mut note = cursor_note(m, &found, theme);
    note.push(Line::raw(""));
    note.extend(progress_lines(m, theme, usize::from(right.height)));
    f.render_widget(Paragraph::new(note).wrap(Wrap { trim: false }), right);
}

/// The comparison's state and its last progress lines, at most `room`.
fn progress_lines(m: &MethodsScreen, theme: Theme, room: usize) -> Vec<Line<'static>> {
    let head = match (&m.job, &m.result) {
        (Job::Running, _) => Line::styled(
            match &m.progress {
                Some(p) => format!("comparing… {} · x cancels", p.line()),
                None => "comparing… · x cancels".to_owned(),
            },
            theme.warn(),
        ),
        (Job::Failed(why), _) if why == crate::compare::cache::CANCELLED => {
            Line::styled("comparison cancelled", theme.warn())
        }
        (Job::Failed(why), _) => Line::styled(format!("comparison failed: {why}"), theme.bad()),
        (Job::Idle, Some(_)) => Line::styled("Tab shows the last results", theme.good()),
        (Job::Idle, None) => Line::styled("no comparison yet", theme.dim()),
    };
    let keep = room.saturating_sub(4);
    let tail = m.log.len().saturating_sub(keep);
    std::iter::once(head)
        .chain(
            m.log[tail..]
                .iter()
                .map(|l| Line::styled(l.clone(), theme.dim())),
        )
        .collect()
}

/// A row's name: `CE+τ-norm+TS`, `cRT+TS`; with several backbones the comparison's own
/// (`Balanced Softmax + TS`, `MiSLAS on Balanced Softmax`), which says the backbone.
fn row_name(c: &crate::compare::report::Comparison, r: &MethodResult) -> String {
    match c.bases.is_empty() {
        true => short_name(r),
        false => r.name.clone(),
    }
}

/// A row's short name: `CE+τ-norm+TS`, `cRT+TS`.
fn short_name(r: &MethodResult) -> String {
    match MethodSpec::parse(&r.spec) {
        Ok(s) => {
            let base = if s.base == "ce" {
                "CE".to_owned()
            } else {
                base_label(&s.base)
            };
            std::iter::once(base)
                .chain(s.steps.iter().map(|st| st.label().to_owned()))
                .collect::<Vec<_>>()
                .join("+")
        }
        Err(_) => r.name.clone(),
    }
}

/// What a row fitted, briefly: `T=1.42`, `τ=0.75, T=1.10`, `NCM`.
fn fitted_short(r: &MethodResult) -> String {
    let parts: Vec<String> = r
        .fitted
        .iter()
        .map(|f| match f {
            Fitted::TauNorm { tau, .. } => format!("τ={tau:.2}"),
            Fitted::Ncm => "NCM means".into(),
            Fitted::LogitAdjustment { tau, .. } => format!("LA τ={tau:.1}"),
            Fitted::Temperature { t, .. } => format!("T={}", short_number(*t)),
            Fitted::Vector { .. } => "VS a, b".into(),
            Fitted::TestPrior { estimator, .. } => format!("prior {estimator}"),
        })
        .collect();
    match (parts.is_empty(), r.spec.starts_with("ce")) {
        (true, true) => "–".into(),
        (true, false) => "stage 2".into(),
        (false, _) => parts.join(", "),
    }
}

/// A figure in at most 6 columns: `0.812`, `12.34`, `4.0e4`.
fn short_number(v: f64) -> String {
    match v.abs() {
        a if a < 10.0 => format!("{v:.3}"),
        a if a < 1000.0 => format!("{v:.1}"),
        _ => format!("{v:.1e}"),
    }
}

/// `45.23 [43.10,47.30]`.
fn with_ci(v: f64, lo: f64, hi: f64) -> String {
    format!("{v:.2} [{lo:.2},{hi:.2}]")
}

/// The protocol, the table, the output folder and the reliability curves.
fn draw_results(
    m: &MethodsScreen,
    (c, out): (&crate::compare::report::Comparison, &PathBuf),
    theme: Theme,
    f: &mut Frame<'_>,
    area: Rect,
) {
    let table_h = (c.rows.len() as u16 + 1).min(area.height.saturating_sub(10).max(3));
    let legend = u16::from(!c.bases.is_empty());
    let [protocol, table, written, chart] = Layout::vertical([
        Constraint::Length(2 + legend),
        Constraint::Length(table_h),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    let dim = theme.dim();
    let mut protocol_lines = vec![
        Line::from(vec![
            Span::styled("fitted on ", dim),
            Span::raw(c.validation.clone()),
        ]),
        Line::from(match m.prior_name() {
            None => vec![
                Span::styled("scored on ", dim),
                Span::raw(c.scored.clone()),
                Span::styled(prior_hint(m), dim),
            ],
            Some(name) => vec![
                Span::styled("scored on ", dim),
                Span::styled(format!("test prior {name}"), theme.warn()),
                Span::styled(format!(" of {}", c.scored), dim),
                Span::styled(prior_hint(m), dim),
            ],
        }),
    ];
    if legend > 0 {
        protocol_lines.push(backbones_line(m, c, theme));
    }
    f.render_widget(Paragraph::new(protocol_lines), protocol);
    draw_table(m, c, theme, f, table);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("written to ", dim),
            Span::raw(short_path(out)),
            Span::styled(": results.csv, results.md, figures/", dim),
        ])),
        written,
    );
    match &m.priors {
        Some(p) => {
            let [left, right] = Layout::horizontal([Constraint::Ratio(1, 2); 2]).areas(chart);
            draw_curves(m, c, theme, f, left);
            let [top, bottom] = Layout::vertical([Constraint::Ratio(1, 2); 2]).areas(right);
            let v = PriorChart { m, c, p, theme };
            draw_prior_chart(&v, PriorFigure::Top1, f, top);
            draw_prior_chart(&v, PriorFigure::Ece, f, bottom);
        }
        None => draw_curves(m, c, theme, f, chart),
    }
}

/// `backbones: ce = fm_s1 · balanced_softmax = fm_bs (Balanced Softmax)`: which run each
/// stage-1 base of the comparison is.
fn backbones_line(
    m: &MethodsScreen,
    c: &crate::compare::report::Comparison,
    theme: Theme,
) -> Line<'static> {
    let run_of = |name: &str, path: &str| {
        m.backbones
            .iter()
            .find(|b| b.name == name)
            .map_or_else(|| path.to_owned(), |b| b.run.clone())
    };
    let mut spans = vec![
        Span::styled("backbones: ", theme.dim()),
        Span::raw(format!("ce = {}", m.name)),
    ];
    for (name, label, path) in &c.bases {
        spans.push(Span::styled(" · ", theme.dim()));
        spans.push(Span::raw(format!("{name} = {}", run_of(name, path))));
        spans.push(Span::styled(format!(" ({label})"), theme.dim()));
    }
    Line::from(spans)
}

/// ` · p: test prior` when the comparison scored shifted test priors.
fn prior_hint(m: &MethodsScreen) -> &'static str {
    match &m.priors {
        Some(_) => " · p: test prior",
        None => "",
    }
}

/// A figure drawn against the test prior.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorFigure {
    /// Top-1 over the images, %.
    Top1,
    /// ECE, %.
    Ece,
}

/// Each shown row's `figure` on each shifted set, as `(x, y)` in increasing x, with x the
/// set's position on the prior axis (−ln ρ forward, 0 uniform, +ln ρ backward:
/// [`crate::compare::shift::TestPrior::axis`]); rows as the table's colours.
pub fn prior_points(
    m: &MethodsScreen,
    c: &crate::compare::report::Comparison,
    p: &TestPriorComparison,
    figure: PriorFigure,
) -> Vec<(usize, Vec<(f64, f64)>)> {
    c.rows
        .iter()
        .enumerate()
        .filter(|(i, _)| m.shown.get(*i).copied().unwrap_or(false))
        .map(|(i, r)| {
            let mut pts: Vec<(f64, f64)> = p
                .sets
                .iter()
                .filter_map(|s| {
                    let f = &s.rows.iter().find(|x| x.spec == r.spec)?.figures;
                    let y = match figure {
                        PriorFigure::Top1 => f.top1,
                        PriorFigure::Ece => f.ece,
                    };
                    Some((s.set.prior.axis(), y))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (i, pts)
        })
        .collect()
}

/// A test prior's name on a narrow axis: `fwd50`, `uniform`, `bwd50`.
fn axis_name(p: crate::compare::shift::TestPrior) -> String {
    use crate::compare::shift::TestPrior;
    match p {
        TestPrior::Forward(r) => format!("fwd{r}"),
        TestPrior::Uniform => "uniform".into(),
        TestPrior::Backward(r) => format!("bwd{r}"),
    }
}

/// What a chart against the test prior draws: the screen (rows shown, the table's prior), the
/// comparison (rows, in the table's order), its shifted-prior figures, the styles.
#[derive(Debug, Clone, Copy)]
struct PriorChart<'a> {
    m: &'a MethodsScreen,
    c: &'a crate::compare::report::Comparison,
    p: &'a TestPriorComparison,
    theme: Theme,
}

/// `figure` against the test prior, one line per shown row in its colour, the table's test
/// prior marked with a dotted vertical line; the x axis names its first, middle and last sets.
fn draw_prior_chart(v: &PriorChart<'_>, figure: PriorFigure, f: &mut Frame<'_>, area: Rect) {
    let PriorChart { m, c, p, theme } = *v;
    let points = prior_points(m, c, p, figure);
    let mut sorted: Vec<(f64, String)> = p
        .sets
        .iter()
        .map(|s| (s.set.prior.axis(), axis_name(s.set.prior)))
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return;
    };
    let xb = if last.0 > first.0 {
        [first.0, last.0]
    } else {
        [first.0 - 0.5, first.0 + 0.5]
    };
    let ys = points.iter().flat_map(|(_, p)| p.iter().map(|q| q.1));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| {
        (l.min(y), h.max(y))
    });
    let (lo, hi) = match lo.is_finite() {
        true => ((lo - 1.0).max(0.0), hi + 1.0),
        false => (0.0, 100.0),
    };
    let marked = m
        .prior
        .and_then(|i| p.sets.get(i))
        .map(|s| [(s.set.prior.axis(), lo), (s.set.prior.axis(), hi)]);
    let mut sets = Vec::new();
    if let Some(line) = &marked {
        let set = Dataset::default()
            .graph_type(GraphType::Line)
            .marker(Marker::Dot);
        sets.push(set.style(theme.warn()).data(line));
    }
    for (i, pts) in &points {
        let style = theme.fg(PALETTE[i % PALETTE.len()]);
        let set = Dataset::default()
            .graph_type(GraphType::Line)
            .marker(Marker::Braille);
        sets.push(set.style(style).data(pts));
    }
    let title = match figure {
        PriorFigure::Top1 => "Top-1 % by test prior",
        PriorFigure::Ece => "ECE % by test prior",
    };
    let mid = &sorted[sorted.len() / 2].1;
    let x_labels = vec![
        Span::raw(first.1.clone()),
        Span::raw(if sorted.len() > 2 {
            mid.clone()
        } else {
            String::new()
        }),
        Span::raw(last.1.clone()),
    ];
    let y_labels = vec![Span::raw(format!("{lo:.0}")), Span::raw(format!("{hi:.0}"))];
    let chart = Chart::new(sets)
        .block(panel(title, false, theme))
        .x_axis(
            Axis::default()
                .bounds(xb)
                .labels(x_labels)
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .labels(y_labels)
                .style(theme.dim()),
        );
    f.render_widget(chart, area);
}

/// The results table; the selected row highlighted, each row's `●` in its curve's colour
/// (`○` when its curve is hidden).
fn draw_table(
    m: &MethodsScreen,
    c: &crate::compare::report::Comparison,
    theme: Theme,
    f: &mut Frame<'_>,
    area: Rect,
) {
    let rows: Vec<Row<'_>> = c
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (fig, ci) = (&r.figures[0], &r.intervals[0]);
            let (top1, ece, nll) = match m.prior_figures(&r.spec) {
                Some(p) => (
                    with_ci(p.top1, p.top1_ci.lo, p.top1_ci.hi),
                    with_ci(p.ece, p.ece_ci.lo, p.ece_ci.hi),
                    short_number(p.nll),
                ),
                None if m.prior.is_some() => ("–".into(), "–".into(), "–".into()),
                None => (
                    with_ci(fig.top1, ci.top1.lo, ci.top1.hi),
                    with_ci(fig.ece, ci.ece.lo, ci.ece.hi),
                    short_number(fig.nll),
                ),
            };
            let shown = m.shown.get(i).copied().unwrap_or(false);
            let dot = match shown {
                true => Span::styled("●", theme.fg(PALETTE[i % PALETTE.len()])),
                false => Span::styled("○", theme.dim()),
            };
            Row::new(vec![
                Line::from(dot),
                Line::raw(row_name(c, r)),
                Line::raw(top1),
                Line::raw(ece),
                Line::raw(nll),
                Line::raw(fitted_short(r)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(1),
        Constraint::Min(10),
        Constraint::Length(20),
        Constraint::Length(20),
        Constraint::Length(6),
        Constraint::Min(8),
    ];
    let header = Row::new([
        "",
        "Method",
        "Top-1 % [95% CI]",
        "ECE % [95% CI]",
        "NLL",
        "Fitted",
    ])
    .style(theme.dim());
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶");
    let mut state = TableState::default().with_selected(Some(m.row));
    f.render_stateful_widget(table, area, &mut state);
}

/// Accuracy against mean confidence of each non-empty bin, one curve per shown row, over the
/// diagonal of perfect calibration.
fn draw_curves(
    m: &MethodsScreen,
    c: &crate::compare::report::Comparison,
    theme: Theme,
    f: &mut Frame<'_>,
    area: Rect,
) {
    let points: Vec<(usize, Vec<(f64, f64)>)> = c
        .rows
        .iter()
        .enumerate()
        .filter(|(i, _)| m.shown.get(*i).copied().unwrap_or(false))
        .map(|(i, r)| {
            let bins = r.figures[0].bins.iter().filter(|b| b.count > 0);
            (i, bins.map(|b| (b.confidence, b.accuracy)).collect())
        })
        .collect();
    let diagonal = [(0.0, 0.0), (1.0, 1.0)];
    let mut sets = vec![Dataset::default()
        .graph_type(GraphType::Line)
        .marker(Marker::Braille)
        .style(theme.dim())
        .data(&diagonal)];
    for (i, p) in &points {
        let style = theme.fg(PALETTE[i % PALETTE.len()]);
        for (graph, marker) in [
            (GraphType::Line, Marker::Braille),
            (GraphType::Scatter, Marker::Dot),
        ] {
            let set = Dataset::default().graph_type(graph).marker(marker);
            sets.push(set.style(style).data(p));
        }
    }
    let labels = |a: &'static str, b: &'static str, c: &'static str| {
        vec![Span::raw(a), Span::raw(b), Span::raw(c)]
    };
    let chart = Chart::new(sets)
        .block(panel(
            "Reliability: accuracy per confidence bin · colours as ● · diagonal ideal",
            false,
            theme,
        ))
        .x_axis(
            Axis::default()
                .title(Span::styled("confidence", theme.dim()))
                .bounds([0.0, 1.0])
                .labels(labels("0", "0.5", "1"))
                .style(theme.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, 1.0])
                .labels(labels("0", ".5", "1"))
                .style(theme.dim()),
        );
    f.render_widget(chart, area);
}
