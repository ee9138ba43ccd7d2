//! The trainer: one stage of any [`StageRecipe`], from set-up (or resume) to its last epoch.
//!
//! ```text
//! Trainer::new   set-up: config, device, checkpoint, data, network, recipe, SGD, run folder
//! fit            for each epoch:  train_epoch → evaluate_epoch → end_epoch
//!   train_epoch    for each batch: controls, bad images, train_batch (one SGD step)
//!   end_epoch      metrics line and events, then checkpoints (save_checkpoint)
//! stop / fail    the two early exits: save what can be saved, log, end
//! ```
//!
//! Data parallel ([`Replicas`], DDP's semantics): every rank runs this same loop on its shard
//! of each epoch's order with `batch_size / world size` images per batch; the step averages
//! gradients over the ranks; controls are agreed at every batch; evaluations are gathered;
//! only rank 0 writes the run folder and publishes events.
use super::evaluate::{eval_loader_options, evaluate_samples, EvalSpec, Evaluated};
use super::recipe::{self, StageRecipe, Start};
use super::setup::{self, Purpose};
use super::step::{train_step_synced, StepOptions, StepOutput, TrainBatch, MIXUP_STREAM};
use super::{device_info, panic_failure, resident_memory_bytes, stream_seed};
use crate::checkpoint::{self, Checkpoint, RunPosition};
use crate::config::{BadImagePolicy, Config, Stage};
use crate::data::loader::{epoch_loader, Batch, LoaderOptions};
use crate::data::{self, LongTailData};
use crate::distributed::replicas::Agreed;
use crate::distributed::{GradientSync, Replicas};
use crate::events::{
    BatchStats, BestFigures, EpochReport, EvalProgress, Event, Failure, FailureKind, StageFinished,
    StageStarted, Warning,
};
use crate::method::grad_scaler::{self, GradScaler};
use crate::method::sgd::Sgd;
use crate::metrics::EvalReport;
use crate::model::Network;
use crate::run_dir::{RunDir, SubsetRecord};
use crate::wire::{Classify, Flow, Link};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Under `amp`, non-finite losses in a row after which the run stops (the loss scale has then
/// halved this many times, from 2^16 to below 10^-10: the forward pass itself overflows).
pub const MAX_NONFINITE_STEPS: usize = 50;

/// What to do after a step's loss (see [`NonFiniteRule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// The loss is finite.
    Finite,
    /// Non-finite: the step was skipped, go on (this many in a row).
    Skip(usize),
    /// Non-finite: stop the run (this many in a row).
    Stop(usize),
}

/// The rule for non-finite training losses. Under `amp` a non-finite loss is an fp16 overflow
/// like any other: the step is skipped and the loss scale halves, as with PyTorch's
/// `GradScaler`, until it persists for [`MAX_NONFINITE_STEPS`] batches in a row. In fp32 the
/// run stops at the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFiniteRule {
    under_amp: bool,
    in_a_row: usize,
}

impl NonFiniteRule {
    /// The rule of a run with (`under_amp`) or without loss scaling.
    pub fn new(under_amp: bool) -> Self {
        NonFiniteRule {
            under_amp,
            in_a_row: 0,
        }
    }

    /// Counts one step's loss (nats); a finite loss ends a streak.
    pub fn observe(&mut self, loss: f64) -> NonFinite {
        if loss.is_finite() {
            self.in_a_row = 0;
            return NonFinite::Finite;
        }
        self.in_a_row += 1;
        match self.under_amp && self.in_a_row < MAX_NONFINITE_STEPS {
            true => NonFinite::Skip(self.in_a_row),
            false => NonFinite::Stop(self.in_a_row),
        }
    }
}

/// How a stage ended.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    /// Its run folder.
    pub run_dir: PathBuf,
    /// `model_best.safetensors`, when an epoch set a best top-1.
    pub best_checkpoint: Option<PathBuf>,
    /// Stopped by a control before the last epoch.
    pub stopped: bool,
    /// Best top-1 and its ECE; `None` before the first evaluation.
    pub best: Option<BestFigures>,
}

/// Environment variable of the run's fault drills (tests of the queue's retries): the run kills
/// itself with SIGKILL at the step it names, unless it was resumed: `kill_after_checkpoint`
/// (right after its first in-epoch checkpoint, `checkpoint_every`), `kill_before_checkpoint`
/// (before its first training step, no checkpoint written); `STEP@NAME` only in the run named
/// `NAME`; several, comma-separated.
pub const RUN_FAULT_ENV: &str = "MISLAS_RUN_FAULT";

/// Runs one stage of `cfg` (its `mode`) on this process's rank of `replicas`
/// ([`Replicas::single`] alone), writing its run folder under `saved_root` (rank 0).
///
/// With `resume` naming a mislas checkpoint of the same stage, the run continues in that
/// checkpoint's run folder at the batch where it stopped. Stage 2 needs `resume` to name a
/// stage-1 checkpoint (mislas `.safetensors` or the reference's `.pth.tar`).
///
/// # Errors
/// A [`Failure`]: an unusable configuration, missing or damaged data, an unusable checkpoint,
/// a non-finite loss (the last good checkpoint is kept), memory run out, or a failed write;
/// each message names the file and what was expected.
pub fn run_stage(
    cfg: &Config,
    saved_root: &Path,
    link: &Link,
    replicas: &Replicas,
) -> Result<StageOutcome, Failure> {
    let cfg = own_checkpoint(cfg);
    Trainer::new(&cfg, saved_root, link, replicas)?.fit()
}

/// `cfg` with `resume` set to the run's own latest checkpoint when `run_dir` names a folder
/// that holds one (`<run_dir>/<model_dir>/current.safetensors`): a restarted job continues its
/// run at the batch where it stopped, whatever checkpoint it was first started from. Otherwise
/// `cfg` unchanged.
fn own_checkpoint(cfg: &Config) -> std::borrow::Cow<'_, Config> {
    if cfg.run_dir.is_empty() {
        return std::borrow::Cow::Borrowed(cfg);
    }
    let current = Path::new(&cfg.run_dir)
        .join(&cfg.model_dir)
        .join(crate::run_dir::CURRENT);
    if !current.is_file() {
        return std::borrow::Cow::Borrowed(cfg);
    }
    let mut own = cfg.clone();
    own.resume = current.display().to_string();
    std::borrow::Cow::Owned(own)
}

