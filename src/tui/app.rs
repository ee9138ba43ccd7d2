//! The app as a state machine: [`App`] is the state, [`Msg`] what happens (a key, a resize, a
//! tick, an engine event, the result of an effect), [`update`] the only place state changes,
//! and [`Effect`]s what the loop does for it (launch, send a control, read or write files).
use super::hyperparameters::{FormAction, FormScreen, FormTab};
use super::keys::{lookup, Binding};
use super::launch_dialog::{LaunchAnswer, LaunchDialog};
use super::methods::{CompareMsg, Job as CompareJob, MethodsAction, MethodsScreen, RunPlan};
use super::presets::{PresetsAction, PresetsScreen};
use super::run::{RunAction, RunScreen};
use super::runs::{QueueEdit, RunsAction, RunsScreen, RunsView};
use super::theme::Theme;
use super::view::{HelpKey, HELP_KEYS};
use crate::compare::cli::CompareOptions;
use crate::config::{Config, Stage};
use crate::events::{Control, EpochReport, Event, Failure, FailureKind};
use crate::presets::{partner, Preset};
use crate::run_dir::RunSummary;
use crate::runs::status::{FolderFacts, RunStatus};
use crate::wire::Job;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind};
use std::collections::HashMap;
use std::path::PathBuf;

pub use super::screens::Screen;

/// Everything that can happen to the app.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// The terminal was resized to this many columns and rows (the next frame uses them).
    Resize(u16, u16),
    /// A second passed: runs on screen are re-read from disk.
    Tick,
    /// An event of the trainer.
    Engine(Event),
    /// The trainer's channel closed without a last event (its thread died), with the message of
    /// its panic when one was caught.
    EngineClosed(Option<String>),
    /// SIGINT, SIGTERM or SIGHUP, or the end of terminal input (a hang-up).
    Signal,
    /// The runs in `saved/` were listed, with what their folders say.
    Runs(Vec<RunSummary>, HashMap<PathBuf, FolderFacts>),
    /// A run folder was read again.
    Facts(PathBuf, FolderFacts),
    /// A run's `metrics.jsonl` was read.
    Metrics(PathBuf, Result<Vec<EpochReport>, String>),
    /// The presets were scanned.
    Presets(Vec<Preset>),
    /// A user preset was saved (its file) or not (why).
    Saved(Result<PathBuf, String>),
    /// The run in this folder was attached to (the stages of its job) or not (why).
    Attached(PathBuf, Result<usize, String>),
    /// The queue was read.
    Queue(Result<Vec<crate::queue::Job>, String>),
    /// A change to the queue was made (what, in words) or not (why).
    QueueChanged(Result<String, String>),
    /// A read was handed to the loader thread: its answer comes later.
    Loading(Loading),
    /// The comparison worker of the Methods view of this stage-1 run said something.
    Compare(PathBuf, CompareMsg),
    /// A run folder was archived or deleted (what, in words) or not (why).
    Removed(Result<String, String>),
}

/// What the loader thread is reading for a screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loading {
    /// The runs of `saved/`.
    Runs,
    /// The queue.
    Queue,
}

/// What the loop does on the app's behalf; results come back as [`Msg`]s.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Start a job as a run process of its own and follow it.
    Launch(Box<Job>),
    /// Follow the live run whose job folder this is; answers [`Msg::Attached`].
    Attach(PathBuf),
    /// Read the queue; answers [`Msg::Queue`].
    LoadQueue,
    /// Ring the terminal bell (BEL, once).
    Bell,
    /// Change the queue; answers [`Msg::QueueChanged`], then [`Msg::Queue`].
    QueueOp(QueueOp),
    /// Send a control to the trainer.
    Control(Control),
    /// Save a configuration as a user preset of this name; answers [`Msg::Saved`].
    SavePreset(String, Box<Config>),
    /// List the runs in `saved/`; answers [`Msg::Runs`].
    LoadRuns,
    /// Read a run's `metrics.jsonl`; answers [`Msg::Metrics`].
    LoadMetrics(PathBuf),
    /// Scan the presets again; answers [`Msg::Presets`].
    LoadPresets,
    /// Archive or delete a run folder (and its queue entries); answers [`Msg::Removed`], then
    /// [`Msg::Runs`].
    RemoveRun(PathBuf, Removal),
    /// Run `mislas compare` for the Methods view of this stage-1 run on a worker thread;
    /// answers [`Msg::Compare`]s.
    Compare(PathBuf, Box<CompareOptions>),
}

/// What `d` on the runs screen does with a run folder, once confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Move it to `saved/.archive/` ([`crate::runs::archive::archive_run`]).
    Archive,
    /// Delete it for good ([`crate::runs::archive::delete_run`]).
    Delete,
}

/// A change to the queue asked for in the UI.
#[derive(Debug, Clone)]
pub enum QueueOp {
    /// Add a job under a name.
    Add(Box<Job>, String),
    /// Hold a queued run, or release a held one.
    ToggleHold(i64),
    /// Remove a run that is not running.
    Remove(i64),
    /// Move a run to the front.
    First(i64),
}

/// What happens once the form's unsaved edits are discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterDiscard {
    /// Quit.
    Quit,
    /// Open preset `i` (index into the presets) in the form.
    Open(usize),
    /// Open the form to resume the run in this folder.
    Resume(PathBuf),
    /// Open the form with the configuration of the run in this folder as a new run.
    Rerun(PathBuf),
}

/// A question over the current screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Stop the run (after its checkpoint)?
    Stop,
    /// Leave the run running or stop it, and quit (discarding this many unsaved edits of the
    /// form)?
    Quit(usize),
    /// Discard this many unsaved edits of the form, then do this?
    Discard(usize, AfterDiscard),
    /// Archive the run in this folder (`y`), or go on to delete it (`D`)?
    Remove(PathBuf),
    /// Delete the run in this folder for good?
    Delete(PathBuf),
}

