//! Drawing the app: the header with the screens and the run's state, the current screen, the
//! footer with its keys (or the status message), the help and confirmation overlays, and the
//! "terminal too small" notice below 80×24. Nothing here changes state.
use super::app::{AfterDiscard, App, Confirm, Overlay, Screen, GLOBAL_KEYS};
use super::keys::{help_rows, Binding, KeyHelp, SCROLL_CODES, SCROLL_KEYS};
use super::run::RunState;
use super::screens::{self, SCREENS};
use super::theme::Theme;
use super::{hyperparameters, methods_view, presets, run, runs};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// The smallest terminal the UI draws in.
pub const MIN_SIZE: (u16, u16) = (80, 24);

/// What a key does while the help overlay is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelpKey {
    /// Scroll a line or a page.
    Scroll,
    /// Close the help (any other key).
    Close,
}

/// Keys of the help overlay; a key of no row closes it.
pub const HELP_KEYS: &[Binding<HelpKey>] = &[
    Binding::new(
        SCROLL_CODES,
        SCROLL_KEYS,
        HelpKey::Scroll,
        "scroll",
        "scroll this help",
    ),
    Binding::new(
        &[],
        "any other key",
        HelpKey::Close,
        "close",
        "close this help",
    ),
];

/// The footer's keys that are always shown, at its right end.
const FOOTER_FIXED: &[Hint] = &[("?", "help"), ("q", "quit")];

/// A bordered panel with a title; the focused one has a bold, coloured border.
pub fn panel<'a>(title: &str, focused: bool, theme: Theme) -> Block<'a> {
    let border = if focused { theme.focus() } else { theme.dim() };
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Rounded
        })
        .border_style(border)
        .title(Span::styled(format!(" {title} "), theme.title()))
}

/// A rectangle of `pct_w` × `pct_h` percent centred in `area`.
pub fn centered(area: Rect, pct_w: u16, pct_h: u16) -> Rect {
    let [_, v, _] = Layout::vertical([
        Constraint::Percentage((100 - pct_h) / 2),
        Constraint::Percentage(pct_h),
        Constraint::Percentage((100 - pct_h) / 2),
    ])
    .areas(area);
    let [_, h, _] = Layout::horizontal([
        Constraint::Percentage((100 - pct_w) / 2),
        Constraint::Percentage(pct_w),
        Constraint::Percentage((100 - pct_w) / 2),
    ])
    .areas(v);
    h
}

/// `3h05m`, `12m30s`, `45s`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// The screens' titles (`1 Presets`) and key tables, in the catalogue's order.
pub fn screen_tables() -> Vec<(Screen, String, Vec<KeyHelp>)> {
    SCREENS
        .iter()
        .map(|r| (r.screen, screens::title(r.screen), (r.keys)()))
        .collect()
}

/// Draws the whole UI.
pub fn view(app: &App, f: &mut Frame<'_>) {
    let area = f.area();
    let theme = app.theme;
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let text = vec![
            Line::styled("terminal too small", theme.bad()),
            Line::from(format!(
                "{}×{} here, {}×{} needed",
                area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
            )),
        ];
        let y = area.height.saturating_sub(2) / 2;
        let r = Rect::new(area.x, area.y + y, area.width, area.height.min(2));
        f.render_widget(Paragraph::new(text).centered(), r);
        return;
    }
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(app, f, header);
    match app.screen {
        Screen::Presets => presets::draw(&app.presets, theme, f, body),
        Screen::Hyperparameters => {
            hyperparameters::draw(app.form.as_ref(), &app.runs.runs, theme, f, body)
        }
        Screen::Run => run::draw(app.run.as_ref(), theme, f, body),
        Screen::Runs => runs::draw(&app.runs, &app.live_dirs(), theme, f, body),
        Screen::Methods => {
            let live = app.live_dirs();
            let view = methods_view::MethodsView {
                runs: &app.runs.all_runs,
                facts: &app.runs.facts,
                live: &live,
                theme,
            };
            methods_view::draw(app.methods.as_ref(), &view, f, body);
        }
    }
    draw_footer(app, f, footer);
    match &app.overlay {
        Some(Overlay::Help) => draw_help(app, f, body),
        Some(Overlay::Confirm(c)) => draw_confirm(c, theme, f, body),
        Some(Overlay::Launch(d)) => super::launch_dialog::draw(d, theme, f, body),
        None => {}
    }
}

