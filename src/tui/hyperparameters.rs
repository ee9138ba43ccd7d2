//! The hyperparameter form: every configuration key with its type, the preset's value and the
//! edited value, inline validation and a help line in the paper's terms. A preset with a partner
//! of the other stage gets a tab for each stage, so that "both stages" launches both.
use super::keys::{lookup, Binding, NAV_CODES, NAV_KEYS};
use super::line_input::LineInput;
use super::theme::Theme;
use super::view::panel;
use crate::config::{field_help, Config, Stage};
use crate::presets::{dataset_status, DataStatus};
use crate::run_dir::RunSummary;
use crate::wire::Job;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;
use std::path::{Path, PathBuf};

/// What a key of the form does (while no field is being edited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKey {
    /// Edit the selected field (toggle a bool, pick a stage-1 run for stage 2's `resume`).
    Edit,
    /// Launch this tab's stage.
    Run,
    /// Launch both stages.
    Both,
    /// Add this stage to the queue (`mislas queue run` starts it).
    Queue,
    /// Add both stages to the queue, as one pipeline.
    QueueBoth,
    /// Queue a sweep of this stage: one run per point of a grid over keys.
    Sweep,
    /// Show the other stage's tab.
    Stage,
    /// Restore the selected field's preset value.
    Undo,
    /// Save the tab as a user preset.
    Save,
    /// Move the selection.
    Move,
    /// Back to the presets (the edits are kept).
    Back,
}

/// Keys of the form, most used first.
pub const KEYS: &[Binding<FormKey>] = &[
    Binding::new(
        &[KeyCode::Enter],
        "Enter",
        FormKey::Edit,
        "edit",
        "edit the field (a bool toggles; stage 2's resume picks a run)",
    ),
    Binding::new(
        &[KeyCode::Char('r')],
        "r",
        FormKey::Run,
        "run",
        "run this stage",
    ),
    Binding::new(
        &[KeyCode::Char('b')],
        "b",
        FormKey::Both,
        "both",
        "run both stages, stage 2 from stage 1's best",
    ),
    Binding::new(
        &[KeyCode::Char('Q')],
        "Q",
        FormKey::Queue,
        "queue",
        "add this stage to the queue (mislas queue run starts it)",
    ),
    Binding::new(
        &[KeyCode::Char('B')],
        "B",
        FormKey::QueueBoth,
        "queue both",
        "add both stages to the queue, as one pipeline",
    ),
    Binding::new(
        &[KeyCode::Char('G')],
        "G",
        FormKey::Sweep,
        "sweep",
        "queue a grid of this stage: seed 0,1,2 × lr 0.1,0.2 (one run per point)",
    ),
    Binding::new(
        &[KeyCode::Tab, KeyCode::BackTab],
        "Tab",
        FormKey::Stage,
        "stage",
        "the other stage's tab",
    ),
    Binding::new(
        &[KeyCode::Char('u')],
        "u",
        FormKey::Undo,
        "undo",
        "the field back to the preset's value",
    ),
    Binding::new(
        &[KeyCode::Char('w')],
        "w",
        FormKey::Save,
        "save",
        "save as a user preset (named as its file)",
    ),
    Binding::new(
        NAV_CODES,
        NAV_KEYS,
        FormKey::Move,
        "move",
        "move between fields",
    ),
    Binding::new(
        &[KeyCode::Esc],
        "Esc",
        FormKey::Back,
        "back",
        "back to the presets (edits kept)",
    ),
];

/// The value type of a key, for the form's Type column: the [`crate::config::KEYS`] row's.
fn field_type(key: &str) -> &'static str {
    crate::config::key_spec(key).map_or("value", |k| k.kind.label())
}

/// The help line of a key: the [`crate::config::KEYS`] row's help, and which stage uses it when
/// only one does.
fn help_line(key: &str) -> String {
    let help = field_help(key);
    let line = match crate::config::key_spec(key).and_then(|k| k.stages.note()) {
        Some(note) => format!("{help} ({note})"),
        None => help.to_owned(),
    };
    match key {
        "gpus" | "device" => format!("{line}. This machine: {}", machine_devices()),
        _ => line,
    }
}