/// What a key does everywhere (unless a text input has the keyboard; Ctrl-C even then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalKey {
    /// Go to screen 1–5 ([`super::screens::SCREENS`]).
    Screen,
    /// Open the help.
    Help,
    /// Quit (asks first during a run or with unsaved edits).
    Quit,
    /// Stop a run after its checkpoint and quit; a second one quits at once.
    Interrupt,
    /// Turn the terminal bell on or off.
    Bell,
}

/// Keys of every screen.
pub const GLOBAL_KEYS: &[Binding<GlobalKey>] = &[
    Binding::new(
        &[
            KeyCode::Char('1'),
            KeyCode::Char('2'),
            KeyCode::Char('3'),
            KeyCode::Char('4'),
            KeyCode::Char('5'),
        ],
        "1-5",
        GlobalKey::Screen,
        "screens",
        "presets, hyperparameters, run, runs, methods",
    ),
    Binding::new(
        &[KeyCode::Char('?')],
        "?",
        GlobalKey::Help,
        "help",
        "every key of every screen",
    ),
    Binding::new(
        &[KeyCode::Char('q')],
        "q",
        GlobalKey::Quit,
        "quit",
        "quit (asks first during a run or with unsaved edits)",
    ),
    Binding::new(
        &[KeyCode::Char('c')],
        "Ctrl-C",
        GlobalKey::Interrupt,
        "stop and quit",
        "stop a run after its checkpoint and quit; twice: at once",
    )
    .with_ctrl(),
    Binding::new(
        &[KeyCode::Char('g')],
        "Ctrl-G",
        GlobalKey::Bell,
        "bell",
        "bell on/off: the terminal bell rings when a run watched here or in the queue view ends \
         or fails (MISLAS_BELL=off starts with it off)",
    )
    .with_ctrl(),
];

/// Environment variable: `off` (or `0`, `false`, `no`) starts the UI with its bell off.
pub const BELL_ENV: &str = "MISLAS_BELL";

/// Whether the bell is on at start, given the value of [`BELL_ENV`].
pub fn bell_from_env(value: Option<&str>) -> bool {
    !matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("off" | "0" | "false" | "no")
    )
}

/// What covers the current screen.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    /// Every key of every screen.
    Help,
    /// A yes/no question.
    Confirm(Confirm),
    /// The epochs and device of the trained methods Enter on the Methods screen would train.
    Launch(Box<LaunchDialog>),
}

/// Whether the app is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quit {
    /// Not ending.
    No,
    /// A stop was sent; end once the trainer confirms it.
    AfterStop,
    /// End now.
    Now,
}

/// A line for the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The text.
    pub text: String,
    /// Whether it reports a problem.
    pub error: bool,
}

/// The state of the whole UI.
#[derive(Debug, Clone)]
pub struct App {
    /// Project root: relative data paths are resolved against it.
    pub root: PathBuf,
    /// Styles.
    pub theme: Theme,
    /// The screen shown.
    pub screen: Screen,
    /// Presets screen.
    pub presets: PresetsScreen,
    /// The form of the preset opened last.
    pub form: Option<FormScreen>,
    /// The run launched from this UI.
    pub run: Option<RunScreen>,
    /// Runs screen.
    pub runs: RunsScreen,
    /// What covers the screen.
    pub overlay: Option<Overlay>,
    /// Lines the help overlay is scrolled by.
    pub help_scroll: usize,
    /// Status bar message, until the next key.
    pub status: Option<Status>,
    /// Whether the app is ending.
    pub quit: Quit,
    /// Whether the runs were listed once (the first listing shows live runs to attach to).
    pub listed: bool,
    /// The stage-1 run whose comparison the worker is running, while it runs.
    pub comparing: Option<PathBuf>,
    /// The hold on that comparison (its stop flag), while it runs.
    pub compare_watch: Option<crate::compare::cache::Watch>,
    /// The Methods screen of the stage-1 run it was last opened on.
    pub methods: Option<MethodsScreen>,
    /// The trained methods' configurations the launch dialog confirmed, for the next
    /// [`App::run_methods`].
    pub confirmed_training: Option<Vec<(super::methods::Trained, Config)>>,
    /// Whether the bell rings when a run watched here ends or fails (Ctrl-G).
    pub bell: bool,
    /// The terminal's columns and rows, as last known (the help scrolls by them).
    pub size: (u16, u16),
}

/// Why `r` or `b` starts no run while one runs (launched or attached): how to start it next.
pub const RUN_IN_PROGRESS: &str = "a run is in progress: Q queues this one instead (B both; \
    `mislas queue run` starts the queue, Q on screen 4 shows it), or stop the run (3, s)";

impl App {
    /// The app on the presets screen.
    pub fn new(root: PathBuf, presets: Vec<Preset>, theme: Theme) -> Self {
        App {
            root,
            theme,
            screen: Screen::Presets,
            presets: PresetsScreen::new(presets),
            form: None,
            run: None,
            runs: RunsScreen::default(),
            overlay: None,
            help_scroll: 0,
            status: None,
            quit: Quit::No,
            listed: false,
            comparing: None,
            compare_watch: None,
            methods: None,
            confirmed_training: None,
            bell: true,
            size: super::view::MIN_SIZE,
        }
    }

    /// Effects to perform at start.
    pub fn init(&self) -> Vec<Effect> {
        vec![Effect::LoadRuns]
    }

