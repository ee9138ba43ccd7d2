//! One stage of MiSLAS, start (or resume) to finish.
//!
//! * Stage 1 (reference `train_stage1.py`): backbone + classifier with mixup cross-entropy on
//!   instance-balanced batches, SGD over one group, warm-up + step or cosine schedule.
//! * Stage 2 (reference `train_stage2.py`): backbone from the stage-1 checkpoint with no gradient
//!   (in train mode when `shift_bn`, so BatchNorm running statistics follow the class-balanced
//!   stream — shift learning), classifier continued from stage 1 and LWS from ones, label-aware
//!   smoothing on a class-aware sampler, SGD over two groups (classifier at lr·`lr_factor`, LWS
//!   at lr), cosine schedule; an epoch is ceil(N/B)+1 batches as in the reference.
use super::evaluate::{evaluate, report_lines, EvalSpec};
use super::{device_info, resident_memory_bytes, stream_seed, Flow, Link};
use crate::checkpoint::{self, Checkpoint, Origin, RunPosition};
use crate::config::{BadImagePolicy, Config, DatasetName, Stage};
use crate::data::loader::{epoch_loader, LoaderOptions};
use crate::data::{self, sampler};
use crate::events::{BatchStats, EpochReport, Event, StageFinished, StageStarted};
use crate::method::grad_scaler::{self, GradScaler};
use crate::method::las::LabelAwareSmoothing;
use crate::method::mixup::{mixup_criterion, mixup_data, MixedBatch};
use crate::method::schedule;
use crate::method::sgd::Sgd;
use crate::model::{Network, Part};
use crate::run_dir::{RunDir, SubsetRecord};
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Tensor};

/// Stream tag of the mixup RNG (see [`stream_seed`]).
const MIXUP_STREAM: u64 = 1;

/// Under `amp`, non-finite losses in a row after which the run stops (the loss scale has then
/// halved this many times, from 2^16 to below 10^-10: the forward pass itself overflows).
const MAX_NONFINITE_STEPS: usize = 50;

/// The loss of a stage.
#[derive(Debug)]
pub enum Method {
    /// Stage 1: mixup cross-entropy; `alpha` `None` (or ≤ 0) trains with plain cross-entropy.
    Mixup {
        /// Beta(α, α) parameter.
        alpha: Option<f64>,
    },
    /// Stage 2: label-aware smoothing on LWS-scaled logits of frozen features, on mixup batches
    /// when `alpha` is set (the reference's stage 2 mixes when `mixup: true`).
    Las {
        /// The loss.
        las: LabelAwareSmoothing,
        /// Beta(α, α) parameter of mixup; `None` for no mixing (the release's presets).
        alpha: Option<f64>,
    },
}

/// Figures of one training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutput {
    /// Batch loss, nats (non-finite: the step was not applied).
    pub loss: f64,
    /// Correct top-1 predictions against the unmixed labels.
    pub hits: i64,
    /// The SGD step was taken: false after a non-finite loss, or when the loss scaler found an
    /// inf or a NaN in the gradients (mixed precision; the scale then halves).
    pub applied: bool,
}

/// How a training step computes, beyond its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOptions {
    /// BatchNorm of the backbone (or Places-LT's block) in train mode: stage 1, and stage 2 with
    /// shift learning.
    pub backbone_train: bool,
    /// Micro-batches per batch (`accum_steps`); see [`micro_batches`].
    pub accum_steps: usize,
    /// Forward pass and loss under CUDA fp16 autocast (`amp`; a no-op without CUDA).
    pub autocast: bool,
}

impl StepOptions {
    /// The options of a stage of `cfg`; `backbone_train` as in [`StepOptions::backbone_train`].
    pub fn of(cfg: &Config, backbone_train: bool) -> Self {
        StepOptions {
            backbone_train,
            accum_steps: cfg.accum_steps.max(1),
            autocast: cfg.amp,
        }
    }
}

/// The micro-batches of a batch of `batch` images split `accum_steps` ways, as
/// `(start, len)`: sizes differ by at most one, larger first (`numpy.array_split`). With
/// `bn_train` no micro-batch holds a single image (BatchNorm in train mode needs two), so
/// fewer micro-batches are made when `batch < 2·accum_steps`.
pub fn micro_batches(batch: usize, accum_steps: usize, bn_train: bool) -> Vec<(i64, i64)> {
    let mut k = accum_steps.clamp(1, batch.max(1));
    if bn_train {
        k = k.min(batch / 2).max(1);
    }
    let (base, extra) = (batch / k, batch % k);
    let mut start = 0;
    (0..k)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let chunk = (start as i64, len as i64);
            start += len;
            chunk
        })
        .collect()
}

/// Logits `[b, K]` and the method's loss (a scalar) of one (micro-)batch.
fn forward_loss(
    net: &Network,
    method: &Method,
    batch: &MixedBatch,
    backbone_train: bool,
) -> (Tensor, Tensor) {
    match method {
        Method::Mixup { .. } => {
            let logits = net.classify(&net.features(&batch.images, backbone_train));
            let loss = mixup_criterion(&logits, batch);
            (logits, loss)
        }
        Method::Las { las, .. } => {
            let feats = tch::no_grad(|| net.features(&batch.images, backbone_train));
            let logits = net.scale(&net.classify(&feats));
            let loss = batch.loss_with(|target| las.loss(&logits, target));
            (logits, loss)
        }
    }
}