/// The CUDA devices of this machine with name and memory (read once), for the help of `gpus`
/// and `device`.
fn machine_devices() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        let n = crate::distributed::machine::machine_cuda_devices();
        if n == 0 {
            return "no CUDA device; gpus N runs N CPU processes (Gloo)".to_owned();
        }
        (0..n)
            .map(|i| {
                let info = crate::engine::device_info(tch::Device::Cuda(i));
                let memory = info
                    .memory_total_bytes
                    .map(|b| format!(" {:.0} GB", b as f64 / 1e9))
                    .unwrap_or_default();
                format!("{} {}{memory}", info.id, info.name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// One stage's configuration in the form.
#[derive(Debug, Clone, PartialEq)]
pub struct FormTab {
    /// The preset's name.
    pub preset_name: String,
    /// The preset file.
    pub path: PathBuf,
    /// The preset's configuration, as loaded.
    pub preset: Config,
    /// The edited configuration.
    pub config: Config,
    /// Validation issues of `config`: key and message.
    pub issues: Vec<(String, String)>,
    /// Whether `config` was saved as a user preset since its last edit.
    pub saved: bool,
}

impl FormTab {
    /// A tab for a preset.
    pub fn new(preset_name: String, path: PathBuf, config: Config, root: &Path) -> Self {
        let mut t = FormTab {
            preset_name,
            path,
            preset: config.clone(),
            config,
            issues: Vec::new(),
            saved: false,
        };
        t.revalidate(root);
        t
    }

    /// Recomputes the issues: [`Config::validate`], [`crate::distributed::machine::check_machine`] on this machine,
    /// the `resume` file, the data set's files, and a stage-2 configuration without a stage-1
    /// checkpoint.
    pub fn revalidate(&mut self, root: &Path) {
        let c = &self.config;
        let machine = crate::distributed::machine::check_machine(
            c,
            crate::distributed::machine::machine_cuda_devices(),
        );
        let mut v: Vec<(String, String)> = c
            .validate()
            .into_iter()
            .chain(machine)
            .map(|i| (i.key.to_owned(), i.message))
            .collect();
        if let Err(e) = c.check_resume() {
            v.push(("resume".into(), e));
        } else if c.stage() == Stage::Stage2 && c.resume.is_empty() {
            v.push((
                "resume".into(),
                "stage 2 needs a stage-1 checkpoint: Enter picks a run".into(),
            ));
        }
        if let DataStatus::Missing(p) = dataset_status(c, root) {
            v.push((
                "data_path".into(),
                format!("no {} files at {}", c.dataset.display_name(), p.display()),
            ));
        }
        self.issues = v;
    }

    /// Keys whose value differs from the preset's, unless saved since.
    pub fn unsaved_edits(&self) -> usize {
        if self.saved {
            return 0;
        }
        Config::keys()
            .iter()
            .filter(|k| self.preset.get(k) != self.config.get(k))
            .count()
    }

    /// The first issue of a key.
    pub fn issue(&self, key: &str) -> Option<&str> {
        self.issues
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, m)| m.as_str())
    }
}

/// What the form is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum FormMode {
    /// Moving between fields.
    Browse,
    /// Editing the selected field; the error of the last Enter.
    Edit(LineInput, Option<String>),
    /// Typing the name of a new user preset; the error of the last save.
    SaveAs(LineInput, Option<String>),
    /// Picking a stage-1 run for `resume`: the selection among the candidates.
    Pick(usize),
    /// Typing a sweep (`KEY V1,V2 × KEY V1,V2`); the error of the last Enter.
    Sweep(LineInput, Option<String>),
}

/// State of the form.
#[derive(Debug, Clone, PartialEq)]
pub struct FormScreen {
    /// One tab per stage, stage 1 first.
    pub tabs: Vec<FormTab>,
    /// The visible tab.
    pub tab: usize,
    /// Every key, in the configuration's order.
    pub keys: Vec<String>,
    /// The selected key.
    pub selected: usize,
    /// What the form is doing.
    pub mode: FormMode,
}