/// Sums over the trained batches of an epoch (what a mid-epoch checkpoint records).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct EpochSums {
    loss_sum: f64,
    correct: f64,
    seen: f64,
}

/// An epoch's training, as it goes.
#[derive(Debug)]
struct EpochTraining {
    lrs: Vec<f64>,
    sums: EpochSums,
    /// Images seen before this session of the epoch (a resumed epoch).
    seen_before: f64,
    overflow_skips: usize,
    nonfinite: NonFiniteRule,
    started: Instant,
    last_batch: Instant,
    /// Wall-clock seconds of the epoch's training, once it ended.
    train_seconds: f64,
}

/// Why the epoch loop left early (boxed: the loop's `Ok` values are small).
#[derive(Debug)]
enum Halt {
    /// A [`crate::events::Control::Stop`]: save at this position and end.
    Stopped(Box<RunPosition>),
    /// A failure; the run is saved at the position first when there is one.
    Failed(Box<(Failure, Option<RunPosition>)>),
}

impl Halt {
    fn stopped(at: RunPosition) -> Self {
        Halt::Stopped(Box::new(at))
    }

    fn failed(failure: Failure, save_at: Option<RunPosition>) -> Self {
        Halt::Failed(Box::new((failure, save_at)))
    }
}

impl From<Failure> for Halt {
    fn from(failure: Failure) -> Self {
        Halt::failed(failure, None)
    }
}

/// One stage's training state.
struct Trainer<'a> {
    cfg: &'a Config,
    link: &'a Link,
    replicas: &'a Replicas,
    recipe: Box<dyn StageRecipe>,
    device: Device,
    data: LongTailData,
    net: Network,
    sgd: Sgd,
    scaler: Option<GradScaler>,
    run: RunDir,
    spec: EvalSpec,
    /// Where this session starts (a resumed run's checkpoint, else epoch 0 batch 0).
    start: RunPosition,
    best: Option<BestFigures>,
    /// Log lines that wait for the run folder (the loaded checkpoint, changed settings).
    opening: Vec<Event>,
    /// When the last checkpoint was written (or the stage started): the clock of
    /// `checkpoint_every`.
    last_checkpoint: Instant,
    /// Data parallel with averaged BatchNorm statistics ([`Trainer::averages_bn_stats`]): a
    /// step changed this rank's running statistics since they were last averaged.
    bn_stats_local: std::cell::Cell<bool>,
}

impl<'a> Trainer<'a> {
    /// Set-up: everything before the first batch. A checkpoint that does not fit creates no
    /// run folder.
    fn new(
        cfg: &'a Config,
        saved_root: &Path,
        link: &'a Link,
        replicas: &'a Replicas,
    ) -> Result<Self, Failure> {
        let mut p = setup::prepare(cfg, Purpose::Train)?;
        let continue_in = setup::continued_run(cfg, p.checkpoint.as_ref())?;
        let recipe =
            recipe::for_config(cfg, &p.data.class_counts, p.device).kind(FailureKind::Config)?;
        if let (None, Some(msg)) = (&p.checkpoint, recipe.missing_checkpoint()) {
            return Err(Failure::new(FailureKind::Config, msg));
        }
        let position = continue_in.as_ref().map(|(_, pos)| *pos);
        let parts = recipe.restored_parts(&p.net, position.is_some());
        let loaded = p.restore(&parts, position.as_ref())?;
        let start = match (position, &p.checkpoint) {
            (Some(_), _) => Start::Continuing,
            (None, Some(_)) => Start::FromCheckpoint,
            (None, None) => Start::Fresh,
        };
        recipe
            .prepare_network(&mut p.net, start)
            .kind(FailureKind::Checkpoint)?;
        if cfg.channels_last {
            p.net.to_channels_last();
        }
        let mut sgd = Sgd::new(
            recipe.parameter_groups(&p.net),
            cfg.lr,
            cfg.momentum,
            cfg.weight_decay,
        );
        let mut scaler = cfg.amp.then(|| GradScaler::new(p.device));
        if let (Some(ck), Some(_)) = (&p.checkpoint, position) {
            restore_optimizer(ck, &mut sgd, scaler.as_mut(), recipe.as_ref())?;
        }
        replicas
            .broadcast_state(&p.net)
            .kind(FailureKind::LostRank)?;
        let continue_in = continue_in.map(|(root, _)| root);
        let run = rank_run_dir(
            replicas,
            recipe.stage(),
            cfg,
            saved_root,
            continue_in,
            &p.data,
        )?;
        let mut opening: Vec<Event> = loaded.into_iter().map(Event::Log).collect();
        opening.push(Event::Log(format!("=> {}", recipe.describe())));
        if position.is_some() {
            if run.writes() {
                opening.push(Event::Log(restart_line(&run)?));
            }
            opening.extend(changed_settings(cfg, &run.root));
        }
        let best = position
            .filter(|_| run.best_checkpoint().is_file())
            .map(|p| BestFigures {
                top1: p.best_top1,
                ece: p.best_ece,
            });
        let spec = EvalSpec::of(cfg, &p.data.class_counts);
        Ok(Trainer {
            start: position.unwrap_or_else(|| fresh_position(cfg, recipe.as_ref())),
            cfg,
            link,
            replicas,
            recipe,
            device: p.device,
            data: p.data,
            net: p.net,
            sgd,
            scaler,
            run,
            spec,
            best,
            opening,
            last_checkpoint: Instant::now(),
            bn_stats_local: std::cell::Cell::new(false),
        })
    }

    /// The fit loop: announce the stage, then train, evaluate and end each epoch.
    fn fit(mut self) -> Result<StageOutcome, Failure> {
        let epochs = |t: &mut Self| -> Result<(), Halt> {
            t.announce()?;
            for epoch in t.start.epoch..t.cfg.num_epochs {
                let training = t.train_epoch(epoch)?;
                let (report, eval_seconds) = t.evaluate_epoch(epoch, &training)?;
                t.end_epoch(epoch, training, report, eval_seconds)?;
            }
            Ok(())
        };
        match epochs(&mut self) {
            Ok(()) => self.finish(false),
            Err(Halt::Stopped(at)) => self.stop(*at),
            Err(Halt::Failed(f)) => {
                let (failure, save_at) = *f;
                Err(self.fail(failure, save_at))
            }
        }
    }

