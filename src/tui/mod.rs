//! The terminal UI (`mislas` with no arguments): pick a preset, edit it, launch one or both
//! stages, watch loss, accuracy and ECE live; browse and compare the runs in `saved/`.
//!
//! A run launched here is a `mislas` process of its own (see [`crate::live`]): it outlives the
//! UI and its terminal, and any later `mislas` lists it and attaches to it (`a` on the runs
//! screen). The run screen reads its events from the run folder's `events.jsonl` on the same
//! crossbeam channel type a trainer thread gives, and sends controls over its socket.
//!
//! Elm-style: [`app::App`] is the state, [`app::Msg`] what happens, [`app::update`] the only
//! place the state changes and [`view::view`] draws it. One loop selects over the run's
//! events, the terminal's input (read on its own thread), signals, and timers; it drains every
//! pending trainer event before drawing and draws only after a change, at most 15 times a
//! second. The trainer never waits for the UI: its channel is unbounded. The Methods screen's
//! comparison runs on a worker thread of its own whose messages join the same loop, and so do
//! the answers of the loader thread that reads runs, metrics and the queue ([`loader`]).
pub mod app;
pub mod hyperparameters;
pub mod keys;
pub mod launch_dialog;
pub mod line_input;
pub mod list_nav;
pub mod loader;
pub mod methods;
pub mod methods_view;
pub mod presets;
pub mod run;
pub mod runs;
pub mod screens;
pub mod theme;
pub mod view;
pub mod widgets;

#[cfg(test)]
mod tests;

use crate::live::{self, Remote};
use crate::presets::{save_user_preset, PresetPlaces};
use app::{update, App, Effect, Msg, Quit};
use crossbeam_channel::{never, select, unbounded, Receiver};
use crossterm::event::{self as ct, Event as TermEvent};
use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io::{self, Stdout, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// Shortest time between two frames (15 frames per second at most).
const FRAME: Duration = Duration::from_millis(66);
/// Period of [`Msg::Tick`]: runs on screen are re-read from disk.
const TICK: Duration = Duration::from_secs(1);

/// Whether the UI holds the terminal (raw mode, alternate screen).
static TERMINAL_HELD: AtomicBool = AtomicBool::new(false);
/// The message of the last panic of another thread while the UI held the terminal.
static OTHER_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Puts the terminal back: raw mode off, main screen, cursor shown.
fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
}

/// Calls `restore` if the terminal is still held: it is restored once, by whichever of the UI's
/// end and its panic comes first.
fn release_terminal(restore: fn()) {
    if TERMINAL_HELD.swap(false, Ordering::SeqCst) {
        restore();
    }
}

/// The message of a panic.
fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    match info.location() {
        Some(l) => format!("panicked at {l}: {text}"),
        None => format!("panicked: {text}"),
    }
}

/// The message of a panic of another thread while the UI held the terminal, once.
pub fn take_other_panic() -> Option<String> {
    OTHER_PANIC.lock().ok()?.take()
}

/// Installs the panic hook of the UI running on `ui`: a panic of the UI thread restores the
/// terminal (with `restore`) and then prints as usual; a panic of another thread while the UI
/// holds the terminal touches neither the terminal nor stderr (the trainer reports its panic as
/// an error event, which the UI shows) and is kept for [`take_other_panic`]; once the UI has
/// let go of the terminal, panics print as usual.
fn install_panic_hook(ui: ThreadId, restore: fn()) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui {
            release_terminal(restore);
        } else if TERMINAL_HELD.load(Ordering::SeqCst) {
            if let Ok(mut p) = OTHER_PANIC.lock() {
                *p = Some(panic_message(info));
            }
            return;
        }
        previous(info);
    }));
}

/// Owns the terminal in raw mode on the alternate screen; restores it when dropped, and on a
/// panic of the UI thread before the panic message is printed.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        install_panic_hook(std::thread::current().id(), restore_terminal);
        terminal::enable_raw_mode()?;
        TERMINAL_HELD.store(true, Ordering::SeqCst);
        let entered = execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                release_terminal(restore_terminal);
                Err(e.into())
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        release_terminal(restore_terminal);
    }
}