/// What a key in the form asks of the app.
#[derive(Debug, Clone)]
pub enum FormAction {
    /// Nothing beyond the form's own state.
    None,
    /// Back to the presets.
    Back,
    /// Launch this job; the label names it on the run screen.
    Launch(Box<Job>, String),
    /// Add this job to the queue under this name.
    Queue(Box<Job>, String),
    /// Add these jobs (a sweep's points) to the queue, each under its name.
    QueueMany(Vec<(Box<Job>, String)>),
    /// Save this configuration as the user preset of this name.
    Save(String, Box<Config>),
    /// A message for the status line (an error when true).
    Status(String, bool),
}

/// Stage-1 runs that can seed stage 2: a best checkpoint and evaluated epochs.
pub fn stage1_candidates(runs: &[RunSummary]) -> Vec<&RunSummary> {
    runs.iter()
        .filter(|r| r.stage == Some(Stage::Stage1) && r.best_checkpoint.is_some())
        .collect()
}

impl FormScreen {
    /// A form over `tabs` (stage order), showing tab `tab`.
    pub fn new(tabs: Vec<FormTab>, tab: usize) -> Self {
        FormScreen {
            tabs,
            tab,
            keys: Config::keys(),
            selected: 0,
            mode: FormMode::Browse,
        }
    }

    /// The visible tab.
    pub fn current(&self) -> &FormTab {
        &self.tabs[self.tab]
    }

    fn key(&self) -> &str {
        &self.keys[self.selected]
    }

    /// Selects `key` (no change when there is no such key).
    pub fn select(&mut self, key: &str) {
        if let Some(i) = self.keys.iter().position(|k| k == key) {
            self.selected = i;
        }
    }

    /// Unsaved edits over every tab.
    pub fn unsaved_edits(&self) -> usize {
        self.tabs.iter().map(FormTab::unsaved_edits).sum()
    }

    /// Whether a text input has the keyboard.
    pub fn is_typing(&self) -> bool {
        matches!(
            self.mode,
            FormMode::Edit(..) | FormMode::SaveAs(..) | FormMode::Sweep(..)
        )
    }

    /// Sets `key` in the visible tab (and in the other tab when it describes the data or the
    /// model), revalidating both.
    ///
    /// # Errors
    /// The value does not parse for the key.
    pub fn set(&mut self, key: &str, text: &str, root: &Path) -> Result<(), String> {
        self.tabs[self.tab].config.set(key, text)?;
        self.tabs[self.tab].saved = false;
        if crate::config::is_shared_key(key) {
            for (i, t) in self.tabs.iter_mut().enumerate() {
                if i != self.tab {
                    // The same value parsed for the same key: cannot fail where it just passed.
                    let _ = t.config.set(key, text);
                    t.saved = false;
                }
            }
        }
        for t in &mut self.tabs {
            t.revalidate(root);
        }
        Ok(())
    }

    /// Records the outcome of saving a preset: the prompt closes on success (the tab's edits
    /// are saved) and shows the error otherwise.
    pub fn saved(&mut self, result: &Result<PathBuf, String>) {
        if let FormMode::SaveAs(_, err) = &mut self.mode {
            match result {
                Ok(_) => {
                    self.mode = FormMode::Browse;
                    self.tabs[self.tab].saved = true;
                }
                Err(e) => *err = Some(e.clone()),
            }
        }
    }

