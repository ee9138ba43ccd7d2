//! Stage 1 of MiSLAS (reference `train_stage1.py`): backbone and classifier learned together
//! with mixup cross-entropy on instance-balanced batches, SGD over one group, warm-up then step
//! decay or cosine.
use super::{EpochStream, StageRecipe, Start};
use crate::config::{Config, Stage};
use crate::data::sampler;
use crate::engine::step::Objective;
use crate::method::mixup::{mixup_criterion, MixedBatch};
use crate::method::schedule;
use crate::model::Network;
use anyhow::Result;
use std::path::PathBuf;
use tch::Tensor;

/// Mixup cross-entropy (Zhang et al., 2018): λ·CE(f(x̃), y_a) + (1−λ)·CE(f(x̃), y_b) on
/// x̃ = λ·x_a + (1−λ)·x_b; plain cross-entropy without α.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixupCrossEntropy {
    /// Beta(α, α) parameter; `None` (or ≤ 0) trains with plain cross-entropy.
    pub alpha: Option<f64>,
}

impl Objective for MixupCrossEntropy {
    fn mixup_alpha(&self) -> Option<f64> {
        self.alpha
    }

    fn forward_loss(
        &self,
        net: &Network,
        batch: &MixedBatch,
        backbone_train: bool,
    ) -> (Tensor, Tensor) {
        let logits = net.classify(&net.features(&batch.images, backbone_train));
        let loss = mixup_criterion(&logits, batch);
        (logits, loss)
    }
}

/// Stage 1: representation learning with mixup.
#[derive(Debug, Clone)]
pub struct MixupRecipe {
    loss: MixupCrossEntropy,
    lr: f64,
    num_epochs: usize,
    cos: bool,
    warmup_epochs: usize,
    lr_milestones: Vec<usize>,
    stream: InstanceBalanced,
    pretrained_weights: PathBuf,
}

/// Stage 1's stream: every training image once per epoch in a seeded random order, in batches
/// of B with a short last batch (the reference's `shuffle=True, drop_last=False`).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceBalanced {
    seed: u64,
    batch_size: usize,
}

impl EpochStream for InstanceBalanced {
    fn batches_per_epoch(&self, train_images: usize) -> usize {
        train_images.div_ceil(self.batch_size)
    }

    fn images_per_epoch(&self, train_images: usize) -> usize {
        train_images
    }

    fn epoch_order(&self, labels: &[i64], epoch: usize) -> Vec<usize> {
        sampler::instance_balanced_order(labels.len(), self.seed, epoch)
    }
}

impl MixupRecipe {
    /// The recipe of a stage-1 configuration.
    pub fn new(cfg: &Config) -> Self {
        MixupRecipe {
            loss: MixupCrossEntropy {
                alpha: cfg.mixup_alpha(),
            },
            lr: cfg.lr,
            num_epochs: cfg.num_epochs,
            cos: cfg.cos,
            warmup_epochs: cfg.effective_warmup(),
            lr_milestones: cfg.lr_milestones.clone(),
            stream: InstanceBalanced {
                seed: cfg.seed,
                batch_size: cfg.batch_size,
            },
            pretrained_weights: PathBuf::from(&cfg.pretrained_weights),
        }
    }
}

impl StageRecipe for MixupRecipe {
    fn stage(&self) -> Stage {
        Stage::Stage1
    }

    fn objective(&self) -> &dyn Objective {
        &self.loss
    }

    fn prepare_network(&self, net: &mut Network, start: Start) -> Result<()> {
        // Places-LT's block starts from an ImageNet-pretrained backbone (reference).
        if net.has_block() && start == Start::Fresh {
            net.load_pretrained_backbone(&self.pretrained_weights)?;
        }
        Ok(())
    }

    fn parameter_groups(&self, net: &Network) -> Vec<Vec<(String, Tensor)>> {
        vec![net
            .stage1_parts()
            .into_iter()
            .flat_map(|part| net.part_parameters(part))
            .collect()]
    }

    fn learning_rates(&self, epoch: usize) -> Vec<f64> {
        vec![schedule::stage1_lr(
            self.lr,
            epoch,
            self.num_epochs,
            self.cos,
            self.warmup_epochs,
            &self.lr_milestones,
        )]
    }

    fn stream(&self) -> &dyn EpochStream {
        &self.stream
    }

    fn describe(&self) -> String {
        let loss = match self.loss.alpha.filter(|a| *a > 0.0) {
            Some(a) => format!("mixup cross-entropy (α = {a})"),
            None => "cross-entropy (no mixup)".into(),
        };
        format!(
            "recipe: stage 1 — backbone and classifier trained with {loss} on instance-balanced \
             batches, BatchNorm in train mode"
        )
    }

    fn backbone_train(&self) -> bool {
        true
    }
}