    /// Whether a run is in progress.
    pub fn run_active(&self) -> bool {
        self.run.as_ref().is_some_and(RunScreen::is_active)
    }

    /// Whether a text input has the keyboard (digits and `q` are text then).
    fn typing(&self) -> bool {
        match self.screen {
            Screen::Presets => self.presets.filtering.is_some(),
            Screen::Hyperparameters => self.form.as_ref().is_some_and(FormScreen::is_typing),
            Screen::Runs => self.runs.is_typing(),
            Screen::Run | Screen::Methods => false,
        }
    }

    fn set_status(&mut self, text: impl Into<String>, error: bool) {
        self.status = Some(Status {
            text: text.into(),
            error,
        });
    }

    fn goto(&mut self, screen: Screen) -> Vec<Effect> {
        self.screen = screen;
        if screen == Screen::Runs {
            vec![Effect::LoadRuns]
        } else {
            Vec::new()
        }
    }

    /// Ctrl-C: stop a run after its checkpoint and quit; a second Ctrl-C quits at once (the
    /// run, a process of its own, still saves its checkpoint). A hang-up or SIGTERM does not
    /// come here: the run goes on without the UI.
    fn interrupt(&mut self) -> Vec<Effect> {
        if !self.run_active() || self.quit == Quit::AfterStop {
            self.quit = Quit::Now;
            return Vec::new();
        }
        self.quit = Quit::AfterStop;
        self.set_status(
            "stopping: the run saves its checkpoint, then mislas quits (Ctrl-C again: quit now)",
            false,
        );
        self.stop()
    }

    /// At start: the runs screen on the first live run, when there is one.
    fn show_live_runs(&mut self) {
        let live: Vec<usize> = (0..self.runs.runs.len())
            .filter(|&i| self.runs.facts(&self.runs.runs[i].dir).alive == Some(true))
            .collect();
        if let Some(&first) = live.first() {
            self.runs.selected = first;
            self.screen = Screen::Runs;
            let n = live.len();
            let s = if n == 1 { "" } else { "s" };
            self.set_status(
                format!("{n} live run{s}: a attaches to the selected one"),
                false,
            );
        }
    }

    /// Asks the trainer to stop, once.
    fn stop(&mut self) -> Vec<Effect> {
        match &mut self.run {
            Some(r) if r.is_active() && r.state != super::run::RunState::Stopping => {
                r.state = super::run::RunState::Stopping;
                r.push_log("■ stop asked: finishing the batch and saving a checkpoint".into());
                vec![Effect::Control(Control::Stop)]
            }
            _ => Vec::new(),
        }
    }

    /// Unsaved edits of the form.
    pub fn unsaved_edits(&self) -> usize {
        self.form.as_ref().map_or(0, FormScreen::unsaved_edits)
    }