    /// Handles a key; `runs` are the runs in `saved/` (for the `resume` picker) and `root` the
    /// project root (for validation).
    pub fn on_key(&mut self, key: KeyEvent, runs: &[RunSummary], root: &Path) -> FormAction {
        match std::mem::replace(&mut self.mode, FormMode::Browse) {
            FormMode::Edit(mut input, err) => {
                match key.code {
                    KeyCode::Esc => {}
                    KeyCode::Enter => {
                        let k = self.key().to_owned();
                        if let Err(e) = self.set(&k, input.text(), root) {
                            self.mode = FormMode::Edit(input, Some(e));
                        }
                    }
                    _ => {
                        let err = if input.handle(key) { None } else { err };
                        self.mode = FormMode::Edit(input, err);
                    }
                }
                FormAction::None
            }
            FormMode::SaveAs(mut input, err) => match key.code {
                KeyCode::Esc => FormAction::None,
                KeyCode::Enter => {
                    let name = input.text().to_owned();
                    self.mode = FormMode::SaveAs(input, None);
                    // The preset gets its own `name`, so that its runs get their own folders.
                    let mut config = self.current().config.clone();
                    config.name = preset_file_stem(&name).to_owned();
                    FormAction::Save(name, Box::new(config))
                }
                _ => {
                    let err = if input.handle(key) { None } else { err };
                    self.mode = FormMode::SaveAs(input, err);
                    FormAction::None
                }
            },
            FormMode::Sweep(mut input, err) => match key.code {
                KeyCode::Esc => FormAction::None,
                KeyCode::Enter => match self.sweep(input.text()) {
                    Ok(jobs) => FormAction::QueueMany(jobs),
                    Err(e) => {
                        self.mode = FormMode::Sweep(input, Some(e));
                        FormAction::None
                    }
                },
                _ => {
                    let err = if input.handle(key) { None } else { err };
                    self.mode = FormMode::Sweep(input, err);
                    FormAction::None
                }
            },
            FormMode::Pick(sel) => {
                let candidates = stage1_candidates(runs);
                match key.code {
                    KeyCode::Up | KeyCode::Char('k') => {
                        self.mode = FormMode::Pick(sel.saturating_sub(1))
                    }
                    KeyCode::Down | KeyCode::Char('j') => {
                        self.mode =
                            FormMode::Pick((sel + 1).min(candidates.len().saturating_sub(1)))
                    }
                    KeyCode::Char('e') => {
                        self.mode =
                            FormMode::Edit(LineInput::new(&self.current().config.resume), None)
                    }
                    KeyCode::Enter => {
                        if let Some(ckpt) =
                            candidates.get(sel).and_then(|r| r.best_checkpoint.as_ref())
                        {
                            let text = ckpt.display().to_string();
                            if let Err(e) = self.set("resume", &text, root) {
                                return FormAction::Status(e, true);
                            }
                        }
                    }
                    _ => {}
                }
                FormAction::None
            }
            FormMode::Browse => self.on_browse_key(key, runs, root),
        }
    }

    fn on_browse_key(&mut self, key: KeyEvent, runs: &[RunSummary], root: &Path) -> FormAction {
        let Some(action) = lookup(KEYS, &key) else {
            return FormAction::None;
        };
        match action {
            FormKey::Move => {
                super::list_nav::navigate(&mut self.selected, self.keys.len(), key.code);
            }
            FormKey::Stage => self.tab = (self.tab + 1) % self.tabs.len(),
            FormKey::Back => return FormAction::Back,
            FormKey::Edit => return self.edit(runs, root),
            FormKey::Undo => {
                let key = self.key().to_owned();
                let preset = self.current().preset.get(&key).unwrap_or_default();
                if let Err(e) = self.set(&key, &preset, root) {
                    return FormAction::Status(e, true);
                }
            }
            FormKey::Save => {
                let name = format!("{}_custom", self.current().config.name);
                self.mode = FormMode::SaveAs(LineInput::new(&name), None);
            }
            FormKey::Run => return self.launch(false),
            FormKey::Both => return self.launch(true),
            FormKey::Sweep => self.mode = FormMode::Sweep(LineInput::new("seed 0,1,2"), None),
            FormKey::Queue | FormKey::QueueBoth => {
                return match self.launch(action == FormKey::QueueBoth) {
                    FormAction::Launch(job, label) => FormAction::Queue(job, label),
                    other => other,
                }
            }
        }
        FormAction::None
    }