    /// Logs what was loaded and how the stage runs, then publishes [`Event::StageStarted`].
    fn announce(&mut self) -> Result<(), Failure> {
        for event in std::mem::take(&mut self.opening) {
            self.emit(event)?;
        }
        let mut info = device_info(self.device);
        if self.replicas.world_size() > 1 {
            info.name = format!("{} × {} ranks", info.name, self.replicas.world_size());
        }
        let (train_n, cfg) = (self.data.train.len(), self.cfg);
        self.emit(Event::Log(format!(
            "=> {} of '{}' on {} ({}): {} training images {:?}, {} test images",
            self.recipe.stage(),
            cfg.name,
            info.name,
            info.id,
            train_n,
            self.data.class_counts,
            self.data.test.len()
        )))?;
        let averaged = self.averages_bn_stats();
        if let Some(line) = computation_line(cfg, self.replicas.world_size(), averaged) {
            self.emit(Event::Log(line))?;
        }
        self.emit(Event::StageStarted(StageStarted {
            stage: self.recipe.stage(),
            run_dir: self.run.root.clone(),
            name: cfg.name.clone(),
            dataset: cfg.dataset.display_name().to_owned(),
            device: info,
            num_epochs: cfg.num_epochs,
            start_epoch: self.start.epoch,
            batches_per_epoch: self.recipe.stream().batches_per_epoch(train_n),
            images_per_epoch: self.recipe.stream().images_per_epoch(train_n),
            class_counts: self.data.class_counts.clone(),
            head_class_idx: cfg.head_class_idx,
            med_class_idx: cfg.med_class_idx,
            tail_class_idx: cfg.tail_class_idx,
        }))
    }

    /// Trains one epoch (from the resumed batch in the first epoch of a resumed run).
    fn train_epoch(&mut self, epoch: usize) -> Result<EpochTraining, Halt> {
        self.recipe.begin_epoch(epoch);
        let lrs = self.recipe.learning_rates(epoch);
        for (g, lr) in lrs.iter().enumerate() {
            self.sgd.set_lr(g, *lr);
        }
        let stage = self.recipe.stage();
        self.emit(Event::EpochStarted {
            stage,
            epoch,
            lr: lrs.clone(),
        })?;
        let resuming_here = epoch == self.start.epoch && self.start.batch > 0;
        let (first_batch, sums) = match resuming_here {
            true => (self.start.batch, sums_of(&self.start)),
            false => (0, EpochSums::default()),
        };
        let mut t = EpochTraining {
            lrs,
            sums,
            seen_before: sums.seen,
            overflow_skips: 0,
            nonfinite: NonFiniteRule::new(self.scaler.is_some()),
            started: Instant::now(),
            last_batch: Instant::now(),
            train_seconds: 0.0,
        };
        let order = self.replicas.shard(
            self.recipe
                .stream()
                .epoch_order(self.data.train.labels(), epoch),
        );
        let opts = LoaderOptions {
            first_batch,
            ..self.loader_options()
        };
        let loader = epoch_loader(
            self.data.train.clone(),
            order,
            &self.data.norm,
            &opts,
            self.cfg.seed,
            epoch,
        );
        for batch in loader {
            let agreed = self.agree(self.cannot_train(&batch))?;
            if agreed.flow == Flow::Stop {
                return Err(Halt::stopped(self.position(epoch, batch.index, t.sums)));
            }
            if agreed.checkpoint && batch.index > first_batch {
                self.checkpoint_in_epoch(epoch, batch.index, t.sums)?;
                self.fault_point("kill_after_checkpoint");
            }
            self.fault_point("kill_before_checkpoint");
            self.train_batch(epoch, &batch, agreed.skip_step, &mut t)?;
        }
        t.train_seconds = t.started.elapsed().as_secs_f64();
        self.report_all_reduce(epoch, &t)?;
        if let Some(s) = &self.scaler {
            let scale = s.scale();
            self.emit(Event::Warning(Warning::LossScale {
                epoch,
                scale,
                skipped_steps: t.overflow_skips,
            }))?;
        }
        Ok(t)
    }

    /// Data parallel: the gradient all-reduce's share of the epoch's training time (the time
    /// the steps waited for it after the backward pass), in the log; with `ddp_overlap`, how
    /// many buckets started inside the backward pass and the time spent in its hooks.
    fn report_all_reduce(&mut self, epoch: usize, t: &EpochTraining) -> Result<(), Failure> {
        if self.replicas.world_size() == 1 || t.sums.seen <= t.seen_before {
            return Ok(());
        }
        let sync = self.replicas.take_sync_seconds();
        let how = match self.replicas.overlap_stats() {
            Some(s) => format!(
                "waited for after the backward pass it overlaps ({} of {} buckets started \
                 inside it, {:.1} s in its gradient hooks)",
                s.launched_in_backward, s.buckets, s.hook_seconds
            ),
            None => "after the backward pass".to_owned(),
        };
        self.emit(Event::Log(format!(
            "=> epoch {epoch}: gradient all-reduce {sync:.1} s of {:.1} s training ({:.1} %), \
             {how}",
            t.train_seconds,
            100.0 * sync / t.train_seconds.max(1e-9)
        )))
    }

    /// Whether this rank cannot train its batch: no image left, or one under BatchNorm in train
    /// mode. Over one image, where a feature map is 1×1 (small inputs), the batch variance is
    /// over one value and libtorch sets the running variance to NaN (PyTorch's Python layer
    /// raises "Expected more than 1 value per channel when training" instead), so a one-image
    /// step is skipped in every case.
    fn cannot_train(&self, batch: &Batch) -> bool {
        batch.len == 0 || (batch.len == 1 && self.recipe.backbone_train())
    }

