//! The app as a state machine: [`App`] is the state, [`Msg`] what happens (a key, a resize, a
//! tick, an engine event, the result of an effect), [`update`] the only place state changes,
//! and [`Effect`]s what the loop does for it (launch, send a control, read or write files).
use super::hyperparameters::{FormAction, FormScreen, FormTab};
use super::presets::{PresetsAction, PresetsScreen};
use super::run::{RunAction, RunScreen};
use super::runs::{RunsAction, RunsScreen};
use super::theme::Theme;
use crate::config::{Config, Stage};
use crate::engine::Job;
use crate::events::{Control, EpochReport, Event, Failure, FailureKind};
use crate::presets::{partner, Preset};
use crate::run_dir::RunSummary;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::PathBuf;

/// The four screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Presets by data set.
    Presets,
    /// The hyperparameter form.
    Hyperparameters,
    /// The live run.
    Run,
    /// Runs in `saved/`.
    Runs,
}

/// Everything that can happen to the app.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// The terminal was resized (the next frame uses the new size).
    Resize,
    /// A second passed: runs on screen are re-read from disk.
    Tick,
    /// An event of the trainer.
    Engine(Event),
    /// The trainer's channel closed without a last event (its thread died).
    EngineClosed,
    /// SIGINT, SIGTERM or SIGHUP, or the end of terminal input (a hang-up).
    Signal,
    /// The runs in `saved/` were listed.
    Runs(Vec<RunSummary>),
    /// A run's `metrics.jsonl` was read.
    Metrics(PathBuf, Result<Vec<EpochReport>, String>),
    /// The presets were scanned.
    Presets(Vec<Preset>),
    /// A user preset was saved (its file) or not (why).
    Saved(Result<PathBuf, String>),
}

/// What the loop does on the app's behalf; results come back as [`Msg`]s.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Start the trainer on a job.
    Launch(Box<Job>),
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
}

/// A question over the current screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Stop the run (after its checkpoint)?
    Stop,
    /// Stop the run and quit?
    Quit,
}