/// Reads terminal input on its own thread; ends when the terminal is gone.
fn spawn_input() -> Receiver<Msg> {
    let (tx, rx) = unbounded();
    std::thread::Builder::new()
        .name("mislas-input".into())
        .spawn(move || loop {
            let msg = match ct::read() {
                Ok(TermEvent::Key(k)) => Msg::Key(k),
                Ok(TermEvent::Resize(columns, rows)) => Msg::Resize(columns, rows),
                Ok(_) => continue,
                Err(_) => break,
            };
            if tx.send(msg).is_err() {
                break;
            }
        })
        .ok();
    rx
}

/// Forwards SIGINT, SIGTERM and SIGHUP (a dropped SSH connection) to the loop.
fn spawn_signals() -> anyhow::Result<Receiver<Msg>> {
    let (tx, rx) = unbounded();
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("mislas-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if tx.send(Msg::Signal).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// What the loop owns besides the app: the followed run and where files go.
struct Host {
    /// The run on the run screen: launched as a process of its own, or attached to.
    remote: Option<Remote>,
    events: Receiver<crate::events::Event>,
    root: PathBuf,
    saved_root: PathBuf,
    /// Where the presets are looked for (and user presets saved).
    places: PresetPlaces,
    /// Reads runs, metrics and the queue off this thread.
    loader: loader::Loader,
    /// Messages of the comparison worker, while one runs.
    compare: Receiver<Msg>,
}

impl Host {
    /// A host over the project at `project_root`, with no trainer yet.
    ///
    /// # Errors
    /// The loader thread cannot be started.
    fn new(project_root: &Path, places: PresetPlaces) -> std::io::Result<Self> {
        let loader = loader::Loader::spawn(loader::Places {
            root: project_root.to_path_buf(),
            saved_root: project_root.join("saved"),
            queue_dir: None,
        })?;
        Ok(Host {
            remote: None,
            events: never(),
            root: project_root.to_path_buf(),
            saved_root: project_root.join("saved"),
            places,
            loader,
            compare: never(),
        })
    }

    /// Performs an effect; returns the messages that answer it.
    fn perform(&mut self, effect: Effect) -> Vec<Msg> {
        match effect {
            Effect::Launch(job) => match live::launch(&job, &self.saved_root, &self.root) {
                Ok(remote) => {
                    self.follow(remote);
                    Vec::new()
                }
                Err(e) => vec![Msg::Engine(crate::events::Event::Failed(
                    crate::events::Failure::new(crate::events::FailureKind::Io, format!("{e:#}")),
                ))],
            },
            Effect::Attach(dir) => {
                let stages = live::read_info(&dir).map(|i| i.stages);
                match stages.and_then(|s| live::attach(&dir).map(|r| (s, r))) {
                    Ok((stages, remote)) => {
                        self.follow(remote);
                        vec![Msg::Attached(dir, Ok(stages))]
                    }
                    Err(e) => vec![Msg::Attached(dir, Err(format!("{e:#}")))],
                }
            }
            Effect::Bell => {
                // BEL between two frames: the terminal rings (or flashes) and draws nothing.
                let mut out = io::stdout();
                let _ = out.write_all(b"\x07").and_then(|()| out.flush());
                Vec::new()
            }
            Effect::LoadQueue => {
                self.loader.ask(loader::Load::Queue);
                vec![Msg::Loading(app::Loading::Queue)]
            }
            Effect::QueueOp(op) => {
                self.loader.ask(loader::Load::QueueOp(op));
                Vec::new()
            }
            Effect::RemoveRun(dir, how) => {
                self.loader.ask(loader::Load::Remove(dir, how));
                vec![Msg::Loading(app::Loading::Runs)]
            }
            Effect::Control(c) => {
                if let Some(r) = &self.remote {
                    let _ = r.controls.send(c);
                }
                Vec::new()
            }
            Effect::SavePreset(name, config) => vec![Msg::Saved(match &self.places.user {
                Some(dir) => save_user_preset(dir, &name, &config).map_err(|e| format!("{e:#}")),
                None => Err("no user configuration folder on this system".into()),
            })],
            Effect::LoadRuns => {
                self.loader.ask(loader::Load::Runs);
                vec![Msg::Loading(app::Loading::Runs)]
            }
            Effect::LoadMetrics(dir) => {
                self.loader.ask(loader::Load::Metrics(dir));
                Vec::new()
            }
            Effect::LoadPresets => {
                vec![Msg::Presets(self.places.discover())]
            }
            Effect::Compare(dir, opts) => {
                self.compare = spawn_compare(dir, *opts);
                Vec::new()
            }
        }
    }

    /// Shows `remote`'s events from now on (a run followed before goes on without this UI).
    fn follow(&mut self, remote: Remote) {
        self.events = remote.events.clone();
        self.remote = Some(remote);
    }

    /// Applies `msg` and every effect it leads to; returns how many messages that was.
    fn dispatch(&mut self, app: &mut App, msg: Msg) -> usize {
        let mut queue = vec![msg];
        let mut n = 0;
        while let Some(m) = queue.pop() {
            n += 1;
            for e in update(app, m) {
                queue.extend(self.perform(e));
            }
        }
        n
    }
}

/// Runs `mislas compare` with `opts` for the Methods view of the stage-1 run in `dir` on a
/// thread of its own: its progress lines, then its comparison or why it failed (a panic
/// included), come back as [`Msg::Compare`].
fn spawn_compare(dir: PathBuf, opts: crate::compare::cli::CompareOptions) -> Receiver<Msg> {
    use methods::CompareMsg;
    let (tx, rx) = unbounded();
    let said = |d: &PathBuf, m| Msg::Compare(d.clone(), m);
    let (lines, failed, d) = (tx.clone(), tx.clone(), dir.clone());
    // At most 5 progress messages a second reach the loop (and the last of each pass).
    let (progress, pd) = (tx.clone(), dir.clone());
    let last = std::sync::Mutex::new(None::<std::time::Instant>);
    let mut opts = opts;
    opts.watch = opts.watch.clone().with_progress(std::sync::Arc::new(
        move |p: &crate::compare::cache::PassProgress| {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if p.done >= p.total || last.is_none_or(|t| t.elapsed().as_millis() >= 200) {
                *last = Some(std::time::Instant::now());
                let _ = progress.send(said(&pd, CompareMsg::Progress(p.clone())));
            }
        },
    ));
    let spawned = std::thread::Builder::new()
        .name("mislas-compare".into())
        .spawn(move || {
            let mut log = |l: &str| {
                let _ = lines.send(said(&dir, CompareMsg::Line(l.to_owned())));
            };
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::compare::cli::run(&opts, &mut log)
            }));
            let end = match caught {
                Ok(Ok((c, out))) => CompareMsg::Done(Box::new(c), out),
                Ok(Err(e)) => CompareMsg::Failed(format!("{e:#}")),
                Err(_) => CompareMsg::Failed(
                    take_other_panic().unwrap_or_else(|| "the comparison panicked".into()),
                ),
            };
            let _ = tx.send(said(&dir, end));
        });
    if let Err(e) = spawned {
        let why = format!("cannot start the comparison thread: {e}");
        let _ = failed.send(said(&d, CompareMsg::Failed(why)));
    }
    rx
}

