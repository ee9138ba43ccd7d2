//! LWS, learnable weight scaling (Kang et al., "Decoupling Representation and Classifier for
//! Long-Tailed Recognition", ICLR 2020, §4): the stage-1 backbone and classifier are frozen; only
//! the per-class scales s (logits·s, initialised to one; the reference's `learned_norm`) are
//! trained, with plain cross-entropy on the class-aware sampler and a cosine schedule. MiSLAS
//! trains the same scales together with the classifier under label-aware smoothing.
use super::class_aware::{ClassAwareStage, NEEDS_STAGE1};
use super::crt::FrozenFeatureCrossEntropy;
use super::{EpochStream, StageRecipe, Start};
use crate::config::{Config, Stage};
use crate::engine::step::Objective;
use crate::model::{Network, Part};
use anyhow::Result;
use tch::Tensor;

/// Weight scaling on the frozen stage-1 backbone and classifier.
#[derive(Debug)]
pub struct LwsRecipe {
    stream: ClassAwareStage,
    shift_bn: bool,
}

impl LwsRecipe {
    /// The LWS recipe of a stage-2 configuration: `lr` is the scales' (no `lr_factor`).
    pub fn new(cfg: &Config) -> Self {
        LwsRecipe {
            stream: ClassAwareStage::of(cfg),
            shift_bn: cfg.shift_bn,
        }
    }
}

impl StageRecipe for LwsRecipe {
    fn stage(&self) -> Stage {
        Stage::Stage2
    }

    fn objective(&self) -> &dyn Objective {
        &FrozenFeatureCrossEntropy
    }

    fn prepare_network(&self, net: &mut Network, _start: Start) -> Result<()> {
        net.freeze_backbone();
        net.freeze(Part::Classifier);
        Ok(())
    }

    fn parameter_groups(&self, net: &Network) -> Vec<Vec<(String, Tensor)>> {
        vec![net.part_parameters(Part::Lws)]
    }

    fn learning_rates(&self, epoch: usize) -> Vec<f64> {
        vec![self.stream.lr(epoch)]
    }

    fn stream(&self) -> &dyn EpochStream {
        &self.stream
    }

    fn describe(&self) -> String {
        format!(
            "recipe lws: only the per-class LWS scales trained, with cross-entropy on the \
             class-aware sampler; classifier and backbone frozen, {}; smooth_head, smooth_tail \
             and lr_factor are not used{}",
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Only the scales `[1, K]` train; backbone and classifier are frozen whatever the start.
    #[test]
    fn only_the_scales_train() {
        let cfg = Config {
            mode: Some(Stage::Stage2),
            num_classes: 10,
            num_epochs: 10,
            lr: 0.2,
            shift_bn: true,
            ..Config::default()
        };
        let recipe = LwsRecipe::new(&cfg);
        tch::manual_seed(0);
        let mut net = Network::new("resnet32_fe", 1, 10, Device::Cpu).unwrap();
        let weight = net.part_variables(Part::Classifier)[1].1.copy();
        recipe
            .prepare_network(&mut net, Start::FromCheckpoint)
            .unwrap();
        assert!(net.part_variables(Part::Classifier)[1].1.equal(&weight));
        let groups = recipe.parameter_groups(&net);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].len(), 1);
        assert_eq!(groups[0][0].0, "lws_model.learned_norm");
        assert_eq!(groups[0][0].1.size(), vec![1, 10]);
        assert!(net.part_parameters(Part::Classifier).is_empty());
        assert!(net.part_parameters(Part::Backbone).is_empty());
        // lr·½(1 + cos(π·e/10)): 0.2 at epoch 0, 0.1 at epoch 5.
        assert_eq!(recipe.learning_rates(0), vec![0.2]);
        assert!((recipe.learning_rates(5)[0] - 0.1).abs() < 1e-12);
        assert!(recipe.backbone_train());
        let line = recipe.describe();
        assert!(
            line.starts_with("recipe lws: only the per-class LWS scales"),
            "{line}"
        );
        assert!(line.contains("(shift learning)"), "{line}");
        // ⌈N/B⌉ + 1 batches of the class-aware sampler: 14,886 images, B = 128 → 118.
        assert_eq!(recipe.stream().batches_per_epoch(14_886), 118);
    }
}
