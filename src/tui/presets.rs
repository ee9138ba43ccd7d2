//! The presets screen: presets grouped by data set with architecture, stage, imbalance factor
//! and epochs; whether each data set is found (and where it was looked for when not); user
//! presets alongside the project's, and where it looks for them.
use super::keys::{lookup, Binding, NAV_CODES, NAV_KEYS};
use super::line_input::LineInput;
use super::theme::Theme;
use super::view::panel;
use crate::config::{Config, DatasetName};
use crate::presets::{DataStatus, Preset, PresetOrigin};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

/// What a key of the presets screen does (while no filter is being typed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetsKey {
    /// Open the selected preset in the form.
    Open,
    /// Type a filter.
    Filter,
    /// Clear the filter.
    Clear,
    /// Scan the preset folders again.
    Rescan,
    /// Move the selection.
    Move,
}

/// Keys of the presets screen, most used first.
pub const KEYS: &[Binding<PresetsKey>] = &[
    Binding::new(
        &[KeyCode::Enter],
        "Enter",
        PresetsKey::Open,
        "open",
        "open the preset (and its other stage) in the form",
    ),
    Binding::new(
        &[KeyCode::Char('/')],
        "/",
        PresetsKey::Filter,
        "filter",
        "filter by name, data set or backbone",
    ),
    Binding::new(
        &[KeyCode::Esc],
        "Esc",
        PresetsKey::Clear,
        "clear",
        "clear the filter",
    ),
    Binding::new(
        &[KeyCode::Char('r')],
        "r",
        PresetsKey::Rescan,
        "rescan",
        "scan the preset folders again",
    ),
    Binding::new(
        NAV_CODES,
        NAV_KEYS,
        PresetsKey::Move,
        "move",
        "move between presets",
    ),
];

/// State of the presets screen.
#[derive(Debug, Clone, Default)]
pub struct PresetsScreen {
    /// Every preset found.
    pub presets: Vec<Preset>,
    /// Index of the selection among the visible presets.
    pub selected: usize,
    /// The filter (case-insensitive substring of name, data set or backbone).
    pub filter: String,
    /// The filter being typed.
    pub filtering: Option<LineInput>,
    /// Where the presets are looked for, in words ([`crate::presets::PresetPlaces::describe`]).
    pub places: String,
}

/// What a key on the presets screen asks of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetsAction {
    /// Nothing beyond the screen's own state.
    None,
    /// Open preset `i` (index into `presets`) in the form.
    Open(usize),
    /// Scan the preset folders again.
    Rescan,
}

fn group_of(p: &Preset) -> usize {
    p.dataset
        .map_or(DatasetName::ALL.len(), |d| d.spec().screen_order)
}

impl PresetsScreen {
    /// A screen over `presets`, the first preset whose data set is found selected.
    pub fn new(presets: Vec<Preset>) -> Self {
        let mut s = PresetsScreen {
            presets,
            ..Self::default()
        };
        s.selected = s
            .visible()
            .iter()
            .position(|&i| s.presets[i].data.as_ref().is_some_and(DataStatus::is_found))
            .unwrap_or(0);
        s
    }

    /// Replaces the presets, keeping the selection on the same file when it is still there.
    pub fn set_presets(&mut self, presets: Vec<Preset>) {
        let current = self.selected_preset().map(|p| p.path.clone());
        self.presets = presets;
        let visible = self.visible();
        self.selected = current
            .and_then(|c| visible.iter().position(|&i| self.presets[i].path == c))
            .unwrap_or(0);
    }

    fn filter_text(&self) -> String {
        self.filtering
            .as_ref()
            .map_or(self.filter.as_str(), LineInput::text)
            .to_lowercase()
    }

    /// Indices of the presets shown, in display order: by data set group, project presets before
    /// user presets, then by name.
    pub fn visible(&self) -> Vec<usize> {
        let f = self.filter_text();
        let mut v: Vec<usize> = (0..self.presets.len())
            .filter(|&i| {
                let p = &self.presets[i];
                if f.is_empty() {
                    return true;
                }
                let mut hay = p.name().to_lowercase();
                if let Some(d) = p.dataset {
                    hay.push(' ');
                    hay.push_str(&d.display_name().to_lowercase());
                }
                if let Ok(c) = &p.config {
                    hay.push(' ');
                    hay.push_str(&c.backbone.to_lowercase());
                }
                hay.contains(&f)
            })
            .collect();
        v.sort_by_key(|&i| {
            let p = &self.presets[i];
            (group_of(p), p.origin == PresetOrigin::User, p.name())
        });
        v
    }