/// Performs a change to the queue; returns what was done, in words.
pub(crate) fn queue_op(
    q: &crate::queue::Queue,
    op: app::QueueOp,
    root: &Path,
    saved_root: &Path,
) -> anyhow::Result<String> {
    use crate::queue::state;
    Ok(match op {
        app::QueueOp::Add(job, name) => {
            let id = q.add_job(&job, &name, root, saved_root)?;
            format!("queued {id}: {name} (mislas queue run starts the queue)")
        }
        app::QueueOp::ToggleHold(id) => {
            let job = q.list()?.into_iter().find(|j| j.id == id);
            let held = job.as_ref().is_some_and(|j| j.state == state::HELD);
            // A run handed to Slurm: its job is held or released (`scontrol`).
            let slurm_held = job
                .as_ref()
                .and_then(|j| j.slurm.as_ref())
                .and_then(|s| s.reason.as_deref())
                .is_some_and(|r| r.starts_with("JobHeld"));
            match (held, slurm_held) {
                (_, true) if q.release_slurm(id)? => format!("released Slurm's job of {id}"),
                (false, false) if q.hold_slurm(id)? => format!("held Slurm's job of {id}"),
                (true, _) => q.release(id).map(|()| format!("released {id}"))?,
                _ => q.hold(id).map(|()| format!("held {id}"))?,
            }
        }
        app::QueueOp::Remove(id) => match q.remove_slurm(id)? {
            true => format!("cancelled Slurm's job of {id} (scancel) and removed it"),
            false => q.remove(id).map(|()| format!("removed {id}"))?,
        },
        app::QueueOp::First(id) => q
            .to_front(id)
            .map(|()| format!("moved {id} to the front"))?,
    })
}