fn draw_header(app: &App, f: &mut Frame<'_>, area: Rect) {
    let theme = app.theme;
    let state = app.run.as_ref().map(|r| run_state_span(r, theme));
    let state_width = state.as_ref().map_or(0, Span::width);
    let tabs = |short: bool| -> Vec<Span<'static>> {
        let mut spans = match short {
            true => Vec::new(),
            false => vec![Span::styled(" mislas ", theme.title())],
        };
        for r in SCREENS {
            let label = format!(" {} {} ", r.key, if short { r.short } else { r.name });
            spans.push(if r.screen == app.screen {
                Span::styled(label, theme.selected())
            } else {
                Span::raw(label)
            });
        }
        spans
    };
    let mut spans = tabs(false);
    let width = |s: &[Span<'_>]| s.iter().map(Span::width).sum::<usize>();
    if width(&spans) + state_width > usize::from(area.width) {
        spans = tabs(true);
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
    if let Some(text) = state {
        f.render_widget(Paragraph::new(Line::from(text).right_aligned()), area);
    }
}

/// The run's state at the header's right end: `● stage1 epoch [3] of 200`, `✓ run ended`.
fn run_state_span(r: &run::RunScreen, theme: Theme) -> Span<'static> {
    match (&r.state, &r.batch, &r.stage) {
        (RunState::Failed(_), _, _) => Span::styled("✗ run failed ", theme.bad()),
        (RunState::Finished, _, _) => Span::styled("✓ run ended ", theme.good()),
        (RunState::Stopped, _, _) => Span::styled("■ run stopped ", theme.warn()),
        (RunState::Paused, _, _) => Span::styled("⏸ paused ", theme.warn()),
        (RunState::Stopping, _, _) => Span::styled("■ stopping… ", theme.warn()),
        (_, Some(b), Some(s)) => Span::styled(
            format!("● {} epoch [{}] of {} ", s.stage, b.epoch, s.num_epochs),
            theme.good(),
        ),
        _ => Span::styled("◌ starting ", theme.warn()),
    }
}

