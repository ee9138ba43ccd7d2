//! cRT, classifier re-training (Kang et al., "Decoupling Representation and Classifier for
//! Long-Tailed Recognition", ICLR 2020, §4): the stage-1 backbone is frozen and in eval mode
//! (unless `shift_bn`), the linear classifier is drawn anew and trained alone with plain
//! cross-entropy on the class-aware sampler, cosine schedule; the LWS scales stay at one.
use super::class_aware::{ClassAwareStage, NEEDS_STAGE1};
use super::{EpochStream, StageRecipe, Start};
use crate::config::{Config, Stage};
use crate::engine::step::Objective;
use crate::method::mixup::MixedBatch;
use crate::model::{Network, Part};
use anyhow::Result;
use tch::{Reduction, Tensor};

/// Cross-entropy on the (LWS-scaled) logits of features computed without gradient: the loss
/// of cRT (scales fixed at one) and of LWS (classifier fixed). Batches are never mixed
/// (Decoupling trains its classifier stage without mixup).
#[derive(Debug, Clone, Copy, Default)]
pub struct FrozenFeatureCrossEntropy;

impl Objective for FrozenFeatureCrossEntropy {
    fn mixup_alpha(&self) -> Option<f64> {
        None
    }

    fn forward_loss(
        &self,
        net: &Network,
        batch: &MixedBatch,
        backbone_train: bool,
    ) -> (Tensor, Tensor) {
        let feats = tch::no_grad(|| net.features(&batch.images, backbone_train));
        let logits = net.scale(&net.classify(&feats));
        let loss = batch.loss_with(|target| {
            logits.cross_entropy_loss::<Tensor>(target, None, Reduction::Mean, -100, 0.0)
        });
        (logits, loss)
    }
}

/// How a classifier stage's backbone BatchNorm runs, in words.
pub(super) fn bn_words(shift_bn: bool) -> &'static str {
    if shift_bn {
        "BatchNorm statistics follow the class-balanced batches (shift learning)"
    } else {
        "BatchNorm in eval mode (stage-1 statistics)"
    }
}

/// Classifier re-training on the frozen stage-1 backbone.
#[derive(Debug)]
pub struct CrtRecipe {
    stream: ClassAwareStage,
    shift_bn: bool,
}

impl CrtRecipe {
    /// The cRT recipe of a stage-2 configuration: `lr` is the classifier's (no `lr_factor`).
    pub fn new(cfg: &Config) -> Self {
        CrtRecipe {
            stream: ClassAwareStage::of(cfg),
            shift_bn: cfg.shift_bn,
        }
    }
}

impl StageRecipe for CrtRecipe {
    fn stage(&self) -> Stage {
        Stage::Stage2
    }

    fn objective(&self) -> &dyn Objective {
        &FrozenFeatureCrossEntropy
    }

    fn prepare_network(&self, net: &mut Network, start: Start) -> Result<()> {
        net.freeze_backbone();
        net.freeze(Part::Lws);
        if start != Start::Continuing {
            net.reset_classifier();
        }
        Ok(())
    }

    fn parameter_groups(&self, net: &Network) -> Vec<Vec<(String, Tensor)>> {
        vec![net.part_parameters(Part::Classifier)]
    }

    fn learning_rates(&self, epoch: usize) -> Vec<f64> {
        vec![self.stream.lr(epoch)]
    }

    fn stream(&self) -> &dyn EpochStream {
        &self.stream
    }

