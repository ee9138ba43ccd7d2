//! Weight balancing's classifier stage (Alshammari et al., "Long-Tailed Recognition via Weight
//! Balancing", CVPR 2022, §3.3): on the frozen stage-1 backbone the stage-1 classifier is
//! trained further with a class-balanced loss, weight decay (`weight_decay`, 0.1 in the
//! authors' demo) and MaxNorm ([`crate::method::maxnorm`]: every class vector projected into a
//! norm ball after each step). Its stage 1 is cross-entropy with a larger weight decay: a preset,
//! not a recipe.
//!
//! As the authors' `demo2_second-stage-training.py` (ShadeAlsha/LTR-weight-balancing), where it
//! is more specific than the paper:
//! * the loss is their `CB_loss(…, "softmax", β = 0.9999)`, the port of Cui et al.'s loss they
//!   ship (`utils/class_balanced_loss.py`): binary cross-entropy between softmax(z) and the
//!   one-hot target over all K outputs, each sample weighted by its class's effective-number
//!   weight, averaged over the B·K terms ([`class_balanced_bce`]). Followed as published, since
//!   it is what produced their numbers, though Cui et al.'s softmax loss is a weighted
//!   cross-entropy;
//! * the classifier continues from stage 1 (not re-drawn), weight and bias trained, the bias
//!   not constrained;
//! * batches are the plain shuffled loader's (instance-balanced), the learning rate cosine over
//!   the epochs (`CosineAnnealingLR`, η_min = 0, stepped per epoch);
//! * MaxNorm's radius is set once from the starting classifier, r = min + t·(max − min) of its
//!   class-vector norms (`maxnorm_thresh` t = 0.1).
//!
//! r is kept in the run's checkpoints (`optim.recipe.maxnorm_radius`, [`StageRecipe::state`]), so
//! a resumed run bounds its classifier by the same r as the uninterrupted one. A checkpoint
//! written before r was kept resumes with the largest class norm of its classifier.
use super::mixup::InstanceBalanced;
use super::{EpochStream, StageRecipe, Start};
use crate::config::{Config, Stage};
use crate::engine::step::Objective;
use crate::method::loss::class_balanced::effective_number_weights;
use crate::method::loss::class_vector;
use crate::method::{maxnorm, mixup::MixedBatch, schedule};
use crate::model::{Network, Part};
use anyhow::{bail, Result};
use std::sync::Mutex;
use tch::{Kind, Tensor};

/// The weight-balancing code's class-balanced loss of logits `[B, K]` and targets `[B]` int64:
/// the mean over b, k of −w_{y_b}·[t_bk·log p_bk + (1 − t_bk)·log(1 − p_bk)], p = softmax(z),
/// t the one-hot target, each log clamped at −100 (`F.binary_cross_entropy(softmax, one_hot,
/// weight)`, which PyTorch clamps so), `class_weights` `[K]` the effective-number weights
/// summing to K. Written out rather than through libtorch's `binary_cross_entropy`, which
/// refuses to run under fp16 autocast (`amp`); half-precision logits are taken to f32. A scalar
/// (nats) carrying the graph.
pub fn class_balanced_bce(logits: &Tensor, targets: &Tensor, class_weights: &[f64]) -> Tensor {
    let kind = match logits.kind() {
        Kind::Double => Kind::Double,
        _ => Kind::Float,
    };
    let z = logits.to_kind(kind);
    let k = z.size()[1];
    let log_p = z.log_softmax(1, kind).clamp_min(-100.0);
    let log_not_p = (-z.softmax(1, kind)).log1p().clamp_min(-100.0);
    let onehot = targets.one_hot(k).to_kind(kind);
    let w = class_vector(class_weights, &z)
        .index_select(0, targets)
        .unsqueeze(1);
    let terms = (&onehot * log_p + (-&onehot + 1.0) * log_not_p) * w;
    -terms.mean(kind)
}

/// [`class_balanced_bce`] on the LWS-scaled logits of features computed without gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassBalancedBce {
    /// Effective-number weights `[K]`, summing to K.
    pub class_weights: Vec<f64>,
}

impl Objective for ClassBalancedBce {
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
        let loss = batch.loss_with(|y| class_balanced_bce(&logits, y, &self.class_weights));
        (logits, loss)
    }
}

/// Weight balancing's classifier stage.
#[derive(Debug)]
pub struct WbRecipe {
    loss: ClassBalancedBce,
    beta: f64,
    weight_decay: f64,
    thresh: f64,
    /// MaxNorm's radius, set by [`StageRecipe::prepare_network`].
    radius: Mutex<Option<f64>>,
    lr: f64,
    num_epochs: usize,
    stream: InstanceBalanced,
    shift_bn: bool,
    unused_stage1: String,
}