    /// Enter on the selected field: the `resume` picker of stage 2, a bool toggled, or the editor.
    fn edit(&mut self, runs: &[RunSummary], root: &Path) -> FormAction {
        let key = self.key().to_owned();
        let tab = self.current();
        if key == "resume" && tab.config.stage() == Stage::Stage2 {
            if stage1_candidates(runs).is_empty() {
                self.mode = FormMode::Edit(LineInput::new(&tab.config.resume), None);
                return FormAction::Status(
                    "no stage-1 run with a best checkpoint in saved/: type a path".into(),
                    false,
                );
            }
            self.mode = FormMode::Pick(0);
        } else if field_type(&key) == "bool" {
            let flipped = tab.config.get(&key).is_some_and(|v| v != "true");
            if let Err(e) = self.set(&key, if flipped { "true" } else { "false" }, root) {
                return FormAction::Status(e, true);
            }
        } else {
            let text = tab.config.get(&key).unwrap_or_default();
            self.mode = FormMode::Edit(LineInput::new(&text), None);
        }
        FormAction::None
    }

    /// The runs of a sweep of this stage: `text` is `KEY V1,V2,… × KEY V1,V2,…` (`×`, `x` or
    /// `;` between keys); each point's configuration has the point's values and is named by
    /// them.
    ///
    /// # Errors
    /// The grid has no runs or more than [`crate::queue::MAX_SWEEP_WITHOUT_YES`], or a value
    /// does not fit its key, in words.
    pub fn sweep(&self, text: &str) -> Result<Vec<(Box<Job>, String)>, String> {
        use crate::queue::{expand_grid, parse_grid, point_name, MAX_SWEEP_WITHOUT_YES};
        let words: Vec<String> = text
            .split(['×', ';'])
            .flat_map(|part| part.split_whitespace().filter(|w| *w != "x"))
            .map(str::to_owned)
            .collect();
        let grid = parse_grid(&words).map_err(|e| format!("{e:#}"))?;
        if grid.is_empty() {
            return Err("a sweep names at least one key and its values: seed 0,1,2".into());
        }
        let points = expand_grid(&grid).map_err(|e| format!("{e:#}"))?;
        if points.len() > MAX_SWEEP_WITHOUT_YES {
            return Err(format!(
                "{} runs: more than {MAX_SWEEP_WITHOUT_YES}; narrow the grid, or use \
                 mislas queue add --yes",
                points.len()
            ));
        }
        let base = &self.current().config;
        points
            .iter()
            .map(|point| {
                let mut c = base.clone();
                for (k, v) in point {
                    c.set(k, v).map_err(|e| format!("{k} {v}: {e}"))?;
                }
                if let Some(i) = c.validate().first() {
                    return Err(format!("{}: {}", i.key, i.message));
                }
                c.name = point_name(&base.name, point);
                let name = c.name.clone();
                Ok((Box::new(Job::Single(c)), name))
            })
            .collect()
    }

    fn launch(&mut self, both: bool) -> FormAction {
        if both && self.tabs.len() < 2 {
            return FormAction::Status(
                "no preset of the other stage pairs with this one: r runs this stage".into(),
                true,
            );
        }
        let tabs: Vec<usize> = if both {
            (0..self.tabs.len()).collect()
        } else {
            vec![self.tab]
        };
        for &t in &tabs {
            let tab = &self.tabs[t];
            // In a plan, stage 2's resume is stage 1's best checkpoint: its own does not matter.
            let blocking = tab
                .issues
                .iter()
                .find(|(k, _)| !(both && k == "resume" && tab.config.stage() == Stage::Stage2));
            if let Some((k, m)) = blocking {
                let (k, m) = (k.clone(), m.clone());
                self.tab = t;
                self.selected = self.keys.iter().position(|x| *x == k).unwrap_or(0);
                return FormAction::Status(format!("cannot launch: {k}: {m}"), true);
            }
        }
        if both {
            let stage1 = self.tabs[0].config.clone();
            let stage2 = self.tabs[1].config.clone();
            let label = format!("{} → {}", stage1.name, stage2.name);
            let stage2 = vec![stage2];
            FormAction::Launch(Box::new(Job::Pipeline { stage1, stage2 }), label)
        } else {
            let c = self.current().config.clone();
            let label = c.name.clone();
            FormAction::Launch(Box::new(Job::Single(c)), label)
        }
    }
}

/// The file stem a user preset is saved under (`quick.yaml` → `quick`), which is also its `name`.
pub fn preset_file_stem(name: &str) -> &str {
    let name = name.trim();
    name.strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name)
}

