//! The one set-up path that training, evaluation and `bench` start from: the configuration's
//! checks, the device, the checkpoint named by `resume`, the data and the network.
use super::resolve_device;
use crate::checkpoint::{self, Checkpoint, Origin, RunPosition};
use crate::config::Config;
use crate::data::{self, LongTailData};
use crate::events::{Failure, FailureKind};
use crate::model::{Network, Part};
use crate::wire::Classify;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use tch::Device;

/// What the set-up is for: what it checks of the device and requires of `resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A training stage: the device must serve `amp`; `resume` is optional.
    Train,
    /// `mislas eval`: evaluation is fp32 on any device; `resume` is required.
    Eval,
    /// `mislas bench`: as training, from fresh weights (`resume` is not read).
    Bench,
}

/// A configuration made ready: device, data, a freshly initialised network, and the checkpoint
/// named by `resume` (loaded, not yet applied: see [`Prepared::restore`]).
#[derive(Debug)]
pub struct Prepared {
    /// The device the network lives on.
    pub device: Device,
    /// Training and test data, the long-tailed subset made.
    pub data: LongTailData,
    /// The network, initialised from `seed` (libtorch's generator is seeded before the data
    /// and the network are made, as the reference seeds before building them).
    pub net: Network,
    /// The checkpoint `resume` names, when set.
    pub checkpoint: Option<Checkpoint>,
}

/// Checks `cfg`, resolves its device, loads the `resume` checkpoint, the data and a fresh
/// network.
///
/// # Errors
/// A configuration error (every failed rule, or a batch larger than the training set), a
/// device that is not there, an unreadable checkpoint, or missing or damaged data; each names
/// the file or key and what was expected.
pub fn prepare(cfg: &Config, purpose: Purpose) -> Result<Prepared, Failure> {
    cfg.ensure_valid().kind(FailureKind::Config)?;
    let device = match purpose {
        Purpose::Eval => resolve_device(&cfg.device),
        Purpose::Train | Purpose::Bench => stage_device(cfg),
    }
    .kind(FailureKind::Config)?;
    let checkpoint = match (purpose, cfg.resume.is_empty()) {
        (Purpose::Bench, _) | (Purpose::Train, true) => None,
        (Purpose::Eval, true) => {
            return Err(Failure::new(
                FailureKind::Config,
                "eval needs a checkpoint: add `resume PATH`",
            ))
        }
        (_, false) => Some(load_checkpoint(cfg).kind(FailureKind::Checkpoint)?),
    };
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(!cfg.deterministic);
    }
    tch::manual_seed(cfg.seed as i64);
    let data = data::load(cfg).kind(FailureKind::Data)?;
    if purpose != Purpose::Eval && cfg.batch_size > data.train.len() {
        return Err(Failure::new(
            FailureKind::Config,
            format!(
                "batch_size {} of '{}' is larger than its training set ({} images): set \
                 batch_size to {} or less",
                cfg.batch_size,
                cfg.name,
                data.train.len(),
                data.train.len()
            ),
        ));
    }
    let net = network_for(cfg, data.train.channels() as i64, device).kind(FailureKind::Config)?;
    Ok(Prepared {
        device,
        data,
        net,
        checkpoint,
    })
}

impl Prepared {
    /// Loads `parts` of the network from the checkpoint, if there is one; returns the log line
    /// that says what was loaded (`=> loaded checkpoint '…' (…)`, as the reference logs it).
    ///
    /// # Errors
    /// A tensor of `parts` is missing from the checkpoint or has another shape (listed).
    pub fn restore(
        &mut self,
        parts: &[Part],
        continuing: Option<&RunPosition>,
    ) -> Result<Option<String>, Failure> {
        let Some(ck) = &self.checkpoint else {
            return Ok(None);
        };
        self.net
            .load_parts(&ck.tensors, parts)
            .map_err(|e| Failure::new(FailureKind::Checkpoint, checkpoint_message(ck, &e)))?;
        let what = match (continuing, ck.origin) {
            (Some(p), _) => format!("resuming at epoch {} batch {}", p.epoch, p.batch),
            (None, Origin::Reference) => "reference checkpoint".to_owned(),
            (None, Origin::Mislas) => "weights of a mislas checkpoint".to_owned(),
        };
        Ok(Some(format!(
            "=> loaded checkpoint '{}' ({what})",
            ck.path.display()
        )))
    }
}

fn checkpoint_message(ck: &Checkpoint, e: &anyhow::Error) -> String {
    format!("checkpoint {}: {e:#}", ck.path.display())
}

fn load_checkpoint(cfg: &Config) -> Result<Checkpoint> {
    cfg.check_resume().map_err(anyhow::Error::msg)?;
    checkpoint::load(Path::new(&cfg.resume))
}

/// The run folder and position a checkpoint continues, when it is its run's own latest
/// checkpoint (`<run>/<model_dir>/current.safetensors` of the same stage): any other file of the
/// same stage (a `model_best`, a copy) starts a new run from its weights, so that no run folder
/// is rewound and overwritten.
///
/// # Errors
/// The run was trained with another seed or batch size: resuming would not continue it.
pub fn continued_run(
    cfg: &Config,
    ck: Option<&Checkpoint>,
) -> Result<Option<(PathBuf, RunPosition)>, Failure> {
    let Some(ck) = ck else { return Ok(None) };
    let found = (|| {
        let pos = ck.position.filter(|p| p.stage == cfg.stage())?;
        let root = ck.path.parent()?.parent()?;
        let own = ck.path.file_name()? == crate::run_dir::CURRENT
            && root.join(&cfg.model_dir) == ck.path.parent()?
            && root.join("config.yaml").is_file();
        own.then(|| (root.to_path_buf(), pos))
    })();
    if let Some((_, p)) = &found {
        if (p.seed, p.batch_size) != (cfg.seed, cfg.batch_size) {
            return Err(Failure::new(
                FailureKind::Config,
                format!(
                    "{}: this run was trained with seed {} and batch_size {}; resuming it with \
                     seed {} and batch_size {} would not continue it. Set them back, or start a \
                     new run from its weights with resume …/model_best.safetensors",
                    ck.path.display(),
                    p.seed,
                    p.batch_size,
                    cfg.seed,
                    cfg.batch_size
                ),
            ));
        }
    }
    Ok(found)
}

/// The device a stage of `cfg` trains on, checked against what it asks of it.
///
/// # Errors
/// The device is not there (see [`super::resolve_device`]), or `amp` is set and the device is
/// not a CUDA device.
pub fn stage_device(cfg: &Config) -> Result<Device> {
    let device = resolve_device(&cfg.device)?;
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

/// The network of a configuration: `cfg.backbone` with `cfg.num_classes` outputs through the
/// `cfg.classifier` classifier, plus the extra block of Places-LT (see [`crate::model`]),
/// freshly initialised on `device`.
///
/// # Errors
/// An unknown backbone.
pub fn network_for(cfg: &Config, in_channels: i64, device: Device) -> Result<Network> {
    Network::build_with(
        &cfg.backbone,
        in_channels,
        cfg.num_classes as i64,
        cfg.dataset.spec().extra_block,
        cfg.classifier,
        device,
    )
}

/// The parts `mislas eval` loads from a checkpoint: the network's weights, and LWS when the
/// checkpoint has it (a stage-2 checkpoint).
pub fn evaluated_parts(net: &Network, ck: &Checkpoint) -> Vec<Part> {
    let mut parts = net.weight_parts();
    if ck.tensors.keys().any(|k| k.starts_with(Part::Lws.prefix())) {
        parts.push(Part::Lws);
    }
    parts
}
