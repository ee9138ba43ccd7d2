//! The run's wire: what a front end hands the engine ([`Job`]), the two channels between a
//! trainer thread and its front ends ([`Link`] on the trainer's side, [`RunHandle`] on the front
//! end's), what a control check decides ([`Poll`], [`Flow`]) and how an error becomes the
//! [`Failure`] a front end is sent ([`Classify`]).
//!
//! It sits below the engine and `distributed` (both speak it), above `config` and `events` (what
//! travels on it).
use crate::config::Config;
use crate::events::{Control, Event, Failure, FailureKind};
use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};
use std::thread::JoinHandle;

/// What the trainer thread runs (every rank of a data-parallel run runs the same job).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
// Made once per run and moved into the trainer thread: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Job {
    /// One stage, as the configuration's `mode` says.
    Single(Config),
    /// Stage 1, then each stage 2 in turn, each with `resume` set to stage 1's best checkpoint
    /// and a run folder of its own (e.g. MiSLAS and cRT on one backbone).
    Pipeline {
        /// Stage-1 configuration.
        stage1: Config,
        /// Stage-2 configurations, at least one, run in this order (their `resume` is replaced);
        /// [`name_stage2_runs`] keeps their names apart.
        stage2: Vec<Config>,
    },
}

/// A running trainer thread and its two channels.
#[derive(Debug)]
pub struct RunHandle {
    /// Events from the trainer (unbounded: the trainer never waits for a front end).
    pub events: Receiver<Event>,
    /// Controls to the trainer.
    pub controls: Sender<Control>,
    thread: JoinHandle<()>,
}

impl RunHandle {
    /// The front end's end of a trainer thread's channels (made by [`crate::engine::spawn`]).
    pub fn new(events: Receiver<Event>, controls: Sender<Control>, thread: JoinHandle<()>) -> Self {
        RunHandle {
            events,
            controls,
            thread,
        }
    }

    /// Waits for the trainer thread to end.
    ///
    /// # Errors
    /// The thread panicked (the panic payload).
    pub fn join(self) -> std::thread::Result<()> {
        self.thread.join()
    }
}

impl Job {
    /// The configuration of its first stage.
    pub fn first_config(&self) -> &Config {
        match self {
            Job::Single(cfg) => cfg,
            Job::Pipeline { stage1, .. } => stage1,
        }
    }

    /// Sets `device` in every stage (a data-parallel rank's own device).
    pub fn set_device(&mut self, device: &str) {
        self.for_each_config(|c| c.device = device.to_owned());
    }

    /// Its stages' configurations, in order.
    pub fn configs(&self) -> Vec<&Config> {
        match self {
            Job::Single(cfg) => vec![cfg],
            Job::Pipeline { stage1, stage2 } => std::iter::once(stage1).chain(stage2).collect(),
        }
    }

    /// Changes every stage's configuration.
    pub fn for_each_config(&mut self, mut change: impl FnMut(&mut Config)) {
        match self {
            Job::Single(cfg) => change(cfg),
            Job::Pipeline { stage1, stage2 } => {
                change(stage1);
                stage2.iter_mut().for_each(change);
            }
        }
    }
}

/// Names the stage-2 runs of a pipeline so that each writes its own run folder: names that are
/// all different stay as they are; where two coincide (a sweep's `stage2.name` gives all of
/// them one name), every stage 2 gets `_<recipe>` appended (`…_seed0_mislas`, `…_seed0_crt`).
///
/// # Errors
/// No stage-2 configuration, or two with the same name and the same `recipe` (their run
/// folders could not be told apart): the message names them.
pub fn name_stage2_runs(stage2: &mut [Config]) -> Result<()> {
    if stage2.is_empty() {
        anyhow::bail!("a pipeline needs at least one stage-2 configuration");
    }
    let distinct = |s: &[Config]| {
        s.iter()
            .enumerate()
            .all(|(i, c)| s[..i].iter().all(|d| d.name != c.name))
    };
    if distinct(stage2) {
        return Ok(());
    }
    for c in stage2.iter_mut() {
        c.name = format!("{}_{}", c.name, c.recipe.name());
    }
    if !distinct(stage2) {
        let names: Vec<&str> = stage2.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "two stage-2 configurations have the same name and recipe ({}): give them \
             different names (`name`) or recipes",
            names.join(", ")
        );
    }
    Ok(())
}

/// Gives an error a [`FailureKind`]: the one way the engine's `anyhow` errors become the
/// [`Failure`] a front end is sent.
pub trait Classify<T> {
    /// The error as a [`Failure`] of `kind`, its message the error's chain (`a: b: c`).
    ///
    /// # Errors
    /// The error, classified.
    fn kind(self, kind: FailureKind) -> Result<T, Failure>;
}

impl<T> Classify<T> for Result<T> {
    fn kind(self, kind: FailureKind) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(kind, format!("{e:#}")))
    }
}

