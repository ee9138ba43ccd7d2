//! Stage 1 of MiSLAS (reference `train_stage1.py`): backbone and classifier learned together
//! with mixup cross-entropy on instance-balanced batches, SGD over one group, warm-up then step
//! decay or cosine. The loss is the `loss` key's ([`crate::method::loss`]): cross-entropy (the
//! reference's) or a long-tail baseline's, each composed with mixup as λ·L(y_a) + (1 − λ)·L(y_b).
use super::{EpochStream, StageRecipe, Start};
use crate::config::{Config, Reweight, Stage, StageOneLossName};
use crate::data::sampler;
use crate::engine::step::Objective;
use crate::method::loss::StageOneLoss;
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

/// A stage-1 loss with mixup: λ·L(f(x̃), y_a) + (1 − λ)·L(f(x̃), y_b) (the reference's
/// `mixup_criterion` with L the configured loss); L alone without α. `epoch` selects DRW's
/// class weights.
#[derive(Debug, Clone, PartialEq)]
pub struct MixupStageOneLoss {
    /// Beta(α, α) parameter; `None` (or ≤ 0) trains on unmixed batches.
    pub alpha: Option<f64>,
    /// The loss L.
    pub loss: StageOneLoss,
    /// The 0-based epoch being trained.
    pub epoch: usize,
}

impl Objective for MixupStageOneLoss {
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
        let loss = batch.loss_with(|y| self.loss.batch_loss(&logits, y, self.epoch));
        (logits, loss)
    }
}

/// Stage 1: representation learning with mixup.
#[derive(Debug, Clone)]
pub struct MixupRecipe {
    loss: MixupStageOneLoss,
    /// The loss in words, with the loss keys it leaves unused, for the log line.
    loss_words: String,
    lr: f64,
    num_epochs: usize,
    cos: bool,
    warmup_epochs: usize,
    lr_milestones: Vec<usize>,
    lr_decay: f64,
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

impl InstanceBalanced {
    /// The stream of a configuration (`seed`, `batch_size`).
    pub fn of(cfg: &Config) -> Self {
        InstanceBalanced {
            seed: cfg.seed,
            batch_size: cfg.batch_size,
        }
    }
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
    /// The recipe of a stage-1 configuration; `class_counts` are the training counts of each
    /// class, which the long-tail losses use.
    ///
    /// # Errors
    /// A loss that cannot be built (see [`StageOneLoss::for_config`]).
    pub fn new(cfg: &Config, class_counts: &[usize]) -> Result<Self> {
        let loss = StageOneLoss::for_config(cfg, class_counts)?;
        Ok(MixupRecipe {
            loss_words: format!("{}{}", loss.describe(cfg), unused_loss_keys(cfg)),
            loss: MixupStageOneLoss {
                alpha: cfg.mixup_alpha(),
                loss,
                epoch: 0,
            },
            lr: cfg.lr,
            num_epochs: cfg.num_epochs,
            cos: cfg.cos,
            warmup_epochs: cfg.effective_warmup(),
            lr_milestones: cfg.lr_milestones.clone(),
            lr_decay: cfg.lr_decay,
            stream: InstanceBalanced::of(cfg),
            pretrained_weights: PathBuf::from(&cfg.pretrained_weights),
        })
    }
}

/// The loss keys set away from their defaults that `cfg.loss` and `cfg.reweight` do not read,
/// as a clause of the log line ("; focal_gamma 2 is not used by loss ce"); empty when none.
fn unused_loss_keys(cfg: &Config) -> String {
    let d = Config::default();
    let mut unused = Vec::new();
    if cfg.la_tau != d.la_tau && cfg.loss != StageOneLossName::LogitAdjusted {
        unused.push(format!("la_tau {}", cfg.la_tau));
    }
    if cfg.focal_gamma != d.focal_gamma && cfg.loss != StageOneLossName::Focal {
        unused.push(format!("focal_gamma {}", cfg.focal_gamma));
    }
    if cfg.cb_beta != d.cb_beta && cfg.reweight == Reweight::None {
        unused.push(format!("cb_beta {}", cfg.cb_beta));
    }
    if cfg.drw_epoch != d.drw_epoch && cfg.reweight != Reweight::Drw {
        unused.push(format!("drw_epoch {}", cfg.drw_epoch));
    }
    if unused.is_empty() {
        return String::new();
    }
    format!(
        " ({} not used by loss {}, reweight {})",
        unused.join(", "),
        cfg.loss,
        cfg.reweight
    )
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
            self.lr_decay,
        )]
    }

    fn stream(&self) -> &dyn EpochStream {
        &self.stream
    }

    fn begin_epoch(&mut self, epoch: usize) {
        self.loss.epoch = epoch;
    }

    fn describe(&self) -> String {
        let loss = match self.loss.alpha.filter(|a| *a > 0.0) {
            Some(a) => format!("mixup (α = {a}) {}", self.loss_words),
            None => format!("{} (no mixup)", self.loss_words),
        };
        let warmup = if !self.cos && self.warmup_epochs >= self.num_epochs {
            format!(
                "; the {}-epoch warm-up is not shorter than the {} epochs, so lr never reaches \
                 {} (set warmup_epochs)",
                self.warmup_epochs, self.num_epochs, self.lr
            )
        } else {
            String::new()
        };
        format!(
            "recipe: stage 1 — backbone and classifier trained with {loss} on instance-balanced \
             batches, BatchNorm in train mode{warmup}{}",
            self.unused_step_keys()
        )
    }

    fn backbone_train(&self) -> bool {
        true
    }
}