    /// The selected preset.
    pub fn selected_preset(&self) -> Option<&Preset> {
        self.visible().get(self.selected).map(|&i| &self.presets[i])
    }

    /// Handles a key.
    pub fn on_key(&mut self, key: KeyEvent) -> PresetsAction {
        if let Some(input) = &mut self.filtering {
            match key.code {
                KeyCode::Enter => {
                    self.filter = input.text().to_owned();
                    self.filtering = None;
                }
                KeyCode::Esc => {
                    self.filter.clear();
                    self.filtering = None;
                }
                _ => {
                    input.handle(key);
                }
            }
            self.selected = 0;
            return PresetsAction::None;
        }
        let n = self.visible().len();
        match lookup(KEYS, &key) {
            Some(PresetsKey::Move) => {
                super::list_nav::navigate(&mut self.selected, n, key.code);
            }
            Some(PresetsKey::Filter) => self.filtering = Some(LineInput::new(&self.filter)),
            Some(PresetsKey::Clear) if !self.filter.is_empty() => {
                self.filter.clear();
                self.selected = 0;
            }
            Some(PresetsKey::Rescan) => return PresetsAction::Rescan,
            Some(PresetsKey::Open) => {
                if let Some(&i) = self.visible().get(self.selected) {
                    return PresetsAction::Open(i);
                }
            }
            Some(PresetsKey::Clear) | None => {}
        }
        PresetsAction::None
    }
}

/// `0.01` as `0.01`; `null` as `–`.
fn fmt_if(c: &Config) -> String {
    c.imb_factor.map_or("–".into(), |f| format!("{f}"))
}

/// Draws the presets screen in `area`.
pub fn draw(s: &PresetsScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let [list_area, detail_area] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(6)]).areas(area);
    draw_list(s, theme, f, list_area);
    draw_detail(s, theme, f, detail_area);
}

/// The title of the list: the filter being typed or applied, if any.
fn list_title(s: &PresetsScreen) -> String {
    match (&s.filtering, s.filter.is_empty()) {
        (Some(_), _) => "Presets · filter".to_owned(),
        (None, false) => format!("Presets · filter '{}' (Esc clears)", s.filter),
        (None, true) => "Presets".to_owned(),
    }
}

/// Draws the table of the visible presets, grouped by data set, in `area`.
fn draw_list(s: &PresetsScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let visible = s.visible();
    let title = list_title(s);
    let block = panel(&title, true, theme);
    let (rows, selected_row) = list_rows(s, &visible, theme);
    let name_w = visible
        .iter()
        .map(|&i| s.presets[i].name().chars().count() + 9)
        .max()
        .unwrap_or(0)
        .clamp(30, 60) as u16;
    let table = Table::new(
        rows,
        [
            Constraint::Length(name_w),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(10),
        ],
    )
    .header(Row::new(["Preset", "Arch", "Stage", "IF", "Epochs", "Data"]).style(theme.dim()))
    .block(block)
    .flex(Flex::Start)
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(selected_row);
    f.render_stateful_widget(table, area, &mut state);
}

/// The rows of the list: a header per group (the unreadable presets' only when there are
/// some) and the group's `visible` presets under it; and the row of the selected preset.
fn list_rows(
    s: &PresetsScreen,
    visible: &[usize],
    theme: Theme,
) -> (Vec<Row<'static>>, Option<usize>) {
    let mut rows = Vec::new();
    let mut selected_row = None;
    for (g, group) in DatasetName::in_screen_order()
        .into_iter()
        .map(Some)
        .chain([None])
        .enumerate()
    {
        let members: Vec<(usize, usize)> = visible
            .iter()
            .enumerate()
            .filter(|(_, &i)| group_of(&s.presets[i]) == g)
            .map(|(pos, &i)| (pos, i))
            .collect();
        if group.is_none() && members.is_empty() {
            continue;
        }
        let name = group.map_or("Unreadable presets", DatasetName::display_name);
        let mut header = vec![Span::styled(name, theme.title())];
        if members.is_empty() {
            header.push(Span::styled(
                if s.filter_text().is_empty() {
                    " · no preset"
                } else {
                    " · no match"
                },
                theme.dim(),
            ));
        }
        rows.push(Row::new(vec![Cell::from(Line::from(header))]));
        for (pos, i) in members {
            if pos == s.selected {
                selected_row = Some(rows.len());
            }
            rows.push(preset_row(&s.presets[i], theme));
        }
    }
    (rows, selected_row)
}