    /// One batch: its bad images, then one SGD step and its figures; `skip_step` when some
    /// rank cannot train its share ([`Trainer::cannot_train`]).
    fn train_batch(
        &mut self,
        epoch: usize,
        batch: &Batch,
        skip_step: bool,
        t: &mut EpochTraining,
    ) -> Result<(), Halt> {
        let b = batch.index;
        self.check_bad_images(epoch, batch, t.sums)?;
        if batch.len == 0 {
            return Ok(());
        }
        if skip_step {
            let skipped = Warning::OneImageBatchSkipped { epoch, batch: b };
            return Ok(self.emit(Event::Warning(skipped))?);
        }
        let out = self.step(epoch, batch)?;
        // The step's images over every rank.
        let n = out.images as usize;
        if !out.applied {
            t.overflow_skips += 1;
        }
        if !out.loss.is_finite() {
            return self.on_nonfinite_loss(epoch, b, out.loss, t);
        }
        t.nonfinite.observe(out.loss);
        t.sums.loss_sum += out.loss * n as f64;
        t.sums.correct += out.hits as f64;
        t.sums.seen += n as f64;
        let now = Instant::now();
        let dt = now.duration_since(t.last_batch).as_secs_f64().max(1e-9);
        t.last_batch = now;
        let batches = self
            .recipe
            .stream()
            .batches_per_epoch(self.data.train.len());
        let top1 = 100.0 * out.hits as f64 / n as f64;
        self.emit(Event::Batch(BatchStats {
            stage: self.recipe.stage(),
            epoch,
            batch: b,
            batches,
            loss: out.loss,
            top1,
            lr: t.lrs[0],
            images_per_sec: n as f64 / dt,
            memory_bytes: resident_memory_bytes(),
        }))?;
        if self.cfg.print_freq > 0 && b.is_multiple_of(self.cfg.print_freq) {
            let s = t.sums;
            self.emit(Event::Log(format!(
                "Epoch: [{epoch}][{b:>3}/{batches}]\tLoss {:.3} ({:.3})\tAcc@1 {top1:.3} ({:.3})",
                out.loss,
                s.loss_sum / s.seen,
                100.0 * s.correct / s.seen
            )))?;
        }
        Ok(())
    }

    /// One SGD step on `batch`; a libtorch error (memory run out, most often) is a failure.
    fn step(&mut self, epoch: usize, batch: &Batch) -> Result<StepOutput, Halt> {
        let (device, cfg) = (self.device, self.cfg);
        let opts = StepOptions::of(cfg, self.recipe.backbone_train());
        let seed = stream_seed(cfg.seed, epoch, batch.index, MIXUP_STREAM);
        match (opts.backbone_train, self.averages_bn_stats()) {
            (true, true) => self.bn_stats_local.set(true),
            (true, false) => self
                .replicas
                .broadcast_buffers(&self.net)
                .kind(FailureKind::LostRank)?,
            (false, _) => {}
        }
        let (net, sgd, scaler) = (&self.net, &mut self.sgd, self.scaler.as_mut());
        let objective = self.recipe.objective();
        let sync = (self.replicas.world_size() > 1).then_some(self.replicas as &dyn GradientSync);
        let out = catch_unwind(AssertUnwindSafe(|| {
            let x = batch.images.to_device_(device, Kind::Float, true, false);
            let y = batch.labels.to_device_(device, Kind::Int64, true, false);
            let b = TrainBatch {
                images: &x,
                labels: &y,
                mixup_seed: seed,
            };
            train_step_synced(net, sgd, scaler, objective, b, opts, sync)
        }))
        .map_err(|panic| {
            let context = format!("training epoch {epoch} batch {}", batch.index);
            Halt::from(panic_failure(panic.as_ref(), &context, cfg, device))
        })?;
        let out = out.kind(FailureKind::LostRank)?;
        if out.applied {
            self.recipe.after_step(&self.net);
        }
        Ok(out)
    }

    /// Whether to go on, whether every rank trains the batch and whether an in-epoch
    /// checkpoint is due (`checkpoint_every` minutes since the last one, on rank 0's clock):
    /// agreed by every rank ([`Replicas::agree`]).
    fn agree(&self, skip_here: bool) -> Result<Agreed, Failure> {
        let due = self.last_checkpoint.elapsed().as_secs_f64() >= self.cfg.checkpoint_every * 60.0;
        self.replicas
            .agree(self.link, skip_here, due)
            .kind(FailureKind::LostRank)
    }

