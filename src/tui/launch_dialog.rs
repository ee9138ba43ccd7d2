//! The dialog that Enter on the Methods screen opens before it trains anything: the trained
//! methods that have no run yet, one row each with the epochs and the device its stage-2 run
//! would get (from its preset), editable; Enter trains them with those values (the first now
//! when no run is in progress, the others queued), Esc starts nothing. A value that does not
//! parse, or that the configuration's checks refuse (`num_epochs 0`, a CUDA device this machine
//! lacks), keeps the dialog open with the key and the reason.
use super::keys::{lookup, Binding};
use super::line_input::LineInput;
use super::theme::Theme;
use super::view::panel;
use crate::compare::cli::base_label;
use crate::config::Config;
use crate::runs::stage2::Trained;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

/// The keys a row of the dialog sets, in column order.
pub const FIELDS: [&str; 2] = ["num_epochs", "device"];

/// What a key of the dialog does (the others type into the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchKey {
    /// Train with these values.
    Confirm,
    /// Start nothing.
    Cancel,
    /// The other field of the row.
    Field,
    /// The method above or below.
    Row,
}

/// Keys of the dialog, for its handler and the help.
pub const KEYS: &[Binding<LaunchKey>] = &[
    Binding::new(
        &[KeyCode::Enter],
        "Enter",
        LaunchKey::Confirm,
        "train",
        "train the methods with these epochs and devices",
    ),
    Binding::new(
        &[KeyCode::Esc],
        "Esc",
        LaunchKey::Cancel,
        "cancel",
        "start nothing",
    ),
    Binding::new(
        &[KeyCode::Tab, KeyCode::BackTab],
        "Tab",
        LaunchKey::Field,
        "field",
        "epochs or device",
    ),
    Binding::new(
        &[KeyCode::Up, KeyCode::Down],
        "↑↓",
        LaunchKey::Row,
        "method",
        "the method above or below",
    ),
];

/// The dialog's state.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchDialog {
    /// The methods to train and their stage-2 configurations as planned.
    pub rows: Vec<(Trained, Config)>,
    /// Each row's fields as typed: epochs, device.
    pub fields: Vec<[LineInput; 2]>,
    /// The selected row.
    pub row: usize,
    /// The selected field (an index into [`FIELDS`]).
    pub field: usize,
    /// Whether a run is in progress (then every method is queued).
    pub run_active: bool,
    /// Why the last Enter did not train: the method, the key and the reason.
    pub error: Option<String>,
}

/// What a key of the dialog asks of the app.
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchAnswer {
    /// The dialog stays.
    Stay,
    /// Start nothing.
    Cancel,
    /// Train these methods with these configurations.
    Train(Vec<(Trained, Config)>),
}

impl LaunchDialog {
    /// The dialog over the planned stage-2 runs `rows` (see [`super::methods::RunPlan`]).
    pub fn new(rows: Vec<(Trained, Config)>, run_active: bool) -> Self {
        let fields = rows
            .iter()
            .map(|(_, c)| {
                [
                    LineInput::new(&c.num_epochs.to_string()),
                    LineInput::new(&c.device),
                ]
            })
            .collect();
        LaunchDialog {
            rows,
            fields,
            row: 0,
            field: 0,
            run_active,
            error: None,
        }
    }

    /// Handles a key.
    pub fn on_key(&mut self, key: KeyEvent) -> LaunchAnswer {
        match lookup(KEYS, &key) {
            Some(LaunchKey::Cancel) => return LaunchAnswer::Cancel,
            Some(LaunchKey::Confirm) => match self.configured() {
                Ok(rows) => return LaunchAnswer::Train(rows),
                Err(why) => self.error = Some(why),
            },
            Some(LaunchKey::Field) => self.field = 1 - self.field,
            Some(LaunchKey::Row) => {
                let n = self.rows.len().max(1);
                self.row = match key.code {
                    KeyCode::Up => (self.row + n - 1) % n,
                    _ => (self.row + 1) % n,
                };
            }
            // Characters, ←→, Backspace, Ctrl-U … edit the field.
            None => {
                if let Some(input) = self
                    .fields
                    .get_mut(self.row)
                    .and_then(|f| f.get_mut(self.field))
                {
                    input.handle(key);
                }
            }
        }
        LaunchAnswer::Stay
    }

