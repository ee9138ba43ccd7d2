//! Stage 2 of MiSLAS (reference `train_stage2.py`): the stage-1 backbone gets no gradient (in
//! train mode with `shift_bn`, so BatchNorm statistics follow the class-balanced stream — shift
//! learning, MiSLAS §4.3); the classifier continues from stage 1 and the learnable weight scaling
//! (LWS) from ones, trained with label-aware smoothing (MiSLAS §4.2, Eq. 6) on a class-aware
//! sampler; SGD over two groups (classifier at lr·`lr_factor`, LWS at lr), cosine schedule; an
//! epoch is ceil(N/B)+1 batches as in the reference.
use super::class_aware::{ClassAwareStage, NEEDS_STAGE1};
use super::{EpochStream, StageRecipe, Start};
use crate::config::{Config, Stage};
use crate::engine::step::Objective;
use crate::method::las::LabelAwareSmoothing;
use crate::method::mixup::MixedBatch;
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
    stream: ClassAwareStage,
    lr_factor: f64,
    /// (ε_head, ε_tail) of LAS, for the log.
    las_range: (f64, f64),
    shift_bn: bool,
}

impl MislasRecipe {
    /// The recipe of a stage-2 configuration; `class_counts` are the training counts that LAS's
    /// ε follow.
    ///
    /// # Errors
    /// MiSLAS's keys missing or out of range ([`Config::mislas_settings`]), or LAS settings
    /// that cannot be used (see [`LabelAwareSmoothing::new`]).
    pub fn new(cfg: &Config, class_counts: &[usize], device: Device) -> Result<Self> {
        let keys = cfg
            .mislas_settings()
            .map_err(|e| anyhow::anyhow!("recipe mislas: {e}"))?;
        let las = LabelAwareSmoothing::new(
            class_counts,
            keys.smooth_head,
            keys.smooth_tail,
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
            stream: ClassAwareStage::of(cfg),
            lr_factor: keys.lr_factor,
            las_range: (keys.smooth_head, keys.smooth_tail),
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

    fn prepare_network(&self, net: &mut Network, _start: Start) -> Result<()> {
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
        let lr = self.stream.lr(epoch);
        vec![lr * self.lr_factor, lr]
    }

    fn stream(&self) -> &dyn EpochStream {
        &self.stream
    }

    fn describe(&self) -> String {
        format!(
            "recipe mislas: classifier (lr × {}) and LWS scales trained with label-aware \
             smoothing (ε {} → {} from head to tail) on the class-aware sampler; backbone frozen, \
             {}{}",
            self.lr_factor,
            self.las_range.0,
            self.las_range.1,
            super::crt::bn_words(self.shift_bn),
            self.stream.unused_stage1()
        )
    }

    fn backbone_train(&self) -> bool {
        self.shift_bn
    }

    fn missing_checkpoint(&self) -> Option<&'static str> {
        Some(NEEDS_STAGE1)
    }
}
