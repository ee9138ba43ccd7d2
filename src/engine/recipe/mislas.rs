//! Stage 2 of MiSLAS (reference `train_stage2.py`): the stage-1 backbone gets no gradient (in
//! train mode with `shift_bn`, so BatchNorm statistics follow the class-balanced stream — shift
//! learning, MiSLAS §4.3); the classifier continues from stage 1 and the learnable weight scaling
//! (LWS) from ones, trained with label-aware smoothing (MiSLAS §4.2, Eq. 6) on a class-aware
//! sampler; SGD over two groups (classifier at lr·`lr_factor`, LWS at lr), cosine schedule; an
//! epoch is ceil(N/B)+1 batches as in the reference.
use super::StageRecipe;
use crate::config::{Config, Stage};
use crate::data::sampler;
use crate::engine::step::Objective;
use crate::method::las::LabelAwareSmoothing;
use crate::method::mixup::MixedBatch;
use crate::method::schedule;
use crate::model::{Network, Part};
use anyhow::Result;
use tch::{Device, Tensor};

/// Label-aware smoothing on LWS-scaled logits of features computed without gradient, on mixup
/// batches when `alpha` is set (the reference's stage 2 mixes when `mixup: true`).
#[derive(Debug)]
pub struct LabelAwareSmoothingOnLws {
    /// The loss.
    pub las: LabelAwareSmoothing,
    /// Beta(α, α) parameter of mixup; `None` for no mixing (the release's presets).
    pub alpha: Option<f64>,
}

impl Objective for LabelAwareSmoothingOnLws {
    fn mixup_alpha(&self) -> Option<f64> {
        self.alpha
    }

    fn forward_loss(
        &self,
        net: &Network,
        batch: &MixedBatch,
        backbone_train: bool,
    ) -> (Tensor, Tensor) {
        let feats = tch::no_grad(|| net.features(&batch.images, backbone_train));
        let logits = net.scale(&net.classify(&feats));
        let loss = batch.loss_with(|target| self.las.loss(&logits, target));
        (logits, loss)
    }
}

/// Stage 2: classifier re-learning with shift learning, LWS and LAS.
#[derive(Debug)]
pub struct MislasRecipe {
    loss: LabelAwareSmoothingOnLws,
    lr: f64,
    lr_factor: f64,
    num_epochs: usize,
    num_classes: usize,
    seed: u64,
    batch_size: usize,
    shift_bn: bool,
}

impl MislasRecipe {
    /// The recipe of a stage-2 configuration; `class_counts` are the training counts that LAS's
    /// ε follow.
    ///
    /// # Errors
    /// LAS settings that cannot be used (see [`LabelAwareSmoothing::new`]).
    pub fn new(cfg: &Config, class_counts: &[usize], device: Device) -> Result<Self> {
        let las = LabelAwareSmoothing::new(
            class_counts,
            cfg.smooth_head.unwrap_or(0.0),
            cfg.smooth_tail.unwrap_or(0.0),
            cfg.las_shape,
            cfg.las_power,
            device,
        )
        .map_err(|e| anyhow::anyhow!("label-aware smoothing: {e}"))?;
        Ok(MislasRecipe {
            loss: LabelAwareSmoothingOnLws {
                las,
                alpha: cfg.mixup_alpha(),
            },
            lr: cfg.lr,
            lr_factor: cfg.lr_factor.unwrap_or(1.0),
            num_epochs: cfg.num_epochs,
            num_classes: cfg.num_classes,
            seed: cfg.seed,
            batch_size: cfg.batch_size,
            shift_bn: cfg.shift_bn,
        })
    }
}

impl StageRecipe for MislasRecipe {
    fn stage(&self) -> Stage {
        Stage::Stage2
    }

    fn objective(&self) -> &dyn Objective {
        &self.loss
    }

    fn prepare_network(&self, net: &mut Network, _restored: bool) -> Result<()> {
        net.freeze_backbone();
        Ok(())
    }

    fn parameter_groups(&self, net: &Network) -> Vec<Vec<(String, Tensor)>> {
        vec![
            net.part_parameters(Part::Classifier),
            net.part_parameters(Part::Lws),
        ]
    }

    fn learning_rates(&self, epoch: usize) -> Vec<f64> {
        let lr = schedule::stage2_lr(self.lr, epoch, self.num_epochs);
        vec![lr * self.lr_factor, lr]
    }

    fn batches_per_epoch(&self, train_images: usize) -> usize {
        sampler::stage2_batches_per_epoch(train_images, self.batch_size)
    }

    fn images_per_epoch(&self, train_images: usize) -> usize {
        self.batches_per_epoch(train_images) * self.batch_size
    }

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

    fn backbone_train(&self) -> bool {
        self.shift_bn
    }

    fn missing_checkpoint(&self) -> Option<&'static str> {
        Some(
            "stage 2 needs a stage-1 checkpoint: set `resume` to a stage-1 run's \
             ckps/model_best.safetensors (or a reference .pth.tar), or run `mislas pipeline`",
        )
    }
}