    /// Run folders the trainer of this process is writing.
    pub fn live_dirs(&self) -> Vec<PathBuf> {
        match &self.run {
            Some(r) if r.is_active() => r.stage.iter().map(|s| s.run_dir.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// Does `then` now, or first asks whether to discard the form's unsaved edits.
    fn discard_then(&mut self, then: AfterDiscard) -> Vec<Effect> {
        match self.unsaved_edits() {
            0 => self.after_discard(then),
            n => {
                self.overlay = Some(Overlay::Confirm(Confirm::Discard(n, then)));
                Vec::new()
            }
        }
    }

    fn after_discard(&mut self, then: AfterDiscard) -> Vec<Effect> {
        match then {
            AfterDiscard::Quit => self.quit = Quit::Now,
            AfterDiscard::Open(i) => self.open_preset_now(i),
            AfterDiscard::Resume(dir) => self.open_resume(&dir),
            AfterDiscard::Rerun(dir) => self.open_rerun(&dir),
        }
        Vec::new()
    }

    fn ask_quit(&mut self) -> Vec<Effect> {
        if self.run_active() {
            self.overlay = Some(Overlay::Confirm(Confirm::Quit(self.unsaved_edits())));
            return Vec::new();
        }
        self.discard_then(AfterDiscard::Quit)
    }

    /// Back to the form that holds preset `i` (its edits kept: `u` undoes a field), or a new form
    /// for it after asking to discard the open form's unsaved edits.
    fn open_preset(&mut self, i: usize) -> Vec<Effect> {
        let p = &self.presets.presets[i];
        if let Some(form) = &mut self.form {
            if let Some(t) = form.tabs.iter().position(|t| t.path == p.path) {
                form.tab = t;
                self.screen = Screen::Hyperparameters;
                return Vec::new();
            }
        }
        self.discard_then(AfterDiscard::Open(i))
    }

    fn open_preset_now(&mut self, i: usize) {
        let p = &self.presets.presets[i];
        let Ok(config) = &p.config else {
            let msg = format!("{}: cannot be opened: fix the file first", p.name());
            self.set_status(msg, true);
            return;
        };
        let mut tabs = vec![(i, config.clone())];
        if let Some(j) = partner(&self.presets.presets, i) {
            if let Ok(c) = &self.presets.presets[j].config {
                tabs.push((j, c.clone()));
            }
        }
        tabs.sort_by_key(|(_, c)| c.stage() != Stage::Stage1);
        let current = tabs.iter().position(|(k, _)| *k == i).unwrap_or(0);
        let tabs = tabs
            .into_iter()
            .map(|(k, c)| {
                let p = &self.presets.presets[k];
                FormTab::new(p.name(), p.path.clone(), c, &self.root)
            })
            .collect();
        self.form = Some(FormScreen::new(tabs, current));
        self.screen = Screen::Hyperparameters;
    }

    /// The form of the run in `dir`'s configuration with `resume` set to its current checkpoint.
    fn open_resume(&mut self, dir: &std::path::Path) {
        let ckpt = self.runs.facts(dir).current_checkpoint;
        let run = self.runs.runs.iter().find(|r| r.dir == dir);
        let (Some(r), Some(ckpt)) = (run, ckpt) else {
            return self.set_status("the run folder or its checkpoint is gone", true);
        };
        let Some(mut config) = r.config.clone() else {
            return self.set_status("the run's config.yaml cannot be read", true);
        };
        let (name, path) = (r.name.clone(), r.dir.join("config.yaml"));
        if let Err(e) = config.set("resume", &ckpt.display().to_string()) {
            return self.set_status(e, true);
        }
        let mut form = FormScreen::new(vec![FormTab::new(name, path, config, &self.root)], 0);
        form.select("resume");
        self.form = Some(form);
        self.screen = Screen::Hyperparameters;
        self.set_status(
            "resume: r continues the run in its folder where it stopped",
            false,
        );
    }

    /// The form of a new run with the configuration of the run in `dir` ("re-run with one
    /// change", [`crate::runs::rerun::rerun_config`]): a new name, not resumed; edits are
    /// marked against that configuration, so the one change shows.
    fn open_rerun(&mut self, dir: &std::path::Path) {
        let Some(r) = self.runs.find(dir) else {
            return self.set_status("the run folder is gone", true);
        };
        let Some(config) = &r.config else {
            let why = format!("{}: its config.yaml cannot be read", r.dir.display());
            return self.set_status(why, true);
        };
        let config = crate::runs::rerun::rerun_config(config, dir);
        let label = format!("re-run of {}", r.name);
        // The name first: at 80 columns the form's value column cuts it.
        let text = format!(
            "new run {}: change a key, r runs it (the old folder stays)",
            config.name
        );
        let tab = FormTab::new(label, r.dir.join("config.yaml"), config, &self.root);
        self.form = Some(FormScreen::new(vec![tab], 0));
        self.screen = Screen::Hyperparameters;
        self.set_status(text, false);
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let global = lookup(GLOBAL_KEYS, &key);
        if global == Some(GlobalKey::Interrupt) {
            return self.interrupt();
        }
        if global == Some(GlobalKey::Bell) {
            self.bell = !self.bell;
            let text = match self.bell {
                true => "bell on: it rings when a watched run ends or fails (Ctrl-G: off)",
                false => "bell off (Ctrl-G: on again)",
            };
            self.set_status(text, false);
            return Vec::new();
        }
        self.status = None;
        if let Some(overlay) = self.overlay.take() {
            return self.on_overlay_key(overlay, key);
        }
        if !self.typing() {
            match global {
                Some(GlobalKey::Help) => {
                    self.overlay = Some(Overlay::Help);
                    self.help_scroll = 0;
                    return Vec::new();
                }
                Some(GlobalKey::Quit) => return self.ask_quit(),
                Some(GlobalKey::Screen) => {
                    return match super::screens::by_key(key.code) {
                        Some(screen) => self.goto(screen),
                        None => Vec::new(),
                    }
                }
                Some(GlobalKey::Interrupt | GlobalKey::Bell) | None => {}
            }
        }
        self.on_screen_key(key)
    }

    /// Scrolls the help by a line or a page, as far as its last line at the bottom of the help
    /// as drawn at the terminal's size.
    fn scroll_help(&mut self, code: KeyCode) {
        let (columns, rows, lines) = super::view::help_layout(self.screen, self.theme, self.size);
        let last = lines.len().saturating_sub(columns * rows);
        self.help_scroll = match code {
            KeyCode::Up | KeyCode::Char('k') => self.help_scroll.saturating_sub(1),
            KeyCode::PageUp => self.help_scroll.saturating_sub(10),
            KeyCode::PageDown => self.help_scroll + 10,
            _ => self.help_scroll + 1,
        }
        .min(last);
    }

    /// A key of the launch dialog: it stays, starts nothing, or trains what it confirmed.
    fn on_launch_key(&mut self, mut dialog: Box<LaunchDialog>, key: KeyEvent) -> Vec<Effect> {
        match dialog.on_key(key) {
            LaunchAnswer::Stay => {
                self.overlay = Some(Overlay::Launch(dialog));
                Vec::new()
            }
            LaunchAnswer::Cancel => {
                self.set_status("nothing trained or compared", false);
                Vec::new()
            }
            LaunchAnswer::Train(rows) => {
                self.confirmed_training = Some(rows);
                self.run_methods()
            }
        }
    }

    /// A key while `overlay` covers the screen (taken off; put back when it stays).
    fn on_overlay_key(&mut self, overlay: Overlay, key: KeyEvent) -> Vec<Effect> {
        match overlay {
            Overlay::Help => {
                if lookup(HELP_KEYS, &key) == Some(HelpKey::Scroll) {
                    self.scroll_help(key.code);
                    self.overlay = Some(Overlay::Help);
                }
                Vec::new()
            }
            Overlay::Launch(dialog) => self.on_launch_key(dialog, key),
            Overlay::Confirm(Confirm::Quit(_)) if key.code == KeyCode::Char('l') => {
                // The run is a process of its own: it goes on without this UI.
                self.quit = Quit::Now;
                Vec::new()
            }
            // Only the keys the dialog names act: Enter, which confirms the other dialogs,
            // must not move a run's folder away.
            Overlay::Confirm(Confirm::Remove(dir)) => match key.code {
                KeyCode::Char('y' | 'Y') => self.remove(dir, Removal::Archive),
                KeyCode::Char('D') => {
                    self.overlay = Some(Overlay::Confirm(Confirm::Delete(dir)));
                    Vec::new()
                }
                KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => Vec::new(),
                _ => {
                    self.overlay = Some(Overlay::Confirm(Confirm::Remove(dir)));
                    Vec::new()
                }
            },
            Overlay::Confirm(Confirm::Delete(dir)) => match key.code {
                KeyCode::Char('y') => self.remove(dir, Removal::Delete),
                KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => Vec::new(),
                _ => {
                    self.overlay = Some(Overlay::Confirm(Confirm::Delete(dir)));
                    Vec::new()
                }
            },
            Overlay::Confirm(c) => match key.code {
                KeyCode::Char('y' | 'Y' | 's') | KeyCode::Enter => match c {
                    Confirm::Stop => self.stop(),
                    Confirm::Quit(_) => {
                        self.quit = Quit::AfterStop;
                        self.stop()
                    }
                    Confirm::Discard(_, then) => self.after_discard(then),
                    // Answered by their own arms above; kept open if ever reached.
                    c @ (Confirm::Remove(_) | Confirm::Delete(_)) => {
                        self.overlay = Some(Overlay::Confirm(c));
                        Vec::new()
                    }
                },
                KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => Vec::new(),
                _ => {
                    self.overlay = Some(Overlay::Confirm(c));
                    Vec::new()
                }
            },
        }
    }

    fn on_screen_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        match self.screen {
            Screen::Presets => match self.presets.on_key(key) {
                PresetsAction::None => Vec::new(),
                PresetsAction::Open(i) => self.open_preset(i),
                PresetsAction::Rescan => vec![Effect::LoadPresets],
            },
            Screen::Hyperparameters => self.on_form_key(key),
            Screen::Run => {
                let Some(run) = &mut self.run else {
                    return Vec::new();
                };
                match run.on_key(key) {
                    RunAction::None => Vec::new(),
                    RunAction::Pause(true) => vec![Effect::Control(Control::Pause)],
                    RunAction::Pause(false) => vec![Effect::Control(Control::Resume)],
                    RunAction::ConfirmStop => {
                        self.overlay = Some(Overlay::Confirm(Confirm::Stop));
                        Vec::new()
                    }
                }
            }
            Screen::Runs => match self.runs.on_key(key) {
                RunsAction::None => Vec::new(),
                RunsAction::Refresh => vec![Effect::LoadRuns],
                RunsAction::Load(dirs) => dirs.into_iter().map(Effect::LoadMetrics).collect(),
                RunsAction::Resume(dir) => self.resume(dir),
                RunsAction::Rerun(dir) => self.discard_then(AfterDiscard::Rerun(dir)),
                RunsAction::Remove(dir) => self.ask_remove(dir),
                RunsAction::Attach(dir) => self.attach(dir),
                RunsAction::LoadQueue => vec![Effect::LoadQueue],
                RunsAction::Queue(edit) => vec![Effect::QueueOp(match edit {
                    QueueEdit::ToggleHold(id) => QueueOp::ToggleHold(id),
                    QueueEdit::Remove(id) => QueueOp::Remove(id),
                    QueueEdit::First(id) => QueueOp::First(id),
                })],
                RunsAction::Status(text) => {
                    self.set_status(text, true);
                    Vec::new()
                }
                RunsAction::OpenMethods(dir) => self.open_methods(&dir),
            },
            Screen::Methods => self.on_methods_key(key),
        }
    }

    /// A key of the Methods screen.
    fn on_methods_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(m) = &mut self.methods else {
            return Vec::new();
        };
        match m.on_key(key) {
            MethodsAction::None => Vec::new(),
            MethodsAction::Run => self.run_methods(),
            MethodsAction::Cancel => {
                if let Some(w) = &self.compare_watch {
                    w.cancel();
                    self.set_status("cancelling the comparison…", false);
                }
                Vec::new()
            }
            MethodsAction::Back => {
                self.runs.view = match m.from_detail {
                    true => RunsView::Detail(m.dir.clone()),
                    false => RunsView::List,
                };
                self.goto(Screen::Runs)
            }
        }
    }

    /// `R` on a run: the form to resume it, when it stopped, failed or was killed with a current
    /// checkpoint; else why not, in words.
    fn resume(&mut self, dir: PathBuf) -> Vec<Effect> {
        let live = self.live_dirs();
        let status = self.runs.status(&dir, &live);
        let name = self.runs.find(&dir).map_or("the run", |r| r.name.as_str());
        let checkpoint = self.runs.facts(&dir).current_checkpoint;
        let why = match status {
            None => Some("the run folder is gone".to_owned()),
            Some(RunStatus::Finished) => Some(format!(
                "{name} finished: nothing to resume (m compares methods on a stage-1 run)"
            )),
            Some(RunStatus::Live | RunStatus::Writing) => Some(format!(
                "{name} is running: a attaches to it, s on the run screen stops it"
            )),
            Some(s) if s.resumable() && checkpoint.is_none() => Some(format!(
                "{name} {} before its first checkpoint (ckps/current.safetensors): nothing to \
                 resume; its preset (1) trains it again",
                match s {
                    RunStatus::Died => "was killed",
                    RunStatus::Failed => "failed",
                    _ => "stopped",
                }
            )),
            Some(s) if s.resumable() => None,
            Some(_) => Some(format!(
                "{name}: nothing says how it ended; only a stopped, failed or killed run with \
                 ckps/current.safetensors can be resumed"
            )),
        };
        match why {
            Some(why) => {
                self.set_status(why, true);
                Vec::new()
            }
            None => self.discard_then(AfterDiscard::Resume(dir)),
        }
    }

    /// `d` on a run: asks whether to archive it (or delete it); a live one is refused.
    fn ask_remove(&mut self, dir: PathBuf) -> Vec<Effect> {
        let live = self.live_dirs();
        let name = self.runs.find(&dir).map_or("the run", |r| r.name.as_str());
        match self.runs.status(&dir, &live) {
            None => self.set_status("the run folder is gone", true),
            Some(RunStatus::Live | RunStatus::Writing) => {
                let why = format!("{name} is running: stop it first (a attaches, s stops)");
                self.set_status(why, true);
            }
            Some(_) => self.overlay = Some(Overlay::Confirm(Confirm::Remove(dir))),
        }
        Vec::new()
    }

    /// Archives or deletes the run in `dir` (confirmed): the list no longer shows it.
    fn remove(&mut self, dir: PathBuf, how: Removal) -> Vec<Effect> {
        let open = match &self.runs.view {
            RunsView::Detail(d) => d == &dir,
            RunsView::Compare(a, b) => a == &dir || b == &dir,
            _ => false,
        };
        if open {
            self.runs.view = RunsView::List;
        }
        if self.runs.marked.as_ref() == Some(&dir) {
            self.runs.marked = None;
        }
        vec![Effect::RemoveRun(dir, how)]
    }

    /// `a` on a live run: follow it on the run screen (from its beginning).
    fn attach(&mut self, dir: PathBuf) -> Vec<Effect> {
        if self.live_dirs().contains(&dir) {
            self.screen = Screen::Run;
            return Vec::new();
        }
        if self.runs.facts(&dir).alive != Some(true) {
            self.set_status(
                "only a live run can be attached to (R resumes a stopped or dead one)",
                true,
            );
            return Vec::new();
        }
        vec![Effect::Attach(dir)]
    }

    fn on_form_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(form) = &mut self.form else {
            return Vec::new();
        };
        match form.on_key(key, &self.runs.runs, &self.root) {
            FormAction::None => {}
            FormAction::Back => self.screen = Screen::Presets,
            FormAction::Status(s, error) => self.set_status(s, error),
            FormAction::Save(name, config) => return vec![Effect::SavePreset(name, config)],
            FormAction::Queue(job, name) => return vec![Effect::QueueOp(QueueOp::Add(job, name))],
            FormAction::QueueMany(jobs) => {
                return jobs
                    .into_iter()
                    .map(|(job, name)| Effect::QueueOp(QueueOp::Add(job, name)))
                    .collect()
            }
            FormAction::Launch(job, label) => {
                if self.run_active() {
                    self.set_status(RUN_IN_PROGRESS, true);
                    return Vec::new();
                }
                return self.launch(job, label);
            }
        }
        Vec::new()
    }