    /// Fault drills ([`RUN_FAULT_ENV`]): kills this process (SIGKILL, as `kill -9`) at `step`
    /// when the variable names it, in a run started afresh (not resumed), so that the restart
    /// a queue makes of it runs to its end.
    fn fault_point(&self, step: &str) {
        let named = |item: &str| match item.split_once('@') {
            Some((s, name)) => s == step && name == self.cfg.name,
            None => item == step,
        };
        let drill = std::env::var(RUN_FAULT_ENV).unwrap_or_default();
        if self.cfg.resume.is_empty() && drill.split(',').any(named) {
            eprintln!("=> fault drill: kill -9 at {step}");
            // SAFETY: a signal to this process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }

    /// The in-epoch checkpoint: the run saved before `batch` of `epoch` is trained, exactly as
    /// a stop saves it, so that a resume (or a restart after a kill) continues at this batch
    /// with the same results. Every rank calls it; rank 0 alone writes the file.
    fn checkpoint_in_epoch(
        &mut self,
        epoch: usize,
        batch: usize,
        sums: EpochSums,
    ) -> Result<(), Failure> {
        let at = self.position(epoch, batch, sums);
        self.save_settled(&at)
    }

    /// `ckps/current.safetensors` at `at` after the ranks' BatchNorm statistics are made one
    /// ([`Trainer::settle_bn_stats`]): the checkpoint of a position every rank agreed on (an
    /// in-epoch checkpoint, a stop). A failure's save (which may be one rank's alone) does
    /// not meet the other ranks: it keeps this rank's statistics.
    fn save_settled(&mut self, at: &RunPosition) -> Result<(), Failure> {
        self.settle_bn_stats()?;
        self.save_checkpoint(false, at)
    }

    /// Data parallel, stage 2 with shift learning and `sync_bn_stats`: each rank's BatchNorm
    /// running statistics follow its own share of every batch (no broadcast before the
    /// forward pass) and are averaged over the ranks before each evaluation and checkpoint
    /// ([`Trainer::settle_bn_stats`]).
    fn averages_bn_stats(&self) -> bool {
        self.replicas.world_size() > 1
            && self.cfg.sync_bn_stats
            && self.recipe.stage() == Stage::Stage2
            && self.recipe.backbone_train()
    }

    /// Makes the ranks' BatchNorm statistics one before an evaluation or a checkpoint: their
    /// mean over the ranks when [`Trainer::averages_bn_stats`] (once per change), else rank
    /// 0's (DDP's broadcast). Every rank calls it at the same point; alone it does nothing.
    fn settle_bn_stats(&self) -> Result<(), Failure> {
        let settled = match self.averages_bn_stats() {
            true if !self.bn_stats_local.get() => return Ok(()),
            true => self.replicas.average_batchnorm_statistics(&self.net),
            false => self.replicas.broadcast_buffers(&self.net),
        };
        settled.kind(FailureKind::LostRank)?;
        self.bn_stats_local.set(false);
        Ok(())
    }

    /// A non-finite loss: a warning while [`NonFiniteRule`] skips it, else the failure.
    fn on_nonfinite_loss(
        &mut self,
        epoch: usize,
        batch: usize,
        loss: f64,
        t: &mut EpochTraining,
    ) -> Result<(), Halt> {
        match t.nonfinite.observe(loss) {
            NonFinite::Skip(in_a_row) => {
                let w = Warning::NonFiniteLossSkipped {
                    epoch,
                    batch,
                    loss,
                    in_a_row,
                };
                Ok(self.emit(Event::Warning(w))?)
            }
            NonFinite::Stop(in_a_row) => {
                let under_amp = match self.scaler {
                    Some(_) => format!(" ({in_a_row} batches in a row under amp)"),
                    None => String::new(),
                };
                let message = format!(
                    "non-finite training loss ({loss}) at epoch {epoch} batch {batch}{under_amp}: \
                     training stopped; {}. Lower lr or check the data",
                    self.kept_note()
                );
                Err(Failure::new(FailureKind::NonFinite, message).into())
            }
            NonFinite::Finite => Ok(()),
        }
    }

    /// Unusable images of a batch: with `on_bad_image: fail` the run is saved at this batch
    /// (nothing is lost once the file is fixed) and stops; with `skip` each is a warning.
    fn check_bad_images(
        &mut self,
        epoch: usize,
        batch: &Batch,
        sums: EpochSums,
    ) -> Result<(), Halt> {
        if let Some(bad) = self.cfg.on_bad_image.refused(&batch.skipped) {
            let message = format!(
                "unusable image {bad} (epoch {epoch} batch {}). The run is saved at this batch: \
                 fix or replace the file, or {}, then resume with: resume {}",
                batch.index,
                BadImagePolicy::SKIP_HINT,
                self.run.current_checkpoint().display()
            );
            let at = self.position(epoch, batch.index, sums);
            return Err(Halt::failed(
                Failure::new(FailureKind::Data, message),
                Some(at),
            ));
        }
        for bad in &batch.skipped {
            let w = Warning::ImageSkipped {
                image: bad.to_string(),
                test: false,
            };
            self.emit(Event::Warning(w))?;
        }
        Ok(())
    }

    /// Evaluates the network on the test set after `epoch`'s training, publishing progress;
    /// returns the report and the seconds it took. A stop during the evaluation saves the
    /// epoch's training, so that a resume re-runs only the evaluation.
    fn evaluate_epoch(
        &mut self,
        epoch: usize,
        t: &EpochTraining,
    ) -> Result<(EvalReport, f64), Halt> {
        let batches = self
            .recipe
            .stream()
            .batches_per_epoch(self.data.train.len());
        let trained = self.position(epoch, batches, t.sums);
        let started = Instant::now();
        let evaluated = self.run_evaluation(epoch, started);
        let (report, skipped) = match evaluated {
            Ok(Evaluated::Done(report, skipped)) => (report, skipped),
            Ok(Evaluated::Stopped) => return Err(Halt::stopped(trained)),
            Err(mut failure) => {
                if failure.kind == FailureKind::Data {
                    failure.message = format!(
                        "{}. Epoch {epoch}'s training is saved: once the test set is fixed, \
                         resume with: resume {}",
                        failure.message,
                        self.run.current_checkpoint().display()
                    );
                }
                return Err(Halt::failed(failure, Some(trained)));
            }
        };
        for bad in &skipped {
            let w = Warning::ImageSkipped {
                image: bad.to_string(),
                test: true,
            };
            self.emit(Event::Warning(w))?;
        }
        if !report.nll.is_finite() {
            let message = format!(
                "the network's outputs are not finite after epoch {epoch} (test NLL {}): training \
                 stopped before saving; {}. Lower lr",
                report.nll,
                self.kept_note()
            );
            return Err(Failure::new(FailureKind::NonFinite, message).into());
        }
        Ok((report, started.elapsed().as_secs_f64()))
    }

    /// The evaluation itself, on this rank's shard of the test set, gathered from every rank,
    /// with [`Event::EvalProgress`] about twice a second and the controls agreed between
    /// batches.
    fn run_evaluation(&self, epoch: usize, started: Instant) -> Result<Evaluated, Failure> {
        let (cfg, replicas) = (self.cfg, self.replicas);
        let set_len = self.data.test.len();
        let lost = std::cell::Cell::new(None);
        let mut progress = self.evaluation_progress(epoch, started, &lost);
        // Every rank evaluates one network (its BatchNorm statistics are the checkpoint's).
        self.settle_bn_stats()?;
        let order = replicas.shard((0..set_len).collect());
        let opts = LoaderOptions {
            batch_size: cfg.effective_eval_batch_size(),
            workers: cfg.workers,
            ..eval_loader_options(&self.net)
        };
        let (net, test, norm) = (&self.net, &self.data.test, &self.data.norm);
        let samples = catch_unwind(AssertUnwindSafe(|| {
            evaluate_samples(
                net,
                test,
                order,
                norm,
                &opts,
                cfg.on_bad_image,
                &mut progress,
            )
        }))
        .map_err(|panic| {
            let context = format!("evaluating epoch {epoch}");
            panic_failure(panic.as_ref(), &context, cfg, self.device)
        })?
        .kind(FailureKind::Data)?;
        if let Some(failure) = lost.take() {
            return Err(failure);
        }
        let Some(s) = samples else {
            return Ok(Evaluated::Stopped);
        };
        let acc = replicas
            .gather_evaluation(s.acc, &s.indices, set_len, self.net.num_classes as usize)
            .kind(FailureKind::LostRank)?;
        Ok(Evaluated::Done(self.spec.report(&acc), s.skipped))
    }

    /// The progress callback of an evaluation: [`Event::EvalProgress`] about twice a second
    /// (images over every rank), then the controls agreed by every rank; a lost rank is kept
    /// in `lost` and stops the evaluation.
    fn evaluation_progress<'s>(
        &'s self,
        epoch: usize,
        started: Instant,
        lost: &'s std::cell::Cell<Option<Failure>>,
    ) -> impl FnMut(usize, usize) -> Flow + 's {
        let (stage, set_len) = (self.recipe.stage(), self.data.test.len());
        let world = self.replicas.world_size();
        let mut last_sent: Option<Instant> = None;
        move |done: usize, total: usize| {
            let due = last_sent.is_none_or(|t| t.elapsed().as_secs_f64() >= 0.5);
            if due || done == total {
                last_sent = Some(Instant::now());
                let images_done = match done == total {
                    true => set_len,
                    false => (done * world).min(set_len),
                };
                self.publish(Event::EvalProgress(EvalProgress {
                    stage,
                    epoch,
                    images_done,
                    images_total: set_len,
                    images_per_sec: images_done as f64 / started.elapsed().as_secs_f64().max(1e-9),
                }));
            }
            match self.agree(false) {
                Ok(agreed) => agreed.flow,
                Err(failure) => {
                    lost.set(Some(failure));
                    Flow::Stop
                }
            }
        }
    }