/// A training batch on the network's device.
#[derive(Debug, Clone, Copy)]
pub struct TrainBatch<'a> {
    /// Images `[B, C, H, W]` f32.
    pub images: &'a Tensor,
    /// Class indices `[B]` i64.
    pub labels: &'a Tensor,
    /// Seed of the batch's mixup draw (λ and the pairing).
    pub mixup_seed: u64,
}

/// One SGD step on a batch already on the network's device. The batch is mixed (when the
/// method has an α) with an RNG seeded by `batch.mixup_seed`.
/// Stage 1 trains backbone and classifier; stage 2 computes features without gradient
/// (BatchNorm in train mode when `opts.backbone_train`, i.e. shift learning) and trains
/// classifier and LWS. A non-finite loss skips the update (and, with `scaler`, counts as an
/// overflow: the scale backs off).
///
/// With `opts.accum_steps` > 1 the mixed batch is cut into [`micro_batches`], each forward and
/// backward pass weighted by its share of the batch (len/B), so the summed gradient is the
/// batch-mean loss's; one SGD step follows. With `scaler` the losses are scaled before
/// `backward` and the step goes through [`GradScaler::step`]; with `opts.autocast` each
/// forward pass and loss run under CUDA fp16 autocast (`torch.autocast("cuda")`).
pub fn train_step(
    net: &Network,
    sgd: &mut Sgd,
    scaler: Option<&mut GradScaler>,
    method: &Method,
    batch: TrainBatch<'_>,
    opts: StepOptions,
) -> StepOutput {
    let (x, y) = (batch.images, batch.labels);
    let alpha = match method {
        Method::Mixup { alpha } | Method::Las { alpha, .. } => *alpha,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(batch.mixup_seed);
    let mixed = mixup_data(x, y, alpha, &mut rng);
    let b = x.size()[0];
    let chunks = micro_batches(b as usize, opts.accum_steps, opts.backbone_train);
    sgd.zero_grad();
    let mut loss_t = Tensor::zeros([], (Kind::Float, x.device()));
    let mut hits_t = Tensor::zeros([], (Kind::Int64, x.device()));
    for &(start, len) in &chunks {
        let part = mixed.narrow(start, len);
        let forward = || forward_loss(net, method, &part, opts.backbone_train);
        let (logits, loss) = if opts.autocast {
            tch::autocast(true, forward)
        } else {
            forward()
        };
        let loss = if chunks.len() == 1 {
            loss
        } else {
            loss * (len as f64 / b as f64)
        };
        match &scaler {
            Some(s) => s.scale_loss(&loss).backward(),
            None => loss.backward(),
        }
        tch::no_grad(|| {
            loss_t += loss.detach().to_kind(Kind::Float);
            hits_t += logits
                .argmax(-1, false)
                .eq_tensor(&y.narrow(0, start, len))
                .sum(Kind::Int64);
        });
    }
    let loss_v = loss_t.double_value(&[]);
    let applied = if !loss_v.is_finite() {
        if let Some(s) = scaler {
            s.record_overflow();
        }
        false
    } else if let Some(s) = scaler {
        s.step(sgd)
    } else {
        sgd.step();
        true
    };
    StepOutput {
        loss: loss_v,
        hits: hits_t.int64_value(&[]),
        applied,
    }
}

/// How a stage ended.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    /// Its run folder.
    pub run_dir: PathBuf,
    /// `model_best.safetensors`, when an epoch finished.
    pub best_checkpoint: Option<PathBuf>,
    /// Stopped by a control before the last epoch.
    pub stopped: bool,
    /// Best top-1, %.
    pub best_top1: f64,
    /// ECE at the best top-1, %.
    pub best_ece: f64,
}

/// Checks a configuration before anything is loaded.
///
/// # Errors
/// Every failed validation rule, with the configuration's name.
pub fn check_config(cfg: &Config) -> Result<()> {
    let issues = cfg.validate();
    if !issues.is_empty() {
        let lines: Vec<String> = issues
            .iter()
            .map(|i| format!("{}: {}", i.key, i.message))
            .collect();
        bail!(
            "configuration '{}' is not usable: {}",
            cfg.name,
            lines.join("; ")
        );
    }
    Ok(())
}

/// The device a stage of `cfg` trains on, checked against what it asks of it.
///
/// # Errors
/// The device is not there (see [`super::resolve_device`]), or `amp` is set and the device is
/// not a CUDA device.
pub fn stage_device(cfg: &Config) -> Result<tch::Device> {
    let device = super::resolve_device(&cfg.device)?;
    if cfg.amp && !device.is_cuda() {
        bail!(
            "amp: mixed precision needs a CUDA device, and device '{}' of '{}' is the CPU here; \
             set amp false to train in fp32",
            cfg.device,
            cfg.name
        );
    }
    Ok(device)
}