    /// Starts `job` as a run process of its own and shows it on the run screen.
    fn launch(&mut self, job: Box<Job>, label: String) -> Vec<Effect> {
        let stages = match *job {
            Job::Pipeline { ref stage2, .. } => 1 + stage2.len(),
            Job::Single(_) => 1,
        };
        self.run = Some(RunScreen::new(label, stages));
        self.screen = Screen::Run;
        vec![Effect::Launch(job)]
    }

    /// `m` on a run: its Methods screen, or why it has none.
    fn open_methods(&mut self, dir: &std::path::Path) -> Vec<Effect> {
        let live = self.live_dirs();
        let (Some(r), Some(st)) = (self.runs.find(dir), self.runs.status(dir, &live)) else {
            self.set_status("the run folder is gone", true);
            return Vec::new();
        };
        match MethodsScreen::open(r, st, &self.presets.presets) {
            Ok(mut m) => {
                m.from_detail = matches!(self.runs.view, RunsView::Detail(_));
                match &mut self.methods {
                    // Kept, with its results, while it is of the same run.
                    Some(old) if old.dir == m.dir => old.from_detail = m.from_detail,
                    _ => self.methods = Some(m),
                }
                if let Some(m) = &mut self.methods {
                    let runs = &self.runs;
                    let facts = &runs.facts;
                    m.offer_bases(&super::methods::Saved {
                        runs: &runs.all_runs,
                        facts,
                        live: &live,
                    });
                }
                self.screen = Screen::Methods;
            }
            Err(why) => self.set_status(why, true),
        }
        Vec::new()
    }