/// The row of a preset: its name, architecture, stage, imbalance factor, epochs and whether
/// its data set's files are here; only its name and an error when it does not load.
fn preset_row(p: &Preset, theme: Theme) -> Row<'static> {
    let user = if p.origin == PresetOrigin::User {
        " (user)"
    } else {
        ""
    };
    let name = format!("  {}{user}", p.name());
    match &p.config {
        Ok(c) => {
            let data = match &p.data {
                Some(DataStatus::Found(_)) => Span::styled("✓ found", theme.good()),
                _ => Span::styled("✗ missing", theme.bad()),
            };
            Row::new(vec![
                Cell::from(name),
                Cell::from(c.backbone.trim_end_matches("_fe").to_owned()),
                Cell::from(c.stage().to_string()),
                Cell::from(fmt_if(c)),
                Cell::from(c.num_epochs.to_string()),
                Cell::from(data),
            ])
        }
        Err(_) => Row::new(vec![
            Cell::from(name),
            Cell::from(Span::styled("✗ error", theme.bad())),
        ]),
    }
}

/// The detail lines of preset `p`: its file, its run's main keys, whether its data is found.
fn preset_lines(p: &Preset, theme: Theme) -> Vec<Line<'static>> {
    let dim = theme.dim();
    let mut lines = Vec::new();
    lines.push(Line::from(vec![
        Span::styled("File ", dim),
        Span::raw(p.path.display().to_string()),
    ]));
    match (&p.config, &p.data) {
        (Err(e), _) => lines.push(Line::styled(e.clone(), theme.bad())),
        (Ok(c), data) => {
            lines.push(Line::from(vec![
                Span::styled("Run ", dim),
                Span::raw(format!(
                    "{} · {} classes · lr {} · batch {} · {}",
                    c.name,
                    c.num_classes,
                    c.lr,
                    c.batch_size,
                    if c.stage() == crate::config::Stage::Stage1 {
                        format!("mixup {}", if c.mixup { "on" } else { "off" })
                    } else if c.recipe == crate::config::ClassifierRecipe::Mislas {
                        format!(
                            "LAS ε {}→{}",
                            c.smooth_head.map_or("–".into(), |v| v.to_string()),
                            c.smooth_tail.map_or("–".into(), |v| v.to_string())
                        )
                    } else {
                        format!("{} (cross-entropy)", c.recipe)
                    }
                )),
            ]));
            lines.push(match data {
                Some(DataStatus::Found(path)) => Line::from(vec![
                    Span::styled("Data ", dim),
                    Span::styled(format!("found: {}", path.display()), theme.good()),
                ]),
                Some(DataStatus::Missing(path)) => Line::from(vec![
                    Span::styled("Data ", dim),
                    Span::styled(format!("not found at {}", path.display()), theme.bad()),
                ]),
                None => Line::from(""),
            });
        }
    }
    lines
}

fn draw_detail(s: &PresetsScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let block = panel("Selected", false, theme);
    let dim = theme.dim();
    let mut lines = Vec::new();
    if let Some(input) = &s.filtering {
        lines.push(Line::from(vec![
            Span::styled("Filter: ", theme.key()),
            Span::raw("/"),
        ]));
        lines[0].spans.extend(
            input
                .line(ratatui::style::Style::new(), theme.selected())
                .spans,
        );
        lines.push(Line::styled(
            "Type to filter by name, data set or backbone · Enter keeps it · Esc clears it",
            dim,
        ));
    } else if let Some(p) = s.selected_preset() {
        lines.extend(preset_lines(p, theme));
    } else {
        lines.push(Line::styled(
            "No preset: add YAML files under presets/<dataset>/ or save one from the form",
            dim,
        ));
    }
    if !s.places.is_empty() && s.filtering.is_none() {
        lines.push(Line::from(vec![
            Span::styled("Looks in ", dim),
            Span::raw(s.places.clone()),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}