/// Runs one stage of `cfg` (its `mode`), writing its run folder under `saved_root`.
///
/// With `resume` naming a mislas checkpoint of the same stage, the run continues in that
/// checkpoint's run folder at the batch where it stopped. Stage 2 needs `resume` to name a
/// stage-1 checkpoint (mislas or the reference's `.pth.tar`).
///
/// # Errors
/// An unusable configuration, missing or damaged data, an unusable checkpoint, a non-finite
/// loss (the last good checkpoint is kept), or a failed write; each message names the file and
/// what was expected.
pub fn run_stage(cfg: &Config, saved_root: &Path, link: &mut Link) -> Result<StageOutcome> {
    check_config(cfg)?;
    let stage = cfg.stage();
    let device = stage_device(cfg)?;
    let resume = if cfg.resume.is_empty() {
        None
    } else {
        cfg.check_resume().map_err(anyhow::Error::msg)?;
        Some(checkpoint::load(Path::new(&cfg.resume))?)
    };
    // A run continues only from its own latest checkpoint, `<run>/<model_dir>/current.*`: any
    // other file of the same stage (a `model_best`, a copy) starts a new run from its weights,
    // so that no run folder is rewound and overwritten.
    let continue_in = resume.as_ref().and_then(|c| {
        let pos = c.position.filter(|p| p.stage == stage)?;
        let root = c.path.parent()?.parent()?;
        let own = c.path.file_name()? == crate::run_dir::CURRENT
            && root.join(&cfg.model_dir) == c.path.parent()?
            && root.join("config.yaml").is_file();
        own.then(|| (root.to_path_buf(), pos))
    });
    let continuing = continue_in.as_ref().map(|(_, p)| *p);
    if let (Some(p), Some(ck)) = (continuing, &resume) {
        if (p.seed, p.batch_size) != (cfg.seed, cfg.batch_size) {
            bail!(
                "{}: this run was trained with seed {} and batch_size {}; resuming it with seed {} \
                 and batch_size {} would not continue it. Set them back, or start a new run from \
                 its weights with resume …/model_best.safetensors",
                ck.path.display(),
                p.seed,
                p.batch_size,
                cfg.seed,
                cfg.batch_size
            );
        }
    }
    if stage == Stage::Stage2 && resume.is_none() {
        bail!(
            "stage 2 needs a stage-1 checkpoint: set `resume` to a stage-1 run's \
             ckps/model_best.safetensors (or a reference .pth.tar), or run `mislas pipeline`"
        );
    }

    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(!cfg.deterministic);
    }
    tch::manual_seed(cfg.seed as i64);
    let data = data::load(cfg)?;
    let train_n = data.train.len();
    let in_channels = data.train.channels() as i64;
    let mut net = network_for(cfg, in_channels, device)?;
    if net.has_block() && stage == Stage::Stage1 && resume.is_none() {
        net.load_pretrained_backbone(Path::new(&cfg.pretrained_weights))?;
    }

    // Weights, optimizer state and loss first: a checkpoint that does not fit creates no run
    // folder.
    let mut loaded = None;
    if let Some(ck) = &resume {
        let mut parts = net.weight_parts();
        if continuing.is_some() {
            parts.push(Part::Lws);
        }
        net.load_parts(&ck.tensors, &parts)
            .with_context(|| format!("checkpoint {}", ck.path.display()))?;
        let what = match (continuing, ck.origin) {
            (Some(p), _) => format!("resuming at epoch {} batch {}", p.epoch, p.batch),
            (None, Origin::Reference) => "reference checkpoint".to_owned(),
            (None, Origin::Mislas) => "weights of a mislas checkpoint".to_owned(),
        };
        loaded = Some(format!(
            "=> loaded checkpoint '{}' ({what})",
            ck.path.display()
        ));
    }
    if stage == Stage::Stage2 {
        net.freeze_backbone();
    }
    if cfg.channels_last {
        net.to_channels_last();
    }

    let groups: Vec<Vec<(String, Tensor)>> = match stage {
        Stage::Stage1 => vec![net
            .stage1_parts()
            .into_iter()
            .flat_map(|part| net.part_parameters(part))
            .collect()],
        Stage::Stage2 => vec![
            net.part_parameters(Part::Classifier),
            net.part_parameters(Part::Lws),
        ],
    };
    let mut sgd = Sgd::new(groups, cfg.lr, cfg.momentum, cfg.weight_decay);
    let mut scaler = cfg.amp.then(|| GradScaler::new(device));
    if let (Some(ck), Some(_)) = (&resume, continuing) {
        // The loss scaler's entries, if any, continue a mixed-precision run; a run resumed
        // with amp switched off drops them, one switched on starts from the initial scale.
        let (scaler_state, sgd_state): (Vec<_>, Vec<_>) = ck
            .optimizer
            .iter()
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .partition(|(k, _)| k.starts_with(grad_scaler::STATE_PREFIX));
        sgd.load_state(&sgd_state)
            .map_err(|e| anyhow::anyhow!("checkpoint {}: {e}", ck.path.display()))?;
        if let (Some(s), false) = (&mut scaler, scaler_state.is_empty()) {
            s.load_state(&scaler_state)
                .map_err(|e| anyhow::anyhow!("checkpoint {}: {e}", ck.path.display()))?;
        }
    }
    let optimizer_state = |sgd: &Sgd, scaler: &Option<GradScaler>| {
        let mut state = sgd.state();
        if let Some(s) = scaler {
            state.extend(s.state());
        }
        state
    };
    let method = match stage {
        Stage::Stage2 => Method::Las {
            las: LabelAwareSmoothing::new(
                &data.class_counts,
                cfg.smooth_head.unwrap_or(0.0),
                cfg.smooth_tail.unwrap_or(0.0),
                cfg.las_shape,
                cfg.las_power,
                device,
            )
            .map_err(|e| anyhow::anyhow!("label-aware smoothing: {e}"))?,
            alpha: cfg.mixup_alpha(),
        },
        Stage::Stage1 => Method::Mixup {
            alpha: cfg.mixup_alpha(),
        },
    };

    let mut run = match continue_in {
        Some((root, _)) => RunDir::open(root, cfg)?,
        None => RunDir::create(saved_root, cfg)?,
    };
    if continuing.is_none() {
        run.write_config(cfg)?;
        let record = SubsetRecord {
            class_counts: data.class_counts.clone(),
            num_images: train_n,
            sha256: data::subset_sha256(&data.kept_indices),
        };
        run.write_subset(&record, &data.kept_indices)?;
    }
    if let Some(line) = loaded {
        log(link, &mut run, &line)?;
    }
    if continuing.is_some() {
        // The run's config.yaml records how it started; a resume with other settings says so
        // in the log (config.yaml is left as it was).
        if let Ok(first) = Config::from_file(&run.root.join("config.yaml")) {
            let changed: Vec<String> = cfg
                .changed_from(&first.config)
                .into_iter()
                .filter(|(k, _, _)| k != "resume")
                .map(|(k, was, now)| format!("{k} {was} → {now}"))
                .collect();
            if !changed.is_empty() {
                log(
                    link,
                    &mut run,
                    &format!("=> resumed with changed settings: {}", changed.join(", ")),
                )?;
            }
        }
    }

    let bs = cfg.batch_size;
    let batches_per_epoch = match stage {
        Stage::Stage1 => train_n.div_ceil(bs),
        Stage::Stage2 => sampler::stage2_batches_per_epoch(train_n, bs),
    };
    let images_per_epoch = match stage {
        Stage::Stage1 => train_n,
        Stage::Stage2 => batches_per_epoch * bs,
    };
    let spec = EvalSpec {
        train_class_counts: data.class_counts.clone(),
        head: cfg.head_class_idx,
        med: cfg.med_class_idx,
        tail: cfg.tail_class_idx,
    };
    // The position a checkpoint records: `batch` is the next batch to train.
    let position =
        |epoch: usize, batch: usize, sums: (f64, f64, f64), best: (f64, f64)| RunPosition {
            stage,
            epoch,
            batch,
            best_top1: best.0,
            best_ece: best.1,
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            epoch_loss_sum: sums.0,
            epoch_correct: sums.1,
            epoch_seen: sums.2,
        };
    let start = continuing.unwrap_or_else(|| position(0, 0, (0.0, 0.0, 0.0), (0.0, 100.0)));
    let mut best_top1 = start.best_top1;
    let mut best_ece = start.best_ece;
    let info = device_info(device);
    log(
        link,
        &mut run,
        &format!(
            "=> {stage} of '{}' on {} ({}): {} training images {:?}, {} test images",
            cfg.name,
            info.name,
            info.id,
            train_n,
            data.class_counts,
            data.test.len()
        ),
    )?;
    let mut computation = Vec::new();
    if cfg.amp {
        computation.push("mixed precision (fp16 autocast, dynamic loss scaling)".to_owned());
    }
    if cfg.channels_last {
        computation.push("channels-last".to_owned());
    }
    if cfg.accum_steps > 1 {
        computation.push(format!(
            "gradient accumulation over {} micro-batches of each batch of {}",
            cfg.accum_steps, cfg.batch_size
        ));
    }
    if !computation.is_empty() {
        log(link, &mut run, &format!("=> {}", computation.join(", ")))?;
    }
    link.emit(Event::StageStarted(StageStarted {
        stage,
        run_dir: run.root.clone(),
        name: cfg.name.clone(),
        dataset: cfg.dataset.display_name().to_owned(),
        device: info,
        num_epochs: cfg.num_epochs,
        start_epoch: start.epoch,
        batches_per_epoch,
        images_per_epoch,
        class_counts: data.class_counts.clone(),
        head_class_idx: cfg.head_class_idx,
        med_class_idx: cfg.med_class_idx,
        tail_class_idx: cfg.tail_class_idx,
    }));

    let loader_opts = LoaderOptions {
        batch_size: bs,
        workers: cfg.workers,
        prefetch: 4,
        augment: true,
        pin_memory: device.is_cuda(),
        first_batch: 0,
    };
    let best_path = run.best_checkpoint();
    let current_path = run.current_checkpoint();
    let kept_note = |path: &Path| {
        if path.is_file() {
            format!("the last good checkpoint {} is kept", path.display())
        } else {
            "no checkpoint had been written yet".to_owned()
        }
    };
    let mut have_best = best_path.is_file();

    for epoch in start.epoch..cfg.num_epochs {
        let lrs = match stage {
            Stage::Stage1 => vec![schedule::stage1_lr(
                cfg.lr,
                epoch,
                cfg.num_epochs,
                cfg.cos,
                cfg.effective_warmup(),
                &cfg.lr_milestones,
            )],
            Stage::Stage2 => {
                let lr = schedule::stage2_lr(cfg.lr, epoch, cfg.num_epochs);
                vec![lr * cfg.lr_factor.unwrap_or(1.0), lr]
            }
        };
        for (g, lr) in lrs.iter().enumerate() {
            sgd.set_lr(g, *lr);
        }
        link.emit(Event::EpochStarted {
            stage,
            epoch,
            lr: lrs.clone(),
        });

        let order = match stage {
            Stage::Stage1 => sampler::instance_balanced_order(train_n, cfg.seed, epoch),
            Stage::Stage2 => sampler::class_aware_order(
                data.train.labels(),
                cfg.num_classes,
                sampler::SAMPLES_PER_CLASS,
                batches_per_epoch * bs,
                cfg.seed,
                epoch,
            ),
        };
        let resuming_here = epoch == start.epoch && start.batch > 0;
        let first_batch = if resuming_here { start.batch } else { 0 };
        let (mut loss_sum, mut correct, mut seen) = if resuming_here {
            (start.epoch_loss_sum, start.epoch_correct, start.epoch_seen)
        } else {
            (0.0, 0.0, 0.0)
        };
        let loader = epoch_loader(
            data.train.clone(),
            order,
            &data.norm,
            &LoaderOptions {
                first_batch,
                ..loader_opts.clone()
            },
            cfg.seed,
            epoch,
        );

        // Backbone mode: stage 1 trains it; stage 2 runs it in train mode only for shift learning.
        let backbone_train = match stage {
            Stage::Stage1 => true,
            Stage::Stage2 => cfg.shift_bn,
        };
        let mut overflow_skips = 0usize;
        let mut nonfinite_run = 0usize;
        let epoch_start = Instant::now();
        let mut last = Instant::now();
        for batch in loader {
            let b = batch.index;
            if link.check() == Flow::Stop {
                let pos = position(epoch, b, (loss_sum, correct, seen), (best_top1, best_ece));
                checkpoint::save(&current_path, &net, &optimizer_state(&sgd, &scaler), &pos)?;
                link.emit(Event::Checkpoint {
                    path: current_path.clone(),
                    best: false,
                });
                log(
                    link,
                    &mut run,
                    &format!(
                        "=> stopped at epoch {epoch} batch {b}; resume with: resume {}",
                        current_path.display()
                    ),
                )?;
                return finish(
                    link,
                    stage,
                    &mut run,
                    true,
                    best_top1,
                    best_ece,
                    have_best.then(|| best_path.clone()),
                );
            }
            for bad in &batch.skipped {
                if cfg.on_bad_image == BadImagePolicy::Fail {
                    // The run so far is saved at this batch, so that nothing is lost once the
                    // file is fixed (or the policy changed).
                    let pos = position(epoch, b, (loss_sum, correct, seen), (best_top1, best_ece));
                    checkpoint::save(&current_path, &net, &optimizer_state(&sgd, &scaler), &pos)?;
                    let msg = format!(
                        "unusable image {bad} (epoch {epoch} batch {b}). The run is saved at this \
                         batch: fix or replace the file, or set on_bad_image: skip to leave such \
                         images out, then resume with: resume {}",
                        current_path.display()
                    );
                    let _ = run.log(&msg);
                    bail!(msg);
                }
                log(link, &mut run, &format!("=> unusable image {bad}: skipped"))?;
            }
            let n = batch.len;
            if n == 0 {
                continue;
            }
            if n == 1 && backbone_train {
                // BatchNorm in train mode over one image: where a feature map is 1×1 (small
                // inputs), the batch variance is over one value and libtorch sets the running
                // variance to NaN (PyTorch's Python layer raises "Expected more than 1 value per
                // channel when training" instead). A one-image step is skipped in every case.
                log(
                    link,
                    &mut run,
                    &format!(
                        "=> epoch {epoch} batch {b} holds one image: skipped (BatchNorm in \
                         train mode needs at least two)"
                    ),
                )?;
                continue;
            }
            let x = batch.images.to_device_(device, Kind::Float, true, false);
            let y = batch.labels.to_device_(device, Kind::Int64, true, false);
            let seed = stream_seed(cfg.seed, epoch, b, MIXUP_STREAM);
            let StepOutput {
                loss: loss_v,
                hits,
                applied,
            } = train_step(
                &net,
                &mut sgd,
                scaler.as_mut(),
                &method,
                TrainBatch {
                    images: &x,
                    labels: &y,
                    mixup_seed: seed,
                },
                StepOptions::of(cfg, backbone_train),
            );
            if !applied {
                overflow_skips += 1;
            }
            if loss_v.is_finite() {
                nonfinite_run = 0;
            } else {
                // With amp a non-finite loss is an fp16 overflow like any other: the step is
                // skipped and the loss scale halves, as with PyTorch's GradScaler; the run stops
                // when it persists. In fp32 it stops at once.
                nonfinite_run += 1;
                if scaler.is_none() || nonfinite_run >= MAX_NONFINITE_STEPS {
                    let in_a_row = if scaler.is_some() {
                        format!(" ({nonfinite_run} batches in a row under amp)")
                    } else {
                        String::new()
                    };
                    let msg = format!(
                        "non-finite training loss ({loss_v}) at epoch {epoch} batch {b}{in_a_row}: \
                         training stopped; {}. Lower lr or check the data",
                        kept_note(&current_path)
                    );
                    let _ = run.log(&msg);
                    bail!(msg);
                }
                continue;
            }
            loss_sum += loss_v * n as f64;
            correct += hits as f64;
            seen += n as f64;
            let now = Instant::now();
            let dt = now.duration_since(last).as_secs_f64().max(1e-9);
            last = now;
            link.emit(Event::Batch(BatchStats {
                stage,
                epoch,
                batch: b,
                batches: batches_per_epoch,
                loss: loss_v,
                top1: 100.0 * hits as f64 / n as f64,
                lr: lrs[0],
                images_per_sec: n as f64 / dt,
                memory_bytes: resident_memory_bytes(),
            }));
            if cfg.print_freq > 0 && b % cfg.print_freq == 0 {
                log(
                    link,
                    &mut run,
                    &format!(
                        "Epoch: [{epoch}][{b:>3}/{batches_per_epoch}]\tLoss {loss_v:.3} ({:.3})\tAcc@1 {:.3} ({:.3})",
                        loss_sum / seen,
                        100.0 * hits as f64 / n as f64,
                        100.0 * correct / seen
                    ),
                )?;
            }
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        if let Some(s) = &scaler {
            log(
                link,
                &mut run,
                &format!(
                    "=> amp: loss scale {} after epoch {epoch}; {overflow_skips} steps skipped \
                     after a gradient overflow",
                    s.scale()
                ),
            )?;
        }
        let images_per_sec =
            (seen - if resuming_here { start.epoch_seen } else { 0.0 }) / train_seconds.max(1e-9);

        let eval_start = Instant::now();
        let evaluated = evaluate(
            &net,
            &data.test,
            &data.norm,
            cfg.effective_eval_batch_size(),
            cfg.workers,
            &spec,
            cfg.on_bad_image,
        );
        let (report, skipped) = match evaluated {
            Ok(r) => r,
            Err(e) => {
                // The epoch's training is saved; resuming re-runs only this evaluation.
                let pos = position(
                    epoch,
                    batches_per_epoch,
                    (loss_sum, correct, seen),
                    (best_top1, best_ece),
                );
                checkpoint::save(&current_path, &net, &optimizer_state(&sgd, &scaler), &pos)?;
                let msg = format!(
                    "{e:#}. Epoch {epoch}'s training is saved: once the test set is fixed, \
                     resume with: resume {}",
                    current_path.display()
                );
                let _ = run.log(&msg);
                bail!(msg);
            }
        };
        for bad in &skipped {
            log(
                link,
                &mut run,
                &format!("=> unusable test image {bad}: skipped"),
            )?;
        }
        let eval_seconds = eval_start.elapsed().as_secs_f64();
        if !report.nll.is_finite() {
            let msg = format!(
                "the network's outputs are not finite after epoch {epoch} (test NLL {}): training \
                 stopped before saving; {}. Lower lr",
                report.nll,
                kept_note(&current_path)
            );
            let _ = run.log(&msg);
            bail!(msg);
        }
        let is_best = report.top1 > best_top1;
        if is_best {
            best_top1 = report.top1;
            best_ece = report.ece;
        }
        for line in report_lines(&report) {
            log(link, &mut run, &line)?;
        }
        log(
            link,
            &mut run,
            &format!("Best Prec@1: {best_top1:.3}% ECE: {best_ece:.3}%"),
        )?;
        let pos = position(epoch + 1, 0, (0.0, 0.0, 0.0), (best_top1, best_ece));
        checkpoint::save(&current_path, &net, &optimizer_state(&sgd, &scaler), &pos)?;
        link.emit(Event::Checkpoint {
            path: current_path.clone(),
            best: false,
        });
        if is_best {
            checkpoint::save(&best_path, &net, &optimizer_state(&sgd, &scaler), &pos)?;
            have_best = true;
            link.emit(Event::Checkpoint {
                path: best_path.clone(),
                best: true,
            });
        }
        let epoch_report = EpochReport {
            stage,
            epoch,
            num_epochs: cfg.num_epochs,
            lr: lrs,
            train_loss: loss_sum / seen.max(1.0),
            train_top1: 100.0 * correct / seen.max(1.0),
            eval: report,
            best_top1,
            best_ece,
            is_best,
            train_seconds,
            eval_seconds,
            images_per_sec,
        };
        run.append_metrics(&epoch_report)?;
        link.emit(Event::Epoch(Box::new(epoch_report)));
    }
    finish(
        link,
        stage,
        &mut run,
        false,
        best_top1,
        best_ece,
        have_best.then_some(best_path),
    )
}