/// The trainer's end of the channels.
#[derive(Debug)]
pub struct Link {
    /// Events out.
    pub events: Sender<Event>,
    /// Controls in.
    pub controls: Receiver<Control>,
}

/// The controls' state, read without blocking ([`Link::poll`]); the numbers travel between
/// ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Go on.
    Continue = 0,
    /// Save a checkpoint and end the run.
    Stop = 1,
    /// Wait (paused).
    Paused = 2,
}

/// What the trainer does after a control check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on training.
    Continue,
    /// Save a checkpoint and end the run.
    Stop,
}

impl Link {
    /// Sends an event; a front end that has gone away is not an error.
    pub fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Reads pending controls without blocking: what the run should do now. `paused` carries
    /// the pause between calls ([`Event::Paused`] and [`Event::Resumed`] are sent as it
    /// changes). Every front end gone while paused is a stop: nobody could resume.
    pub fn poll(&self, paused: &mut bool) -> Poll {
        loop {
            match self.controls.try_recv() {
                Ok(Control::Stop) => return Poll::Stop,
                Ok(Control::Pause) if !*paused => {
                    *paused = true;
                    self.emit(Event::Paused);
                }
                Ok(Control::Resume) if *paused => {
                    *paused = false;
                    self.emit(Event::Resumed);
                }
                Ok(_) => {}
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    return if *paused {
                        Poll::Paused
                    } else {
                        Poll::Continue
                    };
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return if *paused { Poll::Stop } else { Poll::Continue };
                }
            }
        }
    }

    /// Reads pending controls; on [`Control::Pause`] blocks until resumed or stopped.
    pub fn check(&self) -> Flow {
        let mut paused = false;
        loop {
            let c = if paused {
                match self.controls.recv() {
                    Ok(c) => c,
                    // Every front end is gone: nobody can resume, so stop cleanly.
                    Err(_) => return Flow::Stop,
                }
            } else {
                match self.controls.try_recv() {
                    Ok(c) => c,
                    Err(_) => return Flow::Continue,
                }
            };
            match c {
                Control::Stop => return Flow::Stop,
                Control::Pause if !paused => {
                    paused = true;
                    self.emit(Event::Paused);
                }
                Control::Resume if paused => {
                    self.emit(Event::Resumed);
                    return Flow::Continue;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stage-2 names: kept when distinct, the recipe appended to all when two coincide,
    /// refused when name and recipe both coincide or there is no stage 2.
    #[test]
    fn stage2_runs_are_named_apart() {
        use crate::config::ClassifierRecipe;
        let c = |name: &str, recipe| Config {
            name: name.into(),
            recipe,
            ..Config::default()
        };
        let names = |s: &[Config]| s.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        let mut own = vec![
            c("a_stage2_mislas", ClassifierRecipe::Mislas),
            c("a_stage2_crt", ClassifierRecipe::Crt),
        ];
        name_stage2_runs(&mut own).unwrap();
        assert_eq!(names(&own), ["a_stage2_mislas", "a_stage2_crt"]);
        let mut swept = vec![
            c("r_seed0", ClassifierRecipe::Mislas),
            c("r_seed0", ClassifierRecipe::Crt),
            c("other", ClassifierRecipe::Lws),
        ];
        name_stage2_runs(&mut swept).unwrap();
        assert_eq!(
            names(&swept),
            ["r_seed0_mislas", "r_seed0_crt", "other_lws"]
        );
        let mut twins = vec![c("r", ClassifierRecipe::Crt), c("r", ClassifierRecipe::Crt)];
        let e = name_stage2_runs(&mut twins).unwrap_err().to_string();
        assert!(e.contains("same name and recipe (r_crt, r_crt)"), "{e}");
        let e = name_stage2_runs(&mut []).unwrap_err().to_string();
        assert!(e.contains("at least one stage-2"), "{e}");
    }

    #[test]
    fn pause_blocks_until_resume_and_stop_wins() {
        let (etx, erx) = crossbeam_channel::unbounded();
        let (ctx, crx) = crossbeam_channel::unbounded();
        let link = Link {
            events: etx,
            controls: crx,
        };
        assert_eq!(link.check(), Flow::Continue);
        ctx.send(Control::Pause).unwrap();
        ctx.send(Control::Resume).unwrap();
        assert_eq!(link.check(), Flow::Continue);
        assert_eq!(erx.try_recv(), Ok(Event::Paused));
        assert_eq!(erx.try_recv(), Ok(Event::Resumed));
        ctx.send(Control::Pause).unwrap();
        ctx.send(Control::Stop).unwrap();
        assert_eq!(link.check(), Flow::Stop);
        drop(ctx);
        ctx_gone_stops(&link);
    }

    fn ctx_gone_stops(link: &Link) {
        // All senders dropped while not paused: keep going.
        assert_eq!(link.check(), Flow::Continue);
    }
}