/// What covers the current screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    /// Every key of every screen.
    Help,
    /// A yes/no question.
    Confirm(Confirm),
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
    /// Status bar message, until the next key.
    pub status: Option<Status>,
    /// Whether the app is ending.
    pub quit: Quit,
}

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
            status: None,
            quit: Quit::No,
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
            Screen::Run | Screen::Runs => false,
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

    /// Ctrl-C or a signal: stop a run after its checkpoint and quit. A second Ctrl-C quits at
    /// once; repeated signals do not (a hang-up arrives both as SIGHUP and as the end of input,
    /// and must not cost the checkpoint).
    fn interrupt(&mut self, escalate: bool) -> Vec<Effect> {
        if !self.run_active() {
            self.quit = Quit::Now;
            return Vec::new();
        }
        if self.quit == Quit::AfterStop {
            if escalate {
                self.quit = Quit::Now;
            }
            return Vec::new();
        }
        self.quit = Quit::AfterStop;
        self.set_status(
            "stopping: the run saves its checkpoint, then mislas quits (Ctrl-C again: quit now)",
            false,
        );
        self.stop()
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

    fn open_preset(&mut self, i: usize) {
        let p = &self.presets.presets[i];
        // Back to the form that holds this preset: its edits are kept (`u` undoes a field).
        if let Some(form) = &mut self.form {
            if let Some(t) = form.tabs.iter().position(|t| t.path == p.path) {
                form.tab = t;
                self.screen = Screen::Hyperparameters;
                return;
            }
        }
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

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return self.interrupt(true);
        }
        self.status = None;
        match self.overlay {
            Some(Overlay::Help) => {
                self.overlay = None;
                return Vec::new();
            }
            Some(Overlay::Confirm(c)) => {
                return match key.code {
                    KeyCode::Char('y' | 'Y') | KeyCode::Enter => {
                        self.overlay = None;
                        if c == Confirm::Quit {
                            self.quit = Quit::AfterStop;
                        }
                        self.stop()
                    }
                    KeyCode::Char('n' | 'N') | KeyCode::Esc | KeyCode::Char('q') => {
                        self.overlay = None;
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
            }
            None => {}
        }
        if !self.typing() {
            match key.code {
                KeyCode::Char('?') => {
                    self.overlay = Some(Overlay::Help);
                    return Vec::new();
                }
                KeyCode::Char('q') => {
                    if self.run_active() {
                        self.overlay = Some(Overlay::Confirm(Confirm::Quit));
                    } else {
                        self.quit = Quit::Now;
                    }
                    return Vec::new();
                }
                KeyCode::Char('1') => return self.goto(Screen::Presets),
                KeyCode::Char('2') => return self.goto(Screen::Hyperparameters),
                KeyCode::Char('3') => return self.goto(Screen::Run),
                KeyCode::Char('4') => return self.goto(Screen::Runs),
                _ => {}
            }
        }
        match self.screen {
            Screen::Presets => match self.presets.on_key(key) {
                PresetsAction::None => {}
                PresetsAction::Open(i) => self.open_preset(i),
                PresetsAction::Rescan => return vec![Effect::LoadPresets],
            },
            Screen::Hyperparameters => {
                let Some(form) = &mut self.form else {
                    return Vec::new();
                };
                match form.on_key(key, &self.runs.runs, &self.root) {
                    FormAction::None => {}
                    FormAction::Back => self.screen = Screen::Presets,
                    FormAction::Status(s, error) => self.set_status(s, error),
                    FormAction::Save(name, config) => {
                        return vec![Effect::SavePreset(name, config)]
                    }
                    FormAction::Launch(job, label) => {
                        if self.run_active() {
                            self.set_status("a run is in progress: stop it first (3, s)", true);
                            return Vec::new();
                        }
                        let stages = match *job {
                            Job::Pipeline { .. } => 2,
                            Job::Single(_) => 1,
                        };
                        self.run = Some(RunScreen::new(label, stages));
                        self.screen = Screen::Run;
                        return vec![Effect::Launch(job)];
                    }
                }
            }
            Screen::Run => {
                if let Some(run) = &mut self.run {
                    match run.on_key(key) {
                        RunAction::None => {}
                        RunAction::Pause(true) => return vec![Effect::Control(Control::Pause)],
                        RunAction::Pause(false) => return vec![Effect::Control(Control::Resume)],
                        RunAction::ConfirmStop => {
                            self.overlay = Some(Overlay::Confirm(Confirm::Stop))
                        }
                    }
                }
            }
            Screen::Runs => match self.runs.on_key(key) {
                RunsAction::None => {}
                RunsAction::Refresh => return vec![Effect::LoadRuns],
                RunsAction::Load(dirs) => {
                    return dirs.into_iter().map(Effect::LoadMetrics).collect()
                }
            },
        }
        Vec::new()
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
        let mut effects = Vec::new();
        match &event {
            Event::Failed(f) => {
                self.status = Some(Status {
                    text: format!("run failed: {}", f.message),
                    error: true,
                })
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
        Msg::Resize => Vec::new(),
        Msg::Tick => app
            .runs
            .open_dirs()
            .into_iter()
            .filter(|_| app.screen == Screen::Runs)
            .map(Effect::LoadMetrics)
            .collect(),
        Msg::Engine(e) => app.on_engine(e),
        Msg::EngineClosed => {
            if let Some(r) = &mut app.run {
                if r.is_active() {
                    r.on_event(Event::Failed(Failure::new(
                        FailureKind::Internal,
                        "the trainer thread ended without a last event",
                    )));
                }
            }
            if app.quit == Quit::AfterStop {
                app.quit = Quit::Now;
            }
            Vec::new()
        }
        Msg::Signal => app.interrupt(false),
        Msg::Runs(runs) => {
            app.runs.set_runs(runs);
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
        Msg::Saved(result) => {
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
    }
}
