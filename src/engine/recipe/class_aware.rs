//! What the classifier-stage recipes (MiSLAS stage 2, cRT, LWS) share: the class-aware sampler,
//! the epoch length and the cosine schedule of the reference's `train_stage2.py`, so that the
//! methods differ only in what they train and how they score it.
use super::EpochStream;
use crate::config::Config;
use crate::data::sampler;
use crate::method::schedule;

/// The training stream and schedule of a classifier stage on the frozen backbone.
///
/// * Sampler: MiSLAS's class-aware sampler (classes in turn, [`sampler::SAMPLES_PER_CLASS`]
///   images each; Decoupling's `ClassAwareSampler` with `num_samples_cls: 4`, Kang et al.,
///   ICLR 2020);
/// * epoch: ⌈N/B⌉ + 1 batches of B images over N training images (the reference's loader
///   length);
/// * learning rate of 0-based epoch e of E: lr·½(1 + cos(π·e/E)) ([`schedule::stage2_lr`];
///   Decoupling's cosine schedule with η_min = 0).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassAwareStage {
    lr: f64,
    num_epochs: usize,
    num_classes: usize,
    seed: u64,
    batch_size: usize,
    /// The stage-1 loss keys set and unused, as a clause of the log line (see
    /// [`super::unused_stage1_keys`]).
    unused_stage1: String,
}

impl ClassAwareStage {
    /// The stream and schedule of a stage-2 configuration (`lr`, `num_epochs`, `num_classes`,
    /// `seed`, `batch_size`).
    pub fn of(cfg: &Config) -> Self {
        ClassAwareStage {
            lr: cfg.lr,
            num_epochs: cfg.num_epochs,
            num_classes: cfg.num_classes,
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            unused_stage1: super::unused_stage1_keys(cfg),
        }
    }

    /// "; stage-1 loss keys … are not used by a classifier stage", or empty: the end of the
    /// recipe's log line.
    pub fn unused_stage1(&self) -> &str {
        &self.unused_stage1
    }

    /// The cosine learning rate of 0-based `epoch`, before any per-group factor.
    pub fn lr(&self, epoch: usize) -> f64 {
        schedule::stage2_lr(self.lr, epoch, self.num_epochs)
    }
}

impl EpochStream for ClassAwareStage {
    /// Batches in an epoch over `train_images` images: ⌈N/B⌉ + 1.
    fn batches_per_epoch(&self, train_images: usize) -> usize {
        sampler::stage2_batches_per_epoch(train_images, self.batch_size)
    }

    /// Images drawn in an epoch: batches × B.
    fn images_per_epoch(&self, train_images: usize) -> usize {
        self.batches_per_epoch(train_images) * self.batch_size
    }

    /// The class-aware order of training indices of `epoch`, from the seed.
    fn epoch_order(&self, labels: &[i64], epoch: usize) -> Vec<usize> {
        sampler::class_aware_order(
            labels,
            self.num_classes,
            sampler::SAMPLES_PER_CLASS,
            self.images_per_epoch(labels.len()),
            self.seed,
            epoch,
        )
    }
}

/// The failure message of a classifier stage started without a stage-1 checkpoint.
pub const NEEDS_STAGE1: &str =
    "a classifier stage (stage 2: mislas, crt, lws or wb) needs a stage-1 \
     checkpoint: set `resume` to a stage-1 run's ckps/model_best.safetensors (or a reference \
     .pth.tar), or run `mislas pipeline`";