impl MixupRecipe {
    /// The step schedule's keys set away from their defaults while the cosine schedule runs,
    /// which reads neither, as a clause for the log line; empty when there are none.
    fn unused_step_keys(&self) -> String {
        let d = Config::default();
        let mut set = Vec::new();
        if self.cos && self.lr_milestones != d.lr_milestones {
            set.push(format!("lr_milestones {:?}", self.lr_milestones));
        }
        if self.cos && self.lr_decay != d.lr_decay {
            set.push(format!("lr_decay {}", self.lr_decay));
        }
        match set.is_empty() {
            true => String::new(),
            false => format!(
                "; {} not used by the cosine schedule (cos true)",
                set.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A warm-up as long as the run is said in the log line (it used to pass silently).
    #[test]
    fn a_warmup_longer_than_the_run_is_said() {
        let cfg = Config {
            num_epochs: 1,
            warmup_epochs: Some(5),
            ..Config::default()
        };
        let line = MixupRecipe::new(&cfg, &[10, 5]).unwrap().describe();
        assert!(
            line.ends_with(
                "; the 5-epoch warm-up is not shorter than the 1 epochs, so lr never reaches 0.1 \
                 (set warmup_epochs)"
            ),
            "{line}"
        );
        let cfg = Config {
            num_epochs: 10,
            ..cfg
        };
        let line = MixupRecipe::new(&cfg, &[10, 5]).unwrap().describe();
        assert!(!line.contains("warm-up"), "{line}");
    }

    /// The step decay's keys under the cosine schedule, which ignores them, are said in the log
    /// line; with the step schedule they are used and nothing is said.
    #[test]
    fn step_keys_under_cosine_are_said() {
        let cfg = Config {
            cos: true,
            lr_decay: 0.01,
            lr_milestones: vec![8, 9],
            num_epochs: 10,
            ..Config::default()
        };
        let line = MixupRecipe::new(&cfg, &[10, 5]).unwrap().describe();
        assert!(
            line.ends_with(
                "; lr_milestones [8, 9], lr_decay 0.01 not used by the cosine schedule (cos true)"
            ),
            "{line}"
        );
        let step = Config { cos: false, ..cfg };
        let line = MixupRecipe::new(&step, &[10, 5]).unwrap().describe();
        assert!(!line.contains("not used"), "{line}");
    }
}