impl WbRecipe {
    /// The recipe of a stage-2 configuration (`cb_beta`, `maxnorm_thresh`, `weight_decay`, `lr`,
    /// `num_epochs`); `class_counts` are the training counts the class weights follow.
    ///
    /// # Errors
    /// A class without training images, β outside [0, 1), or the normed classifier (whose
    /// class vectors are normalised in the forward pass, so that MaxNorm has nothing to bound).
    pub fn new(cfg: &Config, class_counts: &[usize]) -> Result<Self> {
        if cfg.classifier == crate::config::ClassifierKind::Normed {
            bail!(
                "recipe wb bounds the norms of the classifier's class vectors, which the normed \
                 classifier (loss ldam) divides out: use wb on a stage 1 with classifier linear"
            );
        }
        if !(0.0..1.0).contains(&cfg.cb_beta) {
            bail!(
                "cb_beta: the effective number's β must be in [0, 1), is {}",
                cfg.cb_beta
            );
        }
        Ok(WbRecipe {
            loss: ClassBalancedBce {
                class_weights: effective_number_weights(class_counts, cfg.cb_beta)?,
            },
            beta: cfg.cb_beta,
            weight_decay: cfg.weight_decay,
            thresh: cfg.maxnorm_thresh,
            radius: Mutex::new(None),
            lr: cfg.lr,
            num_epochs: cfg.num_epochs,
            stream: InstanceBalanced::of(cfg),
            shift_bn: cfg.shift_bn,
            unused_stage1: super::unused_stage1_keys(cfg),
        })
    }

