//! Drawing the app: the header with the screens and the run's state, the current screen, the
//! footer with its keys (or the status message), the help and confirmation overlays, and the
//! "terminal too small" notice below 80×24. Nothing here changes state.
use super::app::{App, Confirm, Overlay, Screen};
use super::run::RunState;
use super::theme::Theme;
use super::{hyperparameters, presets, run, runs};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// A key and what it does, for footers and help.
pub type KeyHelp = (&'static str, &'static str);

/// The smallest terminal the UI draws in.
pub const MIN_SIZE: (u16, u16) = (80, 24);

/// Keys every screen has.
const GLOBAL_KEYS: &[KeyHelp] = &[
    ("1-4", "screens"),
    ("?", "help"),
    ("q", "quit"),
    ("Ctrl-C", "stop and quit"),
];

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

fn screen_keys(app: &App) -> &'static [KeyHelp] {
    match app.screen {
        Screen::Presets => presets::KEYS,
        Screen::Hyperparameters => hyperparameters::KEYS,
        Screen::Run => run::KEYS,
        Screen::Runs => runs::KEYS,
    }
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
        Screen::Runs => runs::draw(&app.runs, theme, f, body),
    }
    draw_footer(app, f, footer);
    match app.overlay {
        Some(Overlay::Help) => draw_help(app, f, body),
        Some(Overlay::Confirm(c)) => draw_confirm(c, theme, f, body),
        None => {}
    }
}

fn draw_header(app: &App, f: &mut Frame<'_>, area: Rect) {
    let theme = app.theme;
    let mut spans = vec![Span::styled(" mislas ", theme.title())];
    for (i, (s, name)) in [
        (Screen::Presets, "Presets"),
        (Screen::Hyperparameters, "Hyperparameters"),
        (Screen::Run, "Run"),
        (Screen::Runs, "Runs"),
    ]
    .into_iter()
    .enumerate()
    {
        let label = format!(" {} {name} ", i + 1);
        spans.push(if s == app.screen {
            Span::styled(label, theme.selected())
        } else {
            Span::raw(label)
        });
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
    if let Some(r) = &app.run {
        let text = match (&r.state, &r.batch, &r.stage) {
            (RunState::Failed(_), _, _) => Span::styled("✗ run failed ", theme.bad()),
            (RunState::Finished, _, _) => Span::styled("✓ run ended ", theme.good()),
            (RunState::Paused, _, _) => Span::styled("⏸ paused ", theme.warn()),
            (RunState::Stopping, _, _) => Span::styled("■ stopping… ", theme.warn()),
            (_, Some(b), Some(s)) => Span::styled(
                format!("● {} epoch {}/{} ", s.stage, b.epoch + 1, s.num_epochs),
                theme.good(),
            ),
            _ => Span::styled("◌ starting ", theme.warn()),
        };
        f.render_widget(Paragraph::new(Line::from(text).right_aligned()), area);
    }
}

fn key_spans(keys: &[KeyHelp], theme: Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for (k, what) in keys {
        spans.push(Span::styled(format!(" {k}"), theme.key()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    spans
}

fn draw_footer(app: &App, f: &mut Frame<'_>, area: Rect) {
    let theme = app.theme;
    let line = match &app.status {
        Some(s) => Line::styled(
            format!(" {}", s.text),
            if s.error { theme.bad() } else { theme.warn() },
        ),
        None => {
            let mut spans = key_spans(screen_keys(app), theme);
            spans.extend(key_spans(&GLOBAL_KEYS[1..3], theme));
            Line::from(spans)
        }
    };
    f.render_widget(Paragraph::new(line), area);
}

fn help_lines(sections: &[(&'static str, &'static [KeyHelp])], theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (title, keys) in sections {
        lines.push(Line::styled(*title, theme.title()));
        for (k, what) in *keys {
            lines.push(Line::from(vec![
                Span::styled(format!("  {k:<14}"), theme.key()),
                Span::raw(*what),
            ]));
        }
    }
    lines
}

fn draw_help(app: &App, f: &mut Frame<'_>, body: Rect) {
    let theme = app.theme;
    let area = Rect {
        x: body.x + 1,
        width: body.width.saturating_sub(2),
        ..body
    };
    f.render_widget(Clear, area);
    let block = panel("Keys · any key closes", true, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [cols, note] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(cols);
    let left_sections = [
        ("Everywhere", GLOBAL_KEYS),
        ("1 Presets", presets::KEYS),
        ("3 Run", run::KEYS),
    ];
    let right_sections = [
        ("2 Hyperparameters", hyperparameters::KEYS),
        ("4 Runs", runs::KEYS),
    ];
    f.render_widget(Paragraph::new(help_lines(&left_sections, theme)), left);
    f.render_widget(Paragraph::new(help_lines(&right_sections, theme)), right);
    f.render_widget(
        Paragraph::new(Line::styled(
            "Quitting during a run stops it after its checkpoint: nothing is lost.",
            theme.dim(),
        )),
        note,
    );
}

fn draw_confirm(c: Confirm, theme: Theme, f: &mut Frame<'_>, body: Rect) {
    let question = match c {
        Confirm::Stop => "Stop the run? It finishes the batch and saves a checkpoint first.",
        Confirm::Quit => "A run is in progress. Stop it (after its checkpoint) and quit?",
    };
    let w = 70.min(body.width);
    let area = Rect::new(
        body.x + (body.width - w) / 2,
        body.y + body.height / 2 - 3,
        w,
        6,
    );
    f.render_widget(Clear, area);
    let text = vec![
        Line::from(question),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", theme.key()),
            Span::raw(" yes   "),
            Span::styled("n", theme.key()),
            Span::raw(" no"),
        ]),
    ];
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .style(Style::new())
            .block(panel("Confirm", true, theme)),
        area,
    );
}