    /// Ends an epoch: best figures, the metrics line and the epoch's events first, then the
    /// checkpoints (so that a failed write loses no figures).
    fn end_epoch(
        &mut self,
        epoch: usize,
        t: EpochTraining,
        report: EvalReport,
        eval_seconds: f64,
    ) -> Result<(), Halt> {
        let is_best = report.top1 > self.best.map_or(0.0, |b| b.top1);
        if is_best {
            self.best = Some(BestFigures {
                top1: report.top1,
                ece: report.ece,
            });
        }
        let (best_top1, best_ece) = self.best_or_none();
        let train_seconds = t.train_seconds;
        let seen = t.sums.seen.max(1.0);
        let epoch_report = EpochReport {
            stage: self.recipe.stage(),
            epoch,
            num_epochs: self.cfg.num_epochs,
            lr: t.lrs,
            train_loss: t.sums.loss_sum / seen,
            train_top1: 100.0 * t.sums.correct / seen,
            eval: report,
            best_top1,
            best_ece,
            is_best,
            train_seconds,
            eval_seconds,
            images_per_sec: (t.sums.seen - t.seen_before) / train_seconds.max(1e-9),
        };
        self.run
            .append_metrics(&epoch_report)
            .kind(FailureKind::Io)?;
        self.emit(Event::Epoch(Box::new(epoch_report)))?;
        let next = self.position(epoch + 1, 0, EpochSums::default());
        self.save_checkpoint(false, &next)?;
        if is_best {
            self.save_checkpoint(true, &next)?;
        }
        Ok(())
    }

    /// Writes `ckps/current.safetensors` (or `model_best` with `best`) and publishes
    /// [`Event::Checkpoint`]: the one place a checkpoint is written.
    fn save_checkpoint(&mut self, best: bool, at: &RunPosition) -> Result<(), Failure> {
        let path = match best {
            true => self.run.best_checkpoint(),
            false => self.run.current_checkpoint(),
        };
        if !best {
            self.last_checkpoint = Instant::now();
        }
        if !self.run.writes() {
            return Ok(());
        }
        let mut state = self.sgd.state();
        if let Some(s) = &self.scaler {
            state.extend(s.state());
        }
        state.extend(
            self.recipe
                .state()
                .into_iter()
                .map(|(k, t)| (format!("{}{k}", recipe::RECIPE_STATE), t)),
        );
        checkpoint::save(&path, &self.net, &state, at).kind(FailureKind::Io)?;
        self.emit(Event::Checkpoint { path, best })
    }

    /// The stop exit: saves the run where it stopped, says how to resume, ends the stage.
    fn stop(mut self, at: RunPosition) -> Result<StageOutcome, Failure> {
        let saved = self.save_settled(&at).and_then(|()| {
            let during = match at.batch
                >= self
                    .recipe
                    .stream()
                    .batches_per_epoch(self.data.train.len())
            {
                true => format!("before the evaluation of epoch {}", at.epoch),
                false => format!("at epoch {} batch {}", at.epoch, at.batch),
            };
            let path = self.run.current_checkpoint();
            let line = format!(
                "=> stopped {during}; resume with: resume {}",
                path.display()
            );
            self.emit(Event::Log(line))
        });
        match saved {
            Ok(()) => self.finish(true),
            Err(failure) => Err(self.fail(failure, None)),
        }
    }

    /// The failure exit: saves the run at `save_at` when set, logs the failure in one line and
    /// returns it with the checkpoint a resume continues from.
    fn fail(&mut self, mut failure: Failure, save_at: Option<RunPosition>) -> Failure {
        if let Some(at) = save_at {
            if let Err(e) = self.save_checkpoint(false, &at) {
                failure.message =
                    format!("{} (and the run could not be saved: {e})", failure.message);
            }
        }
        let current = self.run.current_checkpoint();
        failure.resume_from = current.is_file().then_some(current);
        for line in Event::Failed(failure.clone()).log_lines() {
            let _ = self.run.log(&line);
        }
        failure
    }

    /// Ends the stage: peak memory, [`Event::StageFinished`].
    fn finish(mut self, stopped: bool) -> Result<StageOutcome, Failure> {
        let peak = super::peak_memory_bytes() as f64 / 1e6;
        let line = format!("=> peak resident memory of the process: {peak:.1} MB");
        if let Err(f) = self.emit(Event::Log(line)) {
            return Err(self.fail(f, None));
        }
        // Rank 0's last checkpoint is written before any rank looks for it (stage 2 reads it).
        if let Err(e) = self.replicas.barrier("ending the stage") {
            let failure = Failure::new(FailureKind::LostRank, format!("{e:#}"));
            return Err(self.fail(failure, None));
        }
        let best_path = self.run.best_checkpoint();
        let best_checkpoint = best_path.is_file().then_some(best_path);
        self.publish(Event::StageFinished(StageFinished {
            stage: self.recipe.stage(),
            run_dir: self.run.root.clone(),
            best: self.best,
            best_checkpoint: best_checkpoint.clone(),
            stopped,
        }));
        Ok(StageOutcome {
            run_dir: self.run.root.clone(),
            best_checkpoint,
            stopped,
            best: self.best,
        })
    }

    /// Writes the event's log lines to the run's text log, then publishes it.
    fn emit(&mut self, event: Event) -> Result<(), Failure> {
        for line in event.log_lines() {
            self.run.log(&line).kind(FailureKind::Io)?;
        }
        self.publish(event);
        Ok(())
    }