fn key_spans<'a>(
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    theme: Theme,
) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for (k, what) in keys {
        spans.push(Span::styled(format!(" {k}"), theme.key()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    spans
}

/// A footer hint: keys and a word or two.
pub type Hint = (&'static str, &'static str);

/// The footer's key hints for `width` columns: the screen's keys in table order (most important
/// first) as many as fit whole, then `? help` and `q quit`, always.
pub fn footer_hints(screen: Screen, width: usize) -> (Vec<Hint>, Vec<Hint>) {
    let rows = screen_tables()
        .into_iter()
        .find(|(s, ..)| *s == screen)
        .map(|(.., rows)| rows)
        .unwrap_or_default();
    hints_of(rows, width)
}

/// The footer's key hints of the table `rows` for `width` columns (see [`footer_hints`]).
pub fn hints_of(rows: Vec<KeyHelp>, width: usize) -> (Vec<Hint>, Vec<Hint>) {
    let len = |k: &str, w: &str| k.chars().count() + w.chars().count() + 3;
    let fixed: usize = FOOTER_FIXED.iter().map(|(k, w)| len(k, w)).sum();
    let mut room = width.saturating_sub(fixed);
    let mut shown = Vec::new();
    for (k, short, _) in rows {
        let l = len(k, short);
        if l > room {
            break;
        }
        room -= l;
        shown.push((k, short));
    }
    (shown, FOOTER_FIXED.to_vec())
}

fn draw_footer(app: &App, f: &mut Frame<'_>, area: Rect) {
    let theme = app.theme;
    if let Some(s) = &app.status {
        let style = if s.error { theme.bad() } else { theme.warn() };
        f.render_widget(
            Paragraph::new(Line::styled(format!(" {}", s.text), style)),
            area,
        );
        return;
    }
    let width = usize::from(area.width);
    let (left, right) = footer_hints(app.screen, width);
    f.render_widget(Paragraph::new(Line::from(key_spans(left, theme))), area);
    f.render_widget(
        Paragraph::new(Line::from(key_spans(right, theme)).right_aligned()),
        area,
    );
}

/// Every key, the current screen's first, then the global ones, then the other screens' in
/// the catalogue's order; each description wrapped to `width` columns under its own start (none
/// is cut, whatever the terminal's width).
pub fn help_lines(current: Screen, theme: Theme, width: usize) -> Vec<Line<'static>> {
    let tables = screen_tables();
    let mut sections: Vec<(String, Vec<KeyHelp>)> = Vec::new();
    for (s, title, rows) in &tables {
        if *s == current {
            sections.push((format!("{title} (this screen)"), rows.clone()));
        }
    }
    sections.push(("Everywhere".into(), help_rows(GLOBAL_KEYS)));
    for (s, title, rows) in tables {
        if s != current {
            sections.push((title, rows));
        }
    }
    sections.push(("This help".into(), help_rows(HELP_KEYS)));
    let mut lines = Vec::new();
    for (title, rows) in sections {
        lines.push(Line::styled(title, theme.title()));
        for (k, _, what) in rows {
            let keys = format!("  {k:<17} ");
            let indent = keys.chars().count();
            for (i, part) in wrap_words(what, width.saturating_sub(indent))
                .into_iter()
                .enumerate()
            {
                let lead = match i {
                    0 => Span::styled(keys.clone(), theme.key()),
                    _ => Span::raw(" ".repeat(indent)),
                };
                lines.push(Line::from(vec![lead, Span::raw(part)]));
            }
        }
    }
    lines
}

/// `text` in lines of at most `width` characters, broken between words (a word longer than
/// `width` gets a line of its own); the whole text in one line when `width` is under 12.
pub fn wrap_words(text: &str, width: usize) -> Vec<String> {
    if width < 12 {
        return vec![text.to_owned()];
    }
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// How the help fills a terminal of `size` (columns, rows): its text columns, the rows of
/// each, and the lines wrapped to a column's width. Two columns from 102 terminal columns on
/// when one would not hold every line.
pub fn help_layout(
    current: Screen,
    theme: Theme,
    size: (u16, u16),
) -> (usize, usize, Vec<Line<'static>>) {
    // The body less the overlay's borders and its note line; the header and footer take a row each.
    let width = usize::from(size.0).saturating_sub(2);
    let rows = usize::from(size.1).saturating_sub(2 + 2 + 1).max(1);
    // Each column's text ends a column short of its edge: two columns never touch.
    if width >= 100 {
        let lines = help_lines(current, theme, width / 2 - 1);
        if lines.len() > rows {
            return (2, rows, lines);
        }
    }
    (1, rows, help_lines(current, theme, width - 1))
}

/// The first line shown for a help scrolled by `scroll` in `columns` columns of `rows` rows.
pub fn help_offset(total: usize, scroll: usize, columns: usize, rows: usize) -> usize {
    scroll.min(total.saturating_sub(columns * rows))
}

fn draw_help(app: &App, f: &mut Frame<'_>, body: Rect) {
    let theme = app.theme;
    // The whole body: an overlay inset by a column would show the screen's corners beside its own.
    f.render_widget(Clear, body);
    let block = panel("Keys · ↑↓ scroll · any other key closes", true, theme);
    let inner = block.inner(body);
    f.render_widget(block, body);
    let [cols, note] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    // The terminal's size as drawn now (the body is all of it but the header and footer).
    let size = (body.width, body.height + 2);
    let (columns, rows, lines) = help_layout(app.screen, theme, size);
    let first = help_offset(lines.len(), app.help_scroll, columns, rows);
    let areas = Layout::horizontal(vec![Constraint::Ratio(1, columns as u32); columns]).split(cols);
    for (c, a) in areas.iter().enumerate() {
        let start = (first + c * rows).min(lines.len());
        let end = (start + rows).min(lines.len());
        f.render_widget(Paragraph::new(lines[start..end].to_vec()), *a);
    }
    f.render_widget(
        Paragraph::new(Line::styled(
            "A run goes on without the UI (q: leave it running); 4, a attaches again.",
            theme.dim(),
        )),
        note,
    );
}

/// The last part of `dir`, as the runs list names a run.
fn folder_name(dir: &std::path::Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The question of a confirmation, in words.
fn confirm_question(c: &Confirm) -> String {
    let edits = |n: usize| format!("{n} unsaved edit{}", if n == 1 { "" } else { "s" });
    match c {
        Confirm::Stop => {
            "Stop the run? It finishes the batch and saves a checkpoint first.".to_owned()
        }
        Confirm::Quit(0) => "A run is in progress. Quit and leave it running, or stop it?".into(),
        &Confirm::Quit(n) => format!(
            "A run is in progress. Quit (discarding the form's {}) and leave it running, or stop it?",
            edits(n)
        ),
        &Confirm::Discard(n, AfterDiscard::Quit) => {
            format!("Quit and discard {} in the form?", edits(n))
        }
        &Confirm::Discard(n, _) => format!(
            "Open another configuration and discard {} in the form?",
            edits(n)
        ),
        Confirm::Remove(dir) => format!(
            "Archive {}? Its folder moves to saved/.archive/ (moved back by hand); its queue \
             entry is removed.",
            folder_name(dir)
        ),
        Confirm::Delete(dir) => format!(
            "Delete {} and its checkpoints for good? This cannot be undone.",
            folder_name(dir)
        ),
    }
}

/// The answers a confirmation takes: keys and what each does.
fn confirm_answers(c: &Confirm) -> &'static [(&'static str, &'static str)] {
    match c {
        Confirm::Quit(_) => &[
            ("l", " leave it running  "),
            ("s", " stop it (checkpoint)  "),
            ("n", " cancel"),
        ],
        Confirm::Remove(_) => &[
            ("y", " archive  "),
            ("D", " delete for good…  "),
            ("n", " cancel"),
        ],
        Confirm::Delete(_) => &[("y", " delete it  "), ("n", " keep it")],
        _ => &[("y", " yes   "), ("n", " no")],
    }
}

fn draw_confirm(c: &Confirm, theme: Theme, f: &mut Frame<'_>, body: Rect) {
    let w = 70.min(body.width);
    let area = Rect::new(
        body.x + (body.width - w) / 2,
        body.y + body.height / 2 - 3,
        w,
        6,
    );
    f.render_widget(Clear, area);
    let answers: Vec<Span<'static>> = confirm_answers(c)
        .iter()
        .flat_map(|&(k, what)| [Span::styled(k, theme.key()), Span::raw(what)])
        .collect();
    let text = vec![
        Line::from(confirm_question(c)),
        Line::from(""),
        Line::from(answers),
    ];
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .style(Style::new())
            .block(panel("Confirm", true, theme)),
        area,
    );
}