    /// Whether the stage-2 run `c` waits in the queue as last read (queued, held, starting or
    /// submitted to Slurm: it has no run folder yet): a run of its name whose configuration
    /// (read only for such a run) resumes the same checkpoint.
    fn waits_in_queue(&self, c: &Config) -> bool {
        use crate::queue::state::{HELD, QUEUED, STARTING, SUBMITTED};
        self.runs.queue.iter().any(|j| {
            j.name == c.name
                && [QUEUED, HELD, STARTING, SUBMITTED].contains(&j.state.as_str())
                && j.single_config().is_some_and(|q| q.resume == c.resume)
        })
    }

    /// Enter in the Methods view: trains the checked trained methods that have no run (the
    /// first launched when no run is in progress, the others queued) and compares the rest on
    /// the worker.
    fn run_methods(&mut self) -> Vec<Effect> {
        let Some(m) = &self.methods else {
            return Vec::new();
        };
        let plan = m.run_plan(&self.runs.all_runs, &self.runs.facts, &self.live_dirs());
        let dir = m.dir.clone();
        let RunPlan {
            train,
            training,
            compare,
            errors,
        } = plan;
        if train.is_empty() && training.is_empty() && compare.is_none() && errors.is_empty() {
            self.set_status("check methods with Space first", true);
            return Vec::new();
        }
        // A stage-2 run queued and not started yet has no folder the plan could find: not
        // trained a second time.
        let (queued, train): (Vec<_>, Vec<_>) =
            train.into_iter().partition(|(_, c)| self.waits_in_queue(c));
        let Some(train) = self.confirmed(train) else {
            return Vec::new();
        };
        let mut said = errors;
        for (t, c) in queued {
            said.push(format!(
                "{} ({}) is queued already: 4, Q shows the queue",
                t.name, c.name
            ));
        }
        let mut effects = Vec::new();
        if let Some(opts) = compare {
            match &self.comparing {
                Some(d) => said.push(format!("a comparison of {} is running: wait", d.display())),
                None => {
                    said.push(format!("comparing {} methods", opts.methods.len()));
                    self.comparing = Some(dir.clone());
                    if let Some(m) = &mut self.methods {
                        m.job = CompareJob::Running;
                        m.log.clear();
                        m.progress = None;
                    }
                    self.compare_watch = Some(opts.watch.clone());
                    effects.push(Effect::Compare(dir, Box::new(opts)));
                }
            }
        }
        for t in training {
            said.push(format!("{} is training: Enter again once it ends", t.name));
        }
        for (t, config) in train {
            let name = config.name.clone();
            if self.run_active() {
                said.push(format!("queued {} (mislas queue run starts it)", t.name));
                let job = Box::new(Job::Single(config));
                effects.push(Effect::QueueOp(QueueOp::Add(job, name)));
            } else {
                said.push(format!("training {} (4, m: back here)", t.name));
                effects.extend(self.launch(Box::new(Job::Single(config)), name));
            }
        }
        self.set_status(said.join("; "), false);
        effects
    }