    /// Sends an event to the front end: rank 0 speaks for every rank.
    fn publish(&self, event: Event) {
        if self.replicas.is_primary() {
            self.link.emit(event);
        }
    }

    /// The position a checkpoint records: `batch` is the next batch to train.
    fn position(&self, epoch: usize, batch: usize, sums: EpochSums) -> RunPosition {
        let (best_top1, best_ece) = self.best_or_none();
        RunPosition {
            stage: self.recipe.stage(),
            epoch,
            batch,
            best_top1,
            best_ece,
            seed: self.cfg.seed,
            batch_size: self.cfg.batch_size,
            epoch_loss_sum: sums.loss_sum,
            epoch_correct: sums.correct,
            epoch_seen: sums.seen,
        }
    }

    /// Best top-1 and ECE as checkpoints and metrics lines record them: 0 % and 100 % before
    /// any evaluation (the reference's initial `best_acc1`).
    fn best_or_none(&self) -> (f64, f64) {
        self.best.map_or((0.0, 100.0), |b| (b.top1, b.ece))
    }

    fn kept_note(&self) -> String {
        let path = self.run.current_checkpoint();
        match path.is_file() {
            true => format!("the last good checkpoint {} is kept", path.display()),
            false => "no checkpoint had been written yet".to_owned(),
        }
    }

    fn loader_options(&self) -> LoaderOptions {
        LoaderOptions::training(
            // Each rank's share of the global batch (the configuration checks it divides).
            self.cfg.batch_size / self.replicas.world_size(),
            self.cfg.workers,
            self.device.is_cuda(),
        )
    }
}

fn sums_of(p: &RunPosition) -> EpochSums {
    EpochSums {
        loss_sum: p.epoch_loss_sum,
        correct: p.epoch_correct,
        seen: p.epoch_seen,
    }
}

fn fresh_position(cfg: &Config, recipe: &dyn StageRecipe) -> RunPosition {
    RunPosition {
        stage: recipe.stage(),
        epoch: 0,
        batch: 0,
        best_top1: 0.0,
        best_ece: 100.0,
        seed: cfg.seed,
        batch_size: cfg.batch_size,
        epoch_loss_sum: 0.0,
        epoch_correct: 0.0,
        epoch_seen: 0.0,
    }
}

/// Loads SGD's momentum buffers and, when both sides have one, the loss scaler's state. A run
/// resumed with `amp` switched off drops the scaler's entries; one switched on starts from the
/// initial scale.
fn restore_optimizer(
    ck: &Checkpoint,
    sgd: &mut Sgd,
    scaler: Option<&mut GradScaler>,
    recipe: &dyn StageRecipe,
) -> Result<(), Failure> {
    let (recipe_state, rest): (Vec<_>, Vec<_>) = ck
        .optimizer
        .iter()
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .partition(|(k, _)| k.starts_with(recipe::RECIPE_STATE));
    let (scaler_state, sgd_state): (Vec<_>, Vec<_>) = rest
        .into_iter()
        .partition(|(k, _)| k.starts_with(grad_scaler::STATE_PREFIX));
    let recipe_state: Vec<(String, Tensor)> = recipe_state
        .into_iter()
        .map(|(k, t)| (k[recipe::RECIPE_STATE.len()..].to_owned(), t))
        .collect();
    let bad = |e: String| {
        Failure::new(
            FailureKind::Checkpoint,
            format!("checkpoint {}: {e}", ck.path.display()),
        )
    };
    sgd.load_state(&sgd_state).map_err(bad)?;
    if let (Some(s), false) = (scaler, scaler_state.is_empty()) {
        s.load_state(&scaler_state).map_err(bad)?;
    }
    recipe.load_state(&recipe_state).map_err(bad)
}

/// Opens the run folder a resume continues, or creates a new one with its `config.yaml` and
/// training-subset record.
fn open_run_dir(
    cfg: &Config,
    saved_root: &Path,
    continue_in: Option<PathBuf>,
    data: &LongTailData,
) -> Result<RunDir, Failure> {
    if let Some(root) = continue_in {
        let named = Path::new(&cfg.run_dir);
        if !cfg.run_dir.is_empty() && !same_folder(named, &root) {
            return Err(Failure::new(
                FailureKind::Config,
                format!(
                    "run_dir {} and resume {} (the latest checkpoint of the run in {}) name two \
                     runs: leave one of them empty",
                    cfg.run_dir,
                    cfg.resume,
                    root.display()
                ),
            ));
        }
        return RunDir::open(root, cfg).kind(FailureKind::Io);
    }
    let run = match cfg.run_dir.is_empty() {
        true => RunDir::create(saved_root, cfg),
        false => RunDir::create_at(Path::new(&cfg.run_dir), cfg),
    }
    .kind(FailureKind::Io)?;
    run.write_config(cfg).kind(FailureKind::Io)?;
    let record = SubsetRecord {
        class_counts: data.class_counts.clone(),
        num_images: data.train.len(),
        sha256: data::subset_sha256(&data.kept_indices),
    };
    run.write_subset(&record, &data.kept_indices)
        .kind(FailureKind::Io)?;
    Ok(run)
}