/// Opens the terminal UI over the project at `project_root` (presets under `presets/`, runs
/// under `saved/`) and runs it until the user quits. A run in progress goes on without the UI
/// after SIGTERM or SIGHUP (a dropped SSH connection) and after `q` → "leave it running"; Ctrl-C
/// and `q` → "stop it" stop it after its checkpoint before this returns.
///
/// # Errors
/// The terminal cannot be put in raw mode or drawn on, or signals cannot be registered.
pub fn run_tui(project_root: &Path) -> anyhow::Result<()> {
    let places = PresetPlaces::find(project_root);
    let presets = places.discover();
    let mut app = App::new(
        project_root.to_path_buf(),
        presets,
        theme::Theme::from_env(),
    );
    app.presets.places = places.describe();
    app.bell = app::bell_from_env(std::env::var(app::BELL_ENV).ok().as_deref());
    let mut host = Host::new(project_root, places)?;
    let signals = spawn_signals()?;
    let mut guard = TerminalGuard::enter()?;
    if let Ok(size) = guard.terminal.size() {
        app.size = (size.width, size.height);
    }
    let mut input = spawn_input();
    for e in app.init() {
        for m in host.perform(e) {
            host.dispatch(&mut app, m);
        }
    }
    event_loop(&mut app, &mut host, &mut guard, &signals, &mut input);
    drop(guard);
    print_outcome(&app);
    Ok(())
}

/// When the loop draws: whether the screen changed since the last frame, whether the terminal
/// can still be drawn on, and when the last frame was and the next tick is.
struct Pacing {
    dirty: bool,
    can_draw: bool,
    last_draw: Instant,
    next_tick: Instant,
}

impl Pacing {
    /// A first frame due at once, the first tick one [`TICK`] away.
    fn new() -> Self {
        let last_draw = Instant::now() - FRAME;
        let next_tick = Instant::now() + TICK;
        Pacing {
            dirty: true,
            can_draw: true,
            last_draw,
            next_tick,
        }
    }

    /// How long the loop may wait from `now`: until the next frame when one is pending, else
    /// until the next tick.
    fn timeout(&self, now: Instant) -> Duration {
        let wake = if self.dirty && self.can_draw {
            (self.last_draw + FRAME).min(self.next_tick)
        } else {
            self.next_tick
        };
        wake.saturating_duration_since(now)
    }
}