fn finish(
    link: &mut Link,
    stage: Stage,
    run: &mut RunDir,
    stopped: bool,
    best_top1: f64,
    best_ece: f64,
    best_checkpoint: Option<PathBuf>,
) -> Result<StageOutcome> {
    log(
        link,
        run,
        &format!(
            "=> peak resident memory of the process: {:.1} MB",
            super::peak_memory_bytes() as f64 / 1e6
        ),
    )?;
    link.emit(Event::StageFinished(StageFinished {
        stage,
        run_dir: run.root.clone(),
        best_top1,
        best_ece,
        best_checkpoint: best_checkpoint.clone(),
        stopped,
    }));
    Ok(StageOutcome {
        run_dir: run.root.clone(),
        best_checkpoint,
        stopped,
        best_top1,
        best_ece,
    })
}

/// Writes a line to the run log and publishes it.
fn log(link: &Link, run: &mut RunDir, line: &str) -> Result<()> {
    run.log(line)?;
    link.emit(Event::Log(line.to_owned()));
    Ok(())
}

/// The network of a configuration: `cfg.backbone` with `cfg.num_classes` outputs, plus the
/// extra block of Places-LT (see [`crate::model`]), freshly initialised on `device`.
///
/// # Errors
/// An unknown backbone.
pub fn network_for(cfg: &Config, in_channels: i64, device: tch::Device) -> Result<Network> {
    Network::build(
        &cfg.backbone,
        in_channels,
        cfg.num_classes as i64,
        cfg.dataset == DatasetName::Places,
        device,
    )
}