    fn describe(&self) -> String {
        format!(
            "recipe crt: classifier re-initialised and trained alone with cross-entropy on the \
             class-aware sampler; backbone frozen, {}; LWS scales fixed at 1; smooth_head, \
             smooth_tail and lr_factor are not used{}",
            bn_words(self.shift_bn),
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
    use tch::{Device, Kind};

    fn net(classes: i64) -> Network {
        tch::manual_seed(0);
        Network::new("resnet32_fe", 1, classes, Device::Cpu).unwrap()
    }

    fn classifier(net: &Network) -> Vec<Tensor> {
        net.part_variables(Part::Classifier)
            .into_iter()
            .map(|(_, t)| t.copy())
            .collect()
    }

    /// The loss is the mean over the batch of log Σ_j exp z_j − z_y, computed here in f64 from
    /// the returned logits.
    #[test]
    fn loss_is_cross_entropy_of_the_scaled_logits() {
        let net = net(4);
        tch::no_grad(|| {
            net.part_variables(Part::Lws)[0]
                .1
                .copy_(&Tensor::from_slice(&[0.5f32, 1.0, 2.0, 1.5]));
        });
        let labels = [0i64, 3, 2];
        let batch = MixedBatch {
            images: Tensor::randn([3, 1, 28, 28], (Kind::Float, Device::Cpu)),
            targets_a: Tensor::from_slice(&labels),
            targets_b: Tensor::from_slice(&labels),
            lam: 1.0,
        };
        let (logits, loss) = FrozenFeatureCrossEntropy.forward_loss(&net, &batch, false);
        let z: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(logits.to_kind(Kind::Double)).unwrap();
        let by_hand = labels
            .iter()
            .zip(&z)
            .map(|(&y, row)| row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[y as usize])
            .sum::<f64>()
            / 3.0;
        // float32 log-sum-exp: an error of a few ulps of the largest logit.
        let scale = z.iter().flatten().fold(1.0f64, |m, v| m.max(v.abs()));
        let loss = loss.double_value(&[]);
        assert!((loss - by_hand).abs() < 1e-5 * scale, "{loss} vs {by_hand}");
        // The scales reach the logits: class 2's are twice the unscaled ones.
        let plain = tch::no_grad(|| net.classify(&net.features(&batch.images, false)));
        let ratio = (logits.select(1, 2) / plain.select(1, 2)).mean(Kind::Double);
        assert!((ratio.double_value(&[]) - 2.0).abs() < 1e-5);
    }

    /// Starting from a checkpoint the classifier is drawn anew (Kaiming normal, std √(2/F),
    /// F = 64; bias within ±1/√F); a resumed cRT run keeps its own. Only the classifier trains.
    #[test]
    fn classifier_is_redrawn_from_a_checkpoint_and_kept_when_continuing() {
        let cfg = Config {
            mode: Some(Stage::Stage2),
            num_classes: 500,
            ..Config::default()
        };
        let recipe = CrtRecipe::new(&cfg);
        let mut n = net(500);
        let before = classifier(&n);
        recipe.prepare_network(&mut n, Start::Continuing).unwrap();
        assert!(classifier(&n).iter().zip(&before).all(|(a, b)| a.equal(b)));
        recipe
            .prepare_network(&mut n, Start::FromCheckpoint)
            .unwrap();
        let after = classifier(&n);
        assert!(!after[0].equal(&before[0]) && !after[1].equal(&before[1]));
        // after[0] is fc.bias [500], after[1] fc.weight [500, 64].
        let std = after[1].std(true).double_value(&[]);
        let expected = (2.0f64 / 64.0).sqrt();
        assert!(
            (std / expected - 1.0).abs() < 0.03,
            "std {std} vs {expected}"
        );
        let bias_max = after[0].abs().max().double_value(&[]);
        assert!(bias_max <= 0.125 && bias_max > 0.1, "bias max {bias_max}");
        let groups = recipe.parameter_groups(&n);
        let names: Vec<&str> = groups[0].iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            (groups.len(), names),
            (1, vec!["classifier.fc.bias", "classifier.fc.weight"])
        );
        assert!(n.part_parameters(Part::Backbone).is_empty());
        assert!(n.part_parameters(Part::Lws).is_empty());
        // Cosine from lr = 0.1 over the default 200 epochs, no lr_factor.
        assert_eq!(recipe.learning_rates(0), vec![0.1]);
        assert!((recipe.learning_rates(100)[0] - 0.05).abs() < 1e-12);
        assert!(!recipe.backbone_train());
        let line = recipe.describe();
        assert!(
            line.starts_with("recipe crt: classifier re-initialised"),
            "{line}"
        );
        assert!(line.contains("BatchNorm in eval mode"), "{line}");
    }
}