    /// MaxNorm's radius, once [`StageRecipe::prepare_network`] has set it.
    pub fn radius(&self) -> Option<f64> {
        *self.radius.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The classifier's weight `[K, F]` (`classifier.fc.weight`).
fn classifier_weight(net: &Network) -> Option<Tensor> {
    net.part_variables(Part::Classifier)
        .into_iter()
        .find(|(name, _)| name.ends_with(".weight"))
        .map(|(_, t)| t)
}

/// The name of MaxNorm's radius r (a one-element f64 tensor) in the recipe's checkpoint state.
const RADIUS_STATE: &str = "maxnorm_radius";

impl StageRecipe for WbRecipe {
    fn stage(&self) -> Stage {
        Stage::Stage2
    }

    fn objective(&self) -> &dyn Objective {
        &self.loss
    }

    fn prepare_network(&self, net: &mut Network, start: Start) -> Result<()> {
        net.freeze_backbone();
        net.freeze(Part::Lws);
        let Some(weight) = classifier_weight(net) else {
            bail!("recipe wb: the network has no classifier weight to bound");
        };
        let r = match start {
            Start::Continuing => maxnorm::row_norms(&weight)
                .into_iter()
                .fold(f64::NEG_INFINITY, f64::max),
            Start::Fresh | Start::FromCheckpoint => maxnorm::radius(&weight, self.thresh),
        };
        *self.radius.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        Ok(())
    }

    fn parameter_groups(&self, net: &Network) -> Vec<Vec<(String, Tensor)>> {
        vec![net.part_parameters(Part::Classifier)]
    }

    fn learning_rates(&self, epoch: usize) -> Vec<f64> {
        vec![schedule::stage2_lr(self.lr, epoch, self.num_epochs)]
    }

    fn stream(&self) -> &dyn EpochStream {
        &self.stream
    }

    fn backbone_train(&self) -> bool {
        self.shift_bn
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.radius()
            .map(|r| vec![(RADIUS_STATE.to_owned(), Tensor::from_slice(&[r]))])
            .unwrap_or_default()
    }

    fn load_state(&self, state: &[(String, Tensor)]) -> Result<(), String> {
        for (name, t) in state {
            if name != RADIUS_STATE || t.numel() != 1 {
                return Err(format!(
                    "recipe state '{name}' is not weight balancing's MaxNorm radius"
                ));
            }
            let r = t.to_kind(Kind::Double).double_value(&[0]);
            *self.radius.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
        Ok(())
    }

    fn after_step(&self, net: &Network) {
        if let (Some(r), Some(weight)) = (self.radius(), classifier_weight(net)) {
            maxnorm::project(&weight, r);
        }
    }

    fn describe(&self) -> String {
        let radius = self
            .radius()
            .map_or(String::new(), |r| format!(" = {r:.4}"));
        format!(
            "recipe wb: classifier (weight and bias, from stage 1) trained with the \
             class-balanced loss (β = {}, softmax + binary cross-entropy as the weight-balancing \
             code), weight decay {} and MaxNorm (class vectors projected into the ball of radius \
             min + {}·(max − min) of their starting norms{radius}) after every step, on \
             instance-balanced batches; backbone frozen, {}; LWS scales fixed at 1; smooth_head, \
             smooth_tail and lr_factor are not used{}",
            self.beta,
            self.weight_decay,
            self.thresh,
            super::crt::bn_words(self.shift_bn),
            self.unused_stage1
        )
    }

    fn missing_checkpoint(&self) -> Option<&'static str> {
        Some(super::class_aware::NEEDS_STAGE1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassifierRecipe;
    use tch::Device;

    fn cfg() -> Config {
        Config {
            mode: Some(Stage::Stage2),
            recipe: ClassifierRecipe::Wb,
            num_classes: 10,
            maxnorm_thresh: 0.1,
            ..Config::default()
        }
    }

    /// The radius is min + 0.1·(max − min) of the stage-1 class norms; after a step that grows
    /// the classifier, `after_step` leaves no class vector above it and the bias as it was.
    #[test]
    fn maxnorm_after_every_step() {
        let counts = [500, 300, 200, 100, 60, 40, 20, 10, 8, 5];
        let recipe = WbRecipe::new(&cfg(), &counts).unwrap();
        tch::manual_seed(0);
        let mut net = Network::new("resnet32_fe", 1, 10, Device::Cpu).unwrap();
        let weight = classifier_weight(&net).unwrap();
        let norms = maxnorm::row_norms(&weight);
        let (lo, hi) = norms
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), n| (a.min(*n), b.max(*n)));
        recipe
            .prepare_network(&mut net, Start::FromCheckpoint)
            .unwrap();
        let r = recipe.radius().unwrap();
        assert!((r - (lo + 0.1 * (hi - lo))).abs() < 1e-12, "{r}");
        tch::no_grad(|| {
            let _ = weight.shallow_clone().g_mul_scalar_(3.0);
        });
        let bias = net.part_variables(Part::Classifier)[0].1.copy();
        recipe.after_step(&net);
        assert!(maxnorm::row_norms(&weight)
            .iter()
            .all(|n| *n <= r * (1.0 + 1e-6)));
        assert!(net.part_variables(Part::Classifier)[0].1.equal(&bias));
        // Only the classifier trains, weight and bias; the backbone and LWS are frozen.
        let names: Vec<String> = recipe.parameter_groups(&net)[0]
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(names, ["classifier.fc.bias", "classifier.fc.weight"]);
        let line = recipe.describe();
        assert!(line.starts_with("recipe wb: classifier"), "{line}");
        assert!(line.contains(&format!("= {r:.4}")), "{line}");
    }

    /// The radius travels in the recipe's checkpoint state: a resumed run (whose classifier's
    /// largest norm is no longer r) bounds by the same r; a state not its own is refused.
    #[test]
    fn a_resumed_run_keeps_its_radius() {
        let counts = [500, 300, 200, 100, 60, 40, 20, 10, 8, 5];
        let first = WbRecipe::new(&cfg(), &counts).unwrap();
        tch::manual_seed(0);
        let mut net = Network::new("resnet32_fe", 1, 10, Device::Cpu).unwrap();
        first
            .prepare_network(&mut net, Start::FromCheckpoint)
            .unwrap();
        let r = first.radius().unwrap();
        let state = first.state();
        assert_eq!(state.len(), 1);
        // Weight decay shrank every row below r since the last projection.
        let weight = classifier_weight(&net).unwrap();
        tch::no_grad(|| {
            let _ = weight.shallow_clone().g_mul_scalar_(0.01);
        });
        let resumed = WbRecipe::new(&cfg(), &counts).unwrap();
        resumed
            .prepare_network(&mut net, Start::Continuing)
            .unwrap();
        assert!(resumed.radius().unwrap() < r * 0.5);
        resumed.load_state(&state).unwrap();
        assert_eq!(resumed.radius(), Some(r));
        let other = vec![("lws_scale".to_owned(), Tensor::from_slice(&[1.0f64]))];
        let e = resumed.load_state(&other).unwrap_err();
        assert!(e.contains("'lws_scale'"), "{e}");
    }

    /// The class-balanced loss by hand: K = 2, z = [0, 0] (p = ½, ½), target 0, weights
    /// [w0, w1]: −w0·(log ½ + log ½)/2 = w0·ln 2.
    #[test]
    fn class_balanced_bce_by_hand() {
        let z = Tensor::zeros([1, 2], (Kind::Double, Device::Cpu));
        let l = class_balanced_bce(&z, &Tensor::from_slice(&[0i64]), &[0.4, 1.6]);
        assert!((l.double_value(&[]) - 0.4 * 2f64.ln()).abs() < 1e-15);
    }

    /// Refusals in words: the normed classifier, a class without images, β = 1.
    #[test]
    fn bad_input_is_refused() {
        let mut c = cfg();
        c.classifier = crate::config::ClassifierKind::Normed;
        let e = WbRecipe::new(&c, &[5, 3]).unwrap_err().to_string();
        assert!(e.contains("classifier linear"), "{e}");
        let e = WbRecipe::new(&cfg(), &[5, 0]).unwrap_err().to_string();
        assert!(e.contains("class 1 has no training image"), "{e}");
        let mut c = cfg();
        c.cb_beta = 1.0;
        assert!(WbRecipe::new(&c, &[5, 3]).is_err());
    }
}