/// Whether two paths name one folder (the same after resolving links and `..`).
fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Records a restart of a continued run in its folder ([`RunDir::record_restart`]; Slurm's
/// `SLURM_RESTART_COUNT` when the run is a Slurm job's) and returns its log line.
fn restart_line(run: &RunDir) -> Result<String, Failure> {
    let slurm = std::env::var("SLURM_RESTART_COUNT")
        .ok()
        .and_then(|c| c.trim().parse::<u64>().ok())
        .map(|c| (c, std::env::var("SLURM_JOB_ID").unwrap_or_default()));
    let r = run.record_restart(slurm).kind(FailureKind::Io)?;
    Ok(match &r.slurm_job {
        Some(job) => format!(
            "=> restart {} of this run (Slurm job {job}, SLURM_RESTART_COUNT; start {} in this \
             folder)",
            r.count, r.starts
        ),
        None => format!("=> restart {} of this run in this folder", r.count),
    })
}

/// The run folder on this rank: rank 0 opens or creates it ([`open_run_dir`]) and tells the
/// other ranks its path; they get a [`RunDir::replica`] of it, which writes nothing.
fn rank_run_dir(
    replicas: &Replicas,
    stage: crate::config::Stage,
    cfg: &Config,
    saved_root: &Path,
    continue_in: Option<PathBuf>,
    data: &LongTailData,
) -> Result<RunDir, Failure> {
    if !replicas.is_primary() {
        let root = replicas
            .share_text(&format!("run_dir/{stage}"), "")
            .kind(FailureKind::LostRank)?;
        return Ok(RunDir::replica(PathBuf::from(root), cfg));
    }
    let run = open_run_dir(cfg, saved_root, continue_in, data)?;
    replicas
        .share_text(&format!("run_dir/{stage}"), &run.root.display().to_string())
        .kind(FailureKind::LostRank)?;
    Ok(run)
}

/// A resume with settings other than those in the run's `config.yaml` (which keeps how the run
/// started), as a warning; `resume` itself does not count.
fn changed_settings(cfg: &Config, run_root: &Path) -> Option<Event> {
    let first = Config::from_file(&run_root.join("config.yaml")).ok()?;
    let changes: Vec<(String, String, String)> = cfg
        .changed_from(&first.config)
        .into_iter()
        .filter(|(k, _, _)| k != "resume")
        .collect();
    (!changes.is_empty()).then_some(Event::Warning(Warning::SettingsChanged { changes }))
}

/// The log line that says how a step computes, when it differs from plain fp32.
/// `averaged_bn`: the ranks' BatchNorm statistics are averaged ([`Trainer::averages_bn_stats`]).
fn computation_line(cfg: &Config, world_size: usize, averaged_bn: bool) -> Option<String> {
    let mut parts = Vec::new();
    if world_size > 1 {
        let bn = match averaged_bn {
            true => ", BatchNorm statistics averaged over the ranks before each evaluation",
            false => "",
        };
        parts.push(format!(
            "data parallel over {world_size} ranks ({} images each of every batch of {}, \
             gradients averaged{bn})",
            cfg.batch_size / world_size,
            cfg.batch_size
        ));
    }
    if cfg.amp {
        parts.push("mixed precision (fp16 autocast, dynamic loss scaling)".to_owned());
    }
    if cfg.channels_last {
        parts.push("channels-last".to_owned());
    }
    if cfg.accum_steps > 1 {
        parts.push(format!(
            "gradient accumulation over {} micro-batches of each batch of {}",
            cfg.accum_steps, cfg.batch_size
        ));
    }
    (!parts.is_empty()).then(|| format!("=> {}", parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::recipe::mixup::MixupCrossEntropy;
    use crate::engine::step::{train_step, StepOptions, TrainBatch};
    use crate::model::{Network, Part};
    use tch::{Device, Tensor};

    /// Under amp on the CPU (the scaler works on any device): a batch whose every loss is NaN
    /// is skipped 49 times in a row, each halving the loss scale and leaving the weights
    /// untouched, and the 50th stops the run. A finite loss in between starts the count anew.
    #[test]
    fn amp_stops_after_fifty_nonfinite_losses_in_a_row() {
        tch::manual_seed(5);
        let net = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
        let mut params = net.part_parameters(Part::Backbone);
        params.extend(net.part_parameters(Part::Classifier));
        let mut sgd = Sgd::new(vec![params], 0.1, 0.9, 0.0);
        let mut scaler = GradScaler::new(Device::Cpu);
        let before: Vec<(String, Tensor)> = net
            .vs
            .variables()
            .into_iter()
            .map(|(k, t)| (k, t.copy()))
            .collect();
        let x = Tensor::full([4, 1, 8, 8], f64::NAN, (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3]);
        let opts = StepOptions {
            backbone_train: false,
            accum_steps: 1,
            autocast: false,
        };
        let objective = MixupCrossEntropy { alpha: None };
        let mut rule = NonFiniteRule::new(true);
        let mut verdicts = Vec::new();
        for seed in 0..MAX_NONFINITE_STEPS as u64 {
            let b = TrainBatch {
                images: &x,
                labels: &y,
                mixup_seed: seed,
            };
            let out = train_step(&net, &mut sgd, Some(&mut scaler), &objective, b, opts);
            assert!(!out.applied);
            verdicts.push(rule.observe(out.loss));
        }
        let expected: Vec<NonFinite> = (1..MAX_NONFINITE_STEPS)
            .map(NonFinite::Skip)
            .chain([NonFinite::Stop(MAX_NONFINITE_STEPS)])
            .collect();
        assert_eq!(verdicts, expected);
        assert_eq!(
            scaler.scale(),
            65536.0 * 0.5f64.powi(MAX_NONFINITE_STEPS as i32)
        );
        let after = net.vs.variables();
        for (k, b) in &before {
            assert!(after[k].equal(b), "a skipped step changed {k}");
        }
        let mut rule = NonFiniteRule::new(true);
        for _ in 0..MAX_NONFINITE_STEPS - 1 {
            rule.observe(f64::INFINITY);
        }
        assert_eq!(rule.observe(1.0), NonFinite::Finite);
        assert_eq!(rule.observe(f64::NAN), NonFinite::Skip(1));
        // In fp32 the first non-finite loss stops the run.
        assert_eq!(
            NonFiniteRule::new(false).observe(f64::NAN),
            NonFinite::Stop(1)
        );
    }

    /// A libtorch allocation failure inside a step becomes an out-of-memory failure that says
    /// what to do, without libtorch's C++ stack.
    #[test]
    fn a_failed_allocation_is_an_out_of_memory_failure() {
        let panic = std::panic::catch_unwind(|| {
            Tensor::zeros([1 << 20, 1 << 20, 1 << 8], (Kind::Float, Device::Cpu))
        })
        .unwrap_err();
        let cfg = Config {
            batch_size: 256,
            ..Config::default()
        };
        let f = panic_failure(
            panic.as_ref(),
            "training epoch 0 batch 3",
            &cfg,
            Device::Cpu,
        );
        assert_eq!(f.kind, FailureKind::OutOfMemory, "{}", f.message);
        assert!(
            f.message.starts_with("out of memory at batch size 256 on cpu while training epoch 0 batch 3: lower batch_size or set accum_steps"),
            "{}",
            f.message
        );
        assert!(
            !f.message.contains("Exception raised from"),
            "{}",
            f.message
        );
        assert!(!f.message.contains('\n'), "{}", f.message);
    }
}