/// Runs the loop until the app quits: selects over the trainer's events, the terminal's
/// `input` and the `signals`, then ticks and draws when due.
fn event_loop(
    app: &mut App,
    host: &mut Host,
    guard: &mut TerminalGuard,
    signals: &Receiver<Msg>,
    input: &mut Receiver<Msg>,
) {
    let mut pacing = Pacing::new();
    while app.quit != Quit::Now {
        let timeout = pacing.timeout(Instant::now());
        let events = host.events.clone();
        let compare = host.compare.clone();
        let loaded = host.loader.answers.clone();
        select! {
            recv(events) -> ev => match ev {
                Ok(ev) => {
                    host.dispatch(app, Msg::Engine(ev));
                    // Drain what else is pending: many batches can arrive per frame.
                    while let Ok(ev) = events.try_recv() {
                        host.dispatch(app, Msg::Engine(ev));
                    }
                    pacing.dirty = true;
                }
                Err(_) => {
                    host.events = never();
                    host.dispatch(app, Msg::EngineClosed(take_other_panic()));
                    pacing.dirty = true;
                }
            },
            recv(input) -> msg => match msg {
                Ok(m) => {
                    host.dispatch(app, m);
                    pacing.dirty = true;
                }
                // The terminal is gone (hang-up): keep going until a run has stopped.
                Err(_) => {
                    *input = never();
                    pacing.can_draw = false;
                    host.dispatch(app, Msg::Signal);
                }
            },
            recv(signals) -> _ => {
                host.dispatch(app, Msg::Signal);
                pacing.dirty = true;
            },
            recv(loaded) -> msg => {
                if let Ok(m) = msg {
                    host.dispatch(app, m);
                    pacing.dirty = true;
                }
            },
            recv(compare) -> msg => {
                match msg {
                    Ok(m) => host.dispatch(app, m),
                    // The worker ended (after its last message).
                    Err(_) => {
                        host.compare = never();
                        0
                    }
                };
                pacing.dirty = true;
            },
            default(timeout) => {},
        }
        tick_and_draw(app, host, guard, &mut pacing);
    }
}

/// After a wake-up: the tick when it is due, then a frame when the screen changed and one is
/// due.
fn tick_and_draw(app: &mut App, host: &mut Host, guard: &mut TerminalGuard, pacing: &mut Pacing) {
    let now = Instant::now();
    if now >= pacing.next_tick {
        // A tick changes the screen only through what it re-reads.
        if host.dispatch(app, Msg::Tick) > 1 {
            pacing.dirty = true;
        }
        pacing.next_tick = now + TICK;
    }
    if pacing.dirty && pacing.can_draw && now >= pacing.last_draw + FRAME {
        // A terminal that fails to draw (hung up) stops being drawn on, but the loop goes on
        // until a run in progress has saved its checkpoint.
        if guard.terminal.draw(|f| view::view(app, f)).is_err() {
            pacing.can_draw = false;
        }
        pacing.last_draw = now;
        pacing.dirty = false;
    }
}

/// Prints how the last stage of the run ended, once the terminal is back, if one did.
fn print_outcome(app: &App) {
    // A stop ends the run with its stage's StageFinished (stopped); the Finished after it may
    // not have arrived when the UI quits on the first, and the run is not going on.
    let stopped = app
        .run
        .as_ref()
        .and_then(|r| r.finished.last())
        .is_some_and(|f| f.stopped);
    if let Some(dir) = app.live_dirs().first().filter(|_| !stopped) {
        let _ = writeln!(
            io::stdout(),
            "mislas: the run goes on in {} (`mislas` attaches to it again: 4, a)",
            dir.display()
        );
        return;
    }
    if let Some(f) = app.run.as_ref().and_then(|r| r.finished.last()) {
        let evaluated = app
            .run
            .as_ref()
            .is_some_and(|r| r.epochs.iter().any(|e| e.stage == f.stage));
        // Not println!: after a hang-up there may be no terminal to print on.
        let _ = writeln!(
            io::stdout(),
            "mislas: {} {} in {}{}",
            f.stage,
            if f.stopped {
                "stopped after saving its checkpoint"
            } else {
                "finished"
            },
            f.run_dir.display(),
            match (evaluated, f.best) {
                (true, Some(b)) => format!(" (best top-1 {:.2} %, ECE {:.2} %)", b.top1, b.ece),
                _ => " (no evaluation yet)".to_owned(),
            }
        );
    }
}