/// Loads a checkpoint into a fresh network for evaluation (`mislas eval`).
///
/// # Errors
/// As [`checkpoint::load`] and [`Network::load_parts`].
pub fn network_from_checkpoint(cfg: &Config, ck: &Checkpoint, in_channels: i64) -> Result<Network> {
    let device = super::resolve_device(&cfg.device)?;
    let mut net = network_for(cfg, in_channels, device)?;
    let mut parts = net.weight_parts();
    if ck.tensors.keys().any(|k| k.starts_with(Part::Lws.prefix())) {
        parts.push(Part::Lws);
    }
    net.load_parts(&ck.tensors, &parts)
        .with_context(|| format!("checkpoint {}", ck.path.display()))?;
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    const TRAIN: StepOptions = StepOptions {
        backbone_train: true,
        accum_steps: 1,
        autocast: false,
    };

    fn batch<'a>(x: &'a Tensor, y: &'a Tensor, mixup_seed: u64) -> TrainBatch<'a> {
        TrainBatch {
            images: x,
            labels: y,
            mixup_seed,
        }
    }

    fn setup() -> (Network, Sgd, Tensor, Tensor) {
        tch::manual_seed(3);
        let net = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
        let mut params = net.part_parameters(Part::Backbone);
        params.extend(net.part_parameters(Part::Classifier));
        let sgd = Sgd::new(vec![params], 0.1, 0.9, 0.0);
        let x = Tensor::randn([8, 1, 12, 12], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 2, 3]);
        (net, sgd, x, y)
    }

    #[test]
    fn stage1_step_trains_on_the_mixed_batch_and_counts_unmixed_labels() {
        let (net, mut sgd, x, y) = setup();
        let seed = 11;
        // The loss the step must report: mixup CE on the batch mixed with the same seed.
        let mixed = mixup_data(
            &x,
            &y,
            Some(1.0),
            &mut rand::rngs::StdRng::seed_from_u64(seed),
        );
        assert!(mixed.lam < 1.0);
        let (expected, hits) = tch::no_grad(|| {
            let logits = net.classify(&net.features(&mixed.images, true));
            let hits = logits
                .argmax(-1, false)
                .eq_tensor(&y)
                .sum(Kind::Int64)
                .int64_value(&[]);
            (mixup_criterion(&logits, &mixed).double_value(&[]), hits)
        });
        let method = Method::Mixup { alpha: Some(1.0) };
        let out = train_step(&net, &mut sgd, None, &method, batch(&x, &y, seed), TRAIN);
        assert!(
            (out.loss - expected).abs() < 1e-5,
            "{} vs {expected}",
            out.loss
        );
        assert_eq!(out.hits, hits);
        // The step was applied: the same batch now gives another loss.
        let after = train_step(&net, &mut sgd, None, &method, batch(&x, &y, seed), TRAIN);
        assert!((after.loss - out.loss).abs() > 1e-6);
    }

    #[test]
    fn micro_batches_split_evenly_and_never_leave_one_image_to_batchnorm() {
        assert_eq!(micro_batches(8, 1, true), vec![(0, 8)]);
        assert_eq!(micro_batches(8, 3, true), vec![(0, 3), (3, 3), (6, 2)]);
        assert_eq!(
            micro_batches(10, 4, false),
            vec![(0, 3), (3, 3), (6, 2), (8, 2)]
        );
        // Five images in four parts would leave a one-image part: two parts in train mode.
        assert_eq!(micro_batches(5, 4, true), vec![(0, 3), (3, 2)]);
        assert_eq!(
            micro_batches(5, 4, false),
            vec![(0, 2), (2, 1), (3, 1), (4, 1)]
        );
        assert_eq!(micro_batches(3, 8, true), vec![(0, 3)]);
    }

    /// A second network with `net`'s weights (tests run in parallel and share torch's
    /// generator, so two seeded constructions need not agree).
    fn twin(net: &Network) -> (Network, Sgd) {
        let other = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
        let theirs = other.vs.variables();
        tch::no_grad(|| {
            for (k, t) in net.vs.variables() {
                theirs[&k].shallow_clone().copy_(&t);
            }
        });
        let mut params = other.part_parameters(Part::Backbone);
        params.extend(other.part_parameters(Part::Classifier));
        (other, Sgd::new(vec![params], 0.1, 0.9, 0.0))
    }

    /// Steps with BatchNorm on its running statistics, so that a loss is a mean over
    /// independent images and micro-batches add up exactly to the batch.
    fn frozen_bn(accum_steps: usize) -> StepOptions {
        StepOptions {
            backbone_train: false,
            accum_steps,
            autocast: false,
        }
    }

    /// Moves BatchNorm's running statistics to those of `x` (30 train-mode passes), so that
    /// eval-mode activations stay of order one.
    fn settle_batchnorm(net: &Network, x: &Tensor) {
        tch::no_grad(|| {
            for _ in 0..30 {
                let _ = net.features(x, true);
            }
        });
    }

    fn max_difference(a: &Network, b: &Network) -> f64 {
        let (va, vb) = (a.vs.variables(), b.vs.variables());
        va.iter()
            .map(|(k, t)| (t - &vb[k]).abs().max().double_value(&[]))
            .fold(0.0, f64::max)
    }

    #[test]
    fn accumulated_micro_batches_take_the_full_batch_step() {
        // With BatchNorm on running statistics the loss is a mean over independent images, so
        // the weighted micro-batch gradients add up to the batch's: the same step, to rounding.
        let method = Method::Mixup { alpha: Some(1.0) };
        let (net1, mut sgd1, x, y) = setup();
        settle_batchnorm(&net1, &x);
        let (net3, mut sgd3) = twin(&net1);
        sgd1.set_lr(0, 0.01);
        sgd3.set_lr(0, 0.01);
        let fresh = twin(&net1).0;
        assert_eq!(max_difference(&net1, &net3), 0.0);
        for seed in [11, 12] {
            let a = train_step(
                &net1,
                &mut sgd1,
                None,
                &method,
                batch(&x, &y, seed),
                frozen_bn(1),
            );
            let b = train_step(
                &net3,
                &mut sgd3,
                None,
                &method,
                batch(&x, &y, seed),
                frozen_bn(3),
            );
            assert!((a.loss - b.loss).abs() < 1e-5, "{} vs {}", a.loss, b.loss);
            assert_eq!(a.hits, b.hits);
            assert!(a.applied && b.applied);
        }
        let d = max_difference(&net1, &net3);
        assert!(d < 1e-5, "weights differ by {d}");
        // And the steps did move the weights.
        assert!(max_difference(&net1, &fresh) > 1e-3);
    }

    #[test]
    fn stage2_accumulation_trains_classifier_and_lws_as_one_batch() {
        let las = LabelAwareSmoothing::new(
            &[40, 20, 10, 5],
            0.3,
            0.0,
            crate::config::LasShape::Concave,
            None,
            Device::Cpu,
        )
        .unwrap();
        let method = Method::Las { las, alpha: None };
        let stage2 = |net: &Network| {
            net.freeze_backbone();
            Sgd::new(
                vec![
                    net.part_parameters(Part::Classifier),
                    net.part_parameters(Part::Lws),
                ],
                0.1,
                0.9,
                5e-4,
            )
        };
        let (net1, _, x, y) = setup();
        settle_batchnorm(&net1, &x);
        let (net4, _) = twin(&net1);
        let (mut sgd1, mut sgd4) = (stage2(&net1), stage2(&net4));
        for seed in 0..3 {
            let a = train_step(
                &net1,
                &mut sgd1,
                None,
                &method,
                batch(&x, &y, seed),
                frozen_bn(1),
            );
            let b = train_step(
                &net4,
                &mut sgd4,
                None,
                &method,
                batch(&x, &y, seed),
                frozen_bn(4),
            );
            assert!((a.loss - b.loss).abs() < 1e-5, "{} vs {}", a.loss, b.loss);
        }
        let d = max_difference(&net1, &net4);
        assert!(d < 1e-5, "weights differ by {d}");
        let lws = &net1.vs.variables()["lws_model.learned_norm"];
        assert!(
            (lws - 1.0).abs().max().double_value(&[]) > 1e-4,
            "LWS did not learn"
        );
    }

    #[test]
    fn loss_scaling_in_fp32_gives_the_unscaled_step() {
        // The scaler multiplies by 2^16 and divides again: exact in binary floating point.
        let method = Method::Mixup { alpha: Some(1.0) };
        let (net1, mut sgd1, x, y) = setup();
        let (net2, mut sgd2) = twin(&net1);
        let mut scaler = GradScaler::new(Device::Cpu);
        for seed in [1, 2] {
            let a = train_step(&net1, &mut sgd1, None, &method, batch(&x, &y, seed), TRAIN);
            let b = train_step(
                &net2,
                &mut sgd2,
                Some(&mut scaler),
                &method,
                batch(&x, &y, seed),
                TRAIN,
            );
            assert_eq!(a, b);
        }
        assert_eq!(max_difference(&net1, &net2), 0.0);
    }
}