/// Draws the form in `area`; `runs` feed the `resume` picker.
pub fn draw(
    form: Option<&FormScreen>,
    runs: &[RunSummary],
    theme: Theme,
    f: &mut Frame<'_>,
    area: Rect,
) {
    let Some(form) = form else {
        f.render_widget(
            Paragraph::new("\nNo preset open: pick one on the presets screen (1) and press Enter.")
                .centered()
                .block(panel("Hyperparameters", false, theme)),
            area,
        );
        return;
    };
    let [tabs_area, table_area, help_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(5),
    ])
    .areas(area);
    draw_tabs(form, theme, f, tabs_area);
    draw_table(form, theme, f, table_area);
    if let FormMode::Pick(sel) = &form.mode {
        draw_picker(runs, *sel, theme, f, table_area);
    }
    draw_help(form, theme, f, help_area);
}

/// The tab bar: one tab per stage, the visible one selected.
fn draw_tabs(form: &FormScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let dim = theme.dim();
    let mut tabs = vec![Span::styled(" Stage: ", dim)];
    for (i, t) in form.tabs.iter().enumerate() {
        let label = format!(" {} · {} ", t.config.stage(), t.preset_name);
        tabs.push(if i == form.tab {
            Span::styled(label, theme.selected())
        } else {
            Span::raw(label)
        });
        tabs.push(Span::raw(" "));
    }
    if form.tabs.len() > 1 {
        tabs.push(Span::styled("(Tab switches)", dim));
    }
    f.render_widget(Paragraph::new(Line::from(tabs)), area);
}

/// The title of the table: the preset file and the number of issues, if any.
fn table_title(tab: &FormTab) -> String {
    let n_issues = tab.issues.len();
    if n_issues == 0 {
        format!("Hyperparameters · {}", tab.path.display())
    } else {
        format!(
            "Hyperparameters · {} · {n_issues} issue{}",
            tab.path.display(),
            if n_issues == 1 { "" } else { "s" }
        )
    }
}

/// The table's row of a key: marked when it has an issue, its value marked when edited.
fn field_row<'a>(tab: &FormTab, k: &'a str, theme: Theme) -> Row<'a> {
    let dim = theme.dim();
    let preset = tab.preset.get(k).unwrap_or_default();
    let value = tab.config.get(k).unwrap_or_default();
    let edited = preset != value;
    let issue = tab.issue(k).is_some();
    let key_cell = if issue {
        Cell::from(Span::styled(format!("✗ {k}"), theme.bad()))
    } else {
        Cell::from(format!("  {k}"))
    };
    let value_cell = if edited {
        Cell::from(Span::styled(format!("{value} *"), theme.edited()))
    } else {
        Cell::from(value)
    };
    Row::new(vec![
        key_cell,
        Cell::from(Span::styled(field_type(k), dim)),
        Cell::from(Span::styled(preset, dim)),
        value_cell,
    ])
}

/// The table of every key of the visible tab, the selected one highlighted.
fn draw_table(form: &FormScreen, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let tab = form.current();
    let title = table_title(tab);
    let rows: Vec<Row<'_>> = form.keys.iter().map(|k| field_row(tab, k, theme)).collect();
    let table = Table::new(
        rows,
        [
            // Two columns of marker, then the longest key (`pretrained_weights`, 18).
            Constraint::Length(20),
            Constraint::Length(7),
            Constraint::Percentage(40),
            Constraint::Percentage(60),
        ],
    )
    .header(Row::new(["  Key", "Type", "Preset", "Value"]).style(theme.dim()))
    .block(panel(&title, true, theme))
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(form.selected));
    f.render_stateful_widget(table, area, &mut state);
}

/// The title of the help panel, by what the form is doing.
fn help_title(mode: &FormMode) -> &'static str {
    match mode {
        FormMode::Browse => "Field",
        FormMode::Edit(..) => "Edit · Enter applies · Esc cancels",
        FormMode::SaveAs(..) => "Save as a new user preset · Enter saves · Esc cancels",
        FormMode::Pick(_) => "Stage-1 run for resume · Enter picks · e types a path · Esc cancels",
        FormMode::Sweep(..) => "Sweep: KEY V1,V2 × KEY V1,V2 · Enter queues · Esc cancels",
    }
}