    /// The trained methods to train, once the launch dialog has confirmed their epochs and
    /// devices (those of `train` it confirmed); `None` while it asks (it opens here when
    /// `train` is not empty), and Esc there starts nothing.
    fn confirmed(
        &mut self,
        train: Vec<(super::methods::Trained, Config)>,
    ) -> Option<Vec<(super::methods::Trained, Config)>> {
        match self.confirmed_training.take() {
            Some(rows) => Some(
                rows.into_iter()
                    .filter(|(t, _)| train.iter().any(|(u, _)| u == t))
                    .collect(),
            ),
            None if !train.is_empty() => {
                let dialog = LaunchDialog::new(train, self.run_active());
                self.overlay = Some(Overlay::Launch(Box::new(dialog)));
                None
            }
            None => Some(train),
        }
    }

    /// A message of the comparison worker of the run in `dir`.
    fn on_compare(&mut self, dir: PathBuf, msg: CompareMsg) {
        let last = !matches!(msg, CompareMsg::Line(_) | CompareMsg::Progress(_));
        if last && self.comparing.as_ref() == Some(&dir) {
            self.comparing = None;
        }
        if last && self.comparing.is_none() {
            self.compare_watch = None;
        }
        match &msg {
            CompareMsg::Failed(why) if why == crate::compare::cache::CANCELLED => {
                self.set_status("comparison cancelled", false)
            }
            CompareMsg::Failed(why) => self.set_status(format!("comparison failed: {why}"), true),
            CompareMsg::Done(c, out) => self.set_status(
                format!(
                    "compared {} methods: written to {}",
                    c.rows.len(),
                    out.display()
                ),
                false,
            ),
            CompareMsg::Line(_) | CompareMsg::Progress(_) => {}
        }
        if let Some(m) = self.methods.as_mut().filter(|m| m.dir == dir) {
            m.on_compare(msg);
        }
    }

    fn on_engine(&mut self, event: Event) -> Vec<Effect> {
        let Some(run) = &mut self.run else {
            return Vec::new();
        };
        let ended = match &event {
            Event::StageFinished(f) => f.stopped,
            Event::Finished | Event::Failed(_) => true,
            _ => false,
        };
        // A word when the run ends or fails, unless its stop was asked for here.
        let ring = matches!(event, Event::Finished | Event::Failed(_))
            && run.is_active()
            && run.state != super::run::RunState::Stopping;
        let mut effects = Vec::new();
        if ring && self.bell {
            effects.push(Effect::Bell);
        }
        match &event {
            Event::Failed(f) => {
                self.status = Some(Status {
                    text: format!("run failed: {}", f.message),
                    error: true,
                });
                effects.push(Effect::LoadRuns);
            }
            Event::StageFinished(_) | Event::Finished => effects.push(Effect::LoadRuns),
            _ => {}
        }
        run.on_event(event);
        if ended && self.quit == Quit::AfterStop {
            self.quit = Quit::Now;
        }
        effects
    }
}

/// Applies a message to the state; returns what the loop must do.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Key(k) => app.on_key(k),
        Msg::Resize(columns, rows) => {
            app.size = (columns, rows);
            Vec::new()
        }
        Msg::Tick => on_tick(app),
        Msg::Engine(e) => app.on_engine(e),
        Msg::EngineClosed(panic) => on_engine_closed(app, panic),
        // A hang-up or SIGTERM: the run is a process of its own and goes on; the UI ends.
        Msg::Signal => {
            app.quit = Quit::Now;
            Vec::new()
        }
        Msg::Loading(Loading::Runs) => {
            app.runs.loading = true;
            Vec::new()
        }
        Msg::Loading(Loading::Queue) => {
            app.runs.queue_loading = true;
            Vec::new()
        }
        Msg::Runs(runs, facts) => {
            app.runs.loading = false;
            app.runs.set_runs(runs);
            app.runs.set_facts(facts);
            if !std::mem::replace(&mut app.listed, true) && app.run.is_none() {
                app.show_live_runs();
            }
            Vec::new()
        }
        Msg::Attached(dir, Ok(stages)) => {
            on_attached(app, &dir, stages);
            Vec::new()
        }
        Msg::Queue(Ok(jobs)) => on_queue(app, jobs),
        Msg::Queue(Err(e)) | Msg::QueueChanged(Err(e)) => {
            app.runs.queue_loading = false;
            app.set_status(format!("queue: {e}"), true);
            Vec::new()
        }
        Msg::QueueChanged(Ok(what)) => {
            app.set_status(what, false);
            Vec::new()
        }
        Msg::Attached(dir, Err(e)) => {
            app.set_status(format!("cannot attach to {}: {e}", dir.display()), true);
            Vec::new()
        }
        Msg::Facts(dir, facts) => {
            app.runs.set_facts(HashMap::from([(dir, facts)]));
            Vec::new()
        }
        Msg::Metrics(dir, Ok(epochs)) => {
            app.runs.set_metrics(&dir, epochs);
            Vec::new()
        }
        Msg::Metrics(_, Err(e)) => {
            app.set_status(e, true);
            Vec::new()
        }
        Msg::Presets(p) => {
            app.presets.set_presets(p);
            Vec::new()
        }
        Msg::Compare(dir, m) => {
            app.on_compare(dir, m);
            Vec::new()
        }
        Msg::Saved(result) => on_saved(app, result),
        Msg::Removed(said) => {
            let error = said.is_err();
            app.set_status(said.unwrap_or_else(|e| e), error);
            Vec::new()
        }
    }
}