    /// The planned configurations with the typed epochs and devices.
    ///
    /// # Errors
    /// A value does not parse for its key, or the configuration's checks (and this machine's
    /// devices) find an issue the planned configuration did not have: the method, key and why.
    pub fn configured(&self) -> Result<Vec<(Trained, Config)>, String> {
        let cuda = crate::distributed::machine::machine_cuda_devices();
        let issues = |c: &Config| -> Vec<(String, String)> {
            c.validate()
                .into_iter()
                .chain(crate::distributed::machine::check_machine(c, cuda))
                .map(|i| (i.key.to_owned(), i.message))
                .collect()
        };
        let mut out = Vec::new();
        for ((t, planned), fields) in self.rows.iter().zip(&self.fields) {
            let name = base_label(t.name);
            let mut c = planned.clone();
            for (key, input) in FIELDS.iter().zip(fields) {
                c.set(key, input.text().trim())
                    .map_err(|e| format!("{name}: {e}"))?;
            }
            let before = issues(planned);
            if let Some((k, m)) = issues(&c).into_iter().find(|i| !before.contains(i)) {
                return Err(format!("{name}: {k}: {m}"));
            }
            out.push((*t, c));
        }
        Ok(out)
    }
}

/// Draws the dialog over `body`.
pub fn draw(d: &LaunchDialog, theme: Theme, f: &mut Frame<'_>, body: Rect) {
    let w = 74.min(body.width);
    let h = (d.rows.len() as u16 + 9).min(body.height);
    let area = Rect::new(
        body.x + (body.width - w) / 2,
        body.y + body.height.saturating_sub(h) / 2,
        w,
        h,
    );
    f.render_widget(Clear, area);
    let block = panel("Train these methods?", true, theme);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [top, table, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(d.rows.len() as u16 + 1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let n = d.rows.len();
    let how = match (d.run_active, n) {
        (true, 1) => "queued behind the run in progress",
        (true, _) => "each queued behind the run in progress",
        (false, 1) => "it starts now, on the run screen",
        (false, _) => "the first now, on the run screen, the others queued",
    };
    let s = if n == 1 { "" } else { "s" };
    let from = match several_backbones(d) {
        true => "each from its backbone's checkpoint",
        false => "from this run's checkpoint",
    };
    f.render_widget(
        Paragraph::new(format!("{n} stage-2 run{s} {from}: {how}.")).wrap(Wrap { trim: true }),
        top,
    );
    let mut state = TableState::default().with_selected(Some(d.row));
    f.render_stateful_widget(methods_table(d, theme), table, &mut state);
    f.render_widget(
        Paragraph::new(notes(d, theme)).wrap(Wrap { trim: true }),
        bottom,
    );
}

/// The methods with their fields, the selected one with its cursor.
fn methods_table(d: &LaunchDialog, theme: Theme) -> Table<'static> {
    let rows: Vec<Row<'static>> = d
        .rows
        .iter()
        .zip(&d.fields)
        .enumerate()
        .map(|(i, (_, fields))| {
            let cell = |j: usize| match i == d.row && j == d.field {
                true => fields[j].line(theme.title(), theme.selected()),
                false => Line::raw(fields[j].text().to_owned()),
            };
            Row::new(vec![Line::raw(row_label(d, i)), cell(0), cell(1)])
        })
        .collect();
    Table::new(
        rows,
        [
            Constraint::Min(18),
            Constraint::Length(8),
            Constraint::Length(14),
        ],
    )
    .header(Row::new(["Method", "Epochs", "Device"]).style(theme.dim()))
}

/// The run folder whose checkpoint a planned stage 2 starts from (`resume`'s
/// `<run>/ckps/<file>`), by its folder name.
fn backbone_of(c: &Config) -> String {
    let p = std::path::Path::new(&c.resume);
    p.parent()
        .and_then(std::path::Path::parent)
        .and_then(std::path::Path::file_name)
        .map_or_else(|| c.resume.clone(), |n| n.to_string_lossy().into_owned())
}

/// Whether the rows start from more than one backbone (then each row names its own).
fn several_backbones(d: &LaunchDialog) -> bool {
    d.rows
        .iter()
        .any(|(_, c)| d.rows.first().is_some_and(|(_, f)| f.resume != c.resume))
}

/// Row `i`'s method, with the backbone it trains on when the rows have several.
fn row_label(d: &LaunchDialog, i: usize) -> String {
    let (t, c) = &d.rows[i];
    match several_backbones(d) {
        true => format!("{} on {}", base_label(t.name), backbone_of(c)),
        false => base_label(t.name),
    }
}

/// Below the table: the devices, why the last Enter did not train, the keys.
fn notes(d: &LaunchDialog, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = vec![Line::styled(
        "device: auto, cpu, cuda, cuda:N (with gpus for several)",
        theme.dim(),
    )];
    if let Some(e) = &d.error {
        lines.push(Line::styled(e.clone(), theme.bad()));
    }
    let mut keys = Vec::new();
    for b in KEYS {
        keys.push(Span::styled(format!("{} ", b.keys), theme.key()));
        keys.push(Span::raw(format!("{}  ", b.short)));
    }
    lines.push(Line::from(keys));
    lines
}