/// The help panel of the selected field in `help_area`, with the input line while typing; the
/// `resume` picker, when open, covers `table_area`.
/// The help pane under the form: the key's help, its issue, the line being typed.
fn draw_help(form: &FormScreen, theme: Theme, f: &mut Frame<'_>, help_area: Rect) {
    let tab = form.current();
    let key = form.key();
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("{key}: "), theme.key()),
        Span::raw(help_line(key)),
    ])];
    if let Some(m) = tab.issue(key) {
        lines.push(Line::styled(format!("✗ {m}"), theme.bad()));
    }
    match &form.mode {
        FormMode::Edit(input, err) | FormMode::SaveAs(input, err) | FormMode::Sweep(input, err) => {
            let mut l = Line::from(Span::styled("> ", theme.key()));
            l.spans
                .extend(input.line(theme.edited(), theme.selected()).spans);
            lines.insert(0, l);
            if let Some(e) = err {
                lines.insert(1, Line::styled(format!("✗ {e}"), theme.bad()));
            }
        }
        FormMode::Pick(_) | FormMode::Browse => {}
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(panel(help_title(&form.mode), false, theme)),
        help_area,
    );
}

fn draw_picker(runs: &[RunSummary], sel: usize, theme: Theme, f: &mut Frame<'_>, area: Rect) {
    let candidates = stage1_candidates(runs);
    let area = super::view::centered(area, 90, 80);
    f.render_widget(ratatui::widgets::Clear, area);
    let rows: Vec<Row<'_>> = candidates
        .iter()
        .map(|r| {
            let (top1, ece) = r.epochs.last().map_or(("–".into(), "–".into()), |e| {
                (format!("{:.2}", e.best_top1), format!("{:.2}", e.best_ece))
            });
            let total = r.epochs.last().map_or(0, |e| e.num_epochs);
            Row::new(vec![
                r.name.clone(),
                format!("{}/{}", r.epochs.len(), total),
                top1,
                ece,
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Min(20),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(Row::new(["Stage-1 run", "Epochs", "Best", "ECE"]).style(theme.dim()))
    .block(panel(
        "Pick the stage-1 checkpoint (best top-1)",
        true,
        theme,
    ))
    .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(sel));
    f.render_stateful_widget(table, area, &mut state);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tab(overrides: &[&str]) -> FormTab {
        let mut c = Config {
            name: "t".into(),
            dataset: crate::config::DatasetName::FashionMnist,
            num_classes: 10,
            ..Config::default()
        };
        let pairs: Vec<String> = overrides.iter().map(|s| (*s).to_owned()).collect();
        c.apply_overrides(&pairs).unwrap();
        FormTab::new(
            "t".into(),
            PathBuf::from("t.yaml"),
            c,
            Path::new("/nonexistent"),
        )
    }

    #[test]
    fn machine_and_training_set_issues_show_inline() {
        // No machine here has a hundred GPUs.
        let t = tab(&["device", "cuda:99"]);
        assert!(
            t.issue("device").unwrap().contains("cuda:99"),
            "{:?}",
            t.issues
        );
        let t = tab(&["batch_size", "1000000000"]);
        assert!(
            t.issue("batch_size")
                .unwrap()
                .contains("larger than the training set (14886 images of Fashion-MNIST-LT"),
            "{:?}",
            t.issues
        );
        let t = tab(&["amp", "true"]);
        assert_eq!(
            t.issue("amp").is_some(),
            crate::distributed::machine::machine_cuda_devices() == 0,
            "{:?}",
            t.issues
        );
    }

    #[test]
    fn types_and_help_come_from_the_key_table() {
        for k in crate::config::KEYS {
            assert_eq!(field_type(k.name), k.kind.label());
            assert!(help_line(k.name).starts_with(k.help));
        }
        assert!(help_line("smooth_head").ends_with("(stage 2 only)"));
        assert_eq!(help_line("lr"), "Base learning rate of SGD");
        assert_eq!(field_type("no_such_key"), "value");
    }
}