/// A tick: on the Methods screen, the runs again while a trained method's run is in
/// progress (to see it finish); on the Runs screen, the metrics of the open runs, or every
/// [`QUEUE_POLL_TICKS`] the queue while the queue view is shown.
fn on_tick(app: &mut App) -> Vec<Effect> {
    if app.screen == Screen::Methods {
        let live = app.live_dirs();
        let runs = &app.runs;
        return match &app.methods {
            Some(m) if m.waiting(&runs.all_runs, &runs.facts, &live) => vec![Effect::LoadRuns],
            _ => Vec::new(),
        };
    }
    if app.screen == Screen::Runs && app.runs.view == RunsView::Queue {
        // The queue view follows the queue by itself (read on the loader thread).
        app.runs.queue_ticks += 1;
        return match app.runs.queue_ticks % QUEUE_POLL_TICKS {
            0 => vec![Effect::LoadQueue],
            _ => Vec::new(),
        };
    }
    app.runs
        .open_dirs()
        .into_iter()
        .filter(|_| app.screen == Screen::Runs)
        .map(Effect::LoadMetrics)
        .collect()
}

/// Ticks (seconds) between two reads of the queue while its view is shown.
pub const QUEUE_POLL_TICKS: u32 = 2;

/// The trainer thread's channel closed: a run still active failed without a last event (the
/// bell rings for it).
fn on_engine_closed(app: &mut App, panic: Option<String>) -> Vec<Effect> {
    let mut effects = Vec::new();
    if let Some(r) = &mut app.run {
        if r.is_active() {
            let why = panic.map_or_else(String::new, |p| format!(": {p}"));
            r.on_event(Event::Failed(Failure::new(
                FailureKind::Internal,
                format!("the trainer thread ended without a last event{why}"),
            )));
            if app.bell {
                effects.push(Effect::Bell);
            }
        }
    }
    if app.quit == Quit::AfterStop {
        app.quit = Quit::Now;
    }
    effects
}

/// The queue was read: the runs that ended since the last read (but the one the run screen
/// watches, which rang already) ring the bell and are said — when that read is recent
/// ([`super::runs::QUEUE_FRESH`]): after the view was away, what ended meanwhile is shown in
/// the list, not rung minutes late.
fn on_queue(app: &mut App, jobs: Vec<crate::queue::Job>) -> Vec<Effect> {
    app.runs.queue_loading = false;
    let fresh = app
        .runs
        .queue_read_at
        .is_some_and(|t| t.elapsed() < super::runs::QUEUE_FRESH);
    if !fresh {
        app.runs.set_queue(jobs);
        return Vec::new();
    }
    let watched: Vec<PathBuf> = app.run.as_ref().map_or_else(Vec::new, |r| {
        let stages = r.stage.iter().map(|s| s.run_dir.clone());
        stages
            .chain(r.finished.iter().map(|f| f.run_dir.clone()))
            .collect()
    });
    let ended: Vec<String> = super::runs::ended_jobs(&app.runs.queue, &jobs)
        .into_iter()
        .filter(|j| j.run_dir.as_ref().is_none_or(|d| !watched.contains(d)))
        .map(|j| format!("queued run {} ({}) {}", j.id, j.name, j.state))
        .collect();
    app.runs.set_queue(jobs);
    if ended.is_empty() {
        return Vec::new();
    }
    let failed = ended
        .iter()
        .any(|e| e.ends_with(crate::queue::state::FAILED));
    app.set_status(ended.join("; "), failed);
    match app.bell {
        true => vec![Effect::Bell],
        false => Vec::new(),
    }
}

/// Attached to the run in `dir`: its screen, and what the keys do there.
fn on_attached(app: &mut App, dir: &std::path::Path, stages: usize) {
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    app.run = Some(RunScreen::new(name, stages));
    app.screen = Screen::Run;
    app.set_status(
        "attached: p pauses, s stops (any attached front end may); q leaves it running",
        false,
    );
}

/// A preset save ended: the form and the status line say how; a saved one reloads the list.
fn on_saved(app: &mut App, result: Result<PathBuf, String>) -> Vec<Effect> {
    if let Some(form) = &mut app.form {
        form.saved(&result);
    }
    match result {
        Ok(path) => {
            app.set_status(format!("saved the preset {}", path.display()), false);
            vec![Effect::LoadPresets]
        }
        Err(e) => {
            app.set_status(format!("not saved: {e}"), true);
            Vec::new()
        }
    }
}
