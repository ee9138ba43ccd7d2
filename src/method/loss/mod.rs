//! The stage-1 losses of the long-tail baselines, one file each, and the one place that maps
//! the configuration (`loss`, `reweight` and their parameters) to a loss object:
//! [`StageOneLoss::for_config`].
//!
//! * `ce`: cross-entropy, the reference's stage 1 (MiSLAS §4.1);
//! * [`balanced_softmax`]: Balanced Softmax (Ren et al., NeurIPS 2020);
//! * [`logit_adjusted`]: the logit-adjusted loss (Menon et al., ICLR 2021);
//! * [`ldam`]: LDAM (Cao et al., NeurIPS 2019), on the normed classifier;
//! * [`focal`]: the focal loss (Lin et al., ICCV 2017);
//! * [`class_balanced`]: the effective-number class weights (Cui et al., CVPR 2019) and DRW,
//!   usable with `ce`, `focal` and `ldam`.
//!
//! Every loss is cross-entropy on adjusted logits with optional class weights, the focal one
//! modulated per sample; the batch loss reduces as PyTorch's `F.cross_entropy(weight=w)`
//! (Σ w_y·ℓ / Σ w_y) except the focal one (a plain mean, LDAM-DRW's `focal_loss`). With mixup
//! the trainer composes λ·L(y_a) + (1 − λ)·L(y_b) ([`crate::method::mixup::MixedBatch::loss_with`]).
pub mod balanced_softmax;
pub mod class_balanced;
pub mod focal;
pub mod ldam;
pub mod logit_adjusted;

use crate::config::{Config, Reweight, StageOneLossName};
use crate::model::NORMED_SCALE;
use anyhow::{bail, Result};
use class_balanced::ClassWeights;
use tch::{Reduction, Tensor};

/// The formula of a stage-1 loss: how it adjusts the logits before cross-entropy.
#[derive(Debug, Clone, PartialEq)]
pub enum Formula {
    /// Plain cross-entropy.
    CrossEntropy,
    /// z + log n_c.
    BalancedSoftmax(balanced_softmax::BalancedSoftmax),
    /// z + τ·log π_c.
    LogitAdjusted(logit_adjusted::LogitAdjusted),
    /// z − s·Δ_y·e_y on s·cos logits.
    Ldam(ldam::Ldam),
    /// (1 − e^{−ℓ})^γ·ℓ on the (weighted) cross-entropy ℓ.
    Focal {
        /// γ ≥ 0.
        gamma: f64,
    },
}

/// A stage-1 loss: its formula and its class weights over the epochs.
#[derive(Debug, Clone, PartialEq)]
pub struct StageOneLoss {
    /// What the loss does to the logits.
    pub formula: Formula,
    /// The class weights of each epoch (`reweight`).
    pub weights: ClassWeights,
}

impl StageOneLoss {
    /// The loss of a configuration's `loss`, `reweight`, `la_tau`, `focal_gamma`, `cb_beta` and
    /// `drw_epoch`, for the training counts `class_counts` (`[K]`, by class index). The one
    /// mapping from the configuration's loss names to loss objects.
    ///
    /// # Errors
    /// A class with no training image under a loss that needs n_c > 0 (all but `ce` and
    /// `focal` without re-weighting), and the configuration errors of [`Config::validate`]
    /// (a negative τ or γ, β outside [0, 1), re-weighting with a prior-corrected loss).
    pub fn for_config(cfg: &Config, class_counts: &[usize]) -> Result<Self> {
        let formula = match cfg.loss {
            StageOneLossName::Ce => Formula::CrossEntropy,
            StageOneLossName::BalancedSoftmax => {
                Formula::BalancedSoftmax(balanced_softmax::BalancedSoftmax::new(class_counts)?)
            }
            StageOneLossName::LogitAdjusted => {
                check_non_negative(cfg.la_tau, "la_tau", "τ")?;
                Formula::LogitAdjusted(logit_adjusted::LogitAdjusted::new(
                    class_counts,
                    cfg.la_tau,
                )?)
            }
            StageOneLossName::Ldam => Formula::Ldam(ldam::Ldam::new(
                class_counts,
                ldam::MAX_MARGIN,
                NORMED_SCALE,
            )?),
            StageOneLossName::Focal => {
                check_non_negative(cfg.focal_gamma, "focal_gamma", "γ")?;
                Formula::Focal {
                    gamma: cfg.focal_gamma,
                }
            }
        };
        let prior = matches!(
            formula,
            Formula::BalancedSoftmax(_) | Formula::LogitAdjusted(_)
        );
        if prior && cfg.reweight != Reweight::None {
            bail!(
                "reweight {}: loss {} already corrects for the class prior; re-weighting \
                 applies to ce, focal and ldam",
                cfg.reweight,
                cfg.loss
            );
        }
        Ok(StageOneLoss {
            formula,
            weights: weights_for(cfg, class_counts)?,
        })
    }

    /// Per-sample losses `[B]` (nats) of logits `[B, K]` and targets `[B]` int64 during 0-based
    /// `epoch`: w_y·CE(adjusted z, y), focal-modulated for `focal` (`reduction='none'`).
    pub fn per_sample(&self, logits: &Tensor, targets: &Tensor, epoch: usize) -> Tensor {
        let z = self.adjusted_logits(logits, targets);
        let w = self.weights.at(epoch).map(|w| class_vector(w, logits));
        let ce = z.cross_entropy_loss(targets, w.as_ref(), Reduction::None, -100, 0.0);
        match self.formula {
            Formula::Focal { gamma } => focal::modulate(&ce, gamma),
            _ => ce,
        }
    }

    /// The batch loss (a scalar, nats, carrying the graph) of logits `[B, K]` and targets `[B]`
    /// during 0-based `epoch`: Σ w_y·ℓ / Σ w_y (the mean without weights), as
    /// `F.cross_entropy(weight=w)`; the focal loss's plain mean (LDAM-DRW's `focal_loss`).
    pub fn batch_loss(&self, logits: &Tensor, targets: &Tensor, epoch: usize) -> Tensor {
        if let Formula::Focal { .. } = self.formula {
            let terms = self.per_sample(logits, targets, epoch);
            return terms.mean(terms.kind());
        }
        let z = self.adjusted_logits(logits, targets);
        let w = self.weights.at(epoch).map(|w| class_vector(w, logits));
        z.cross_entropy_loss(targets, w.as_ref(), Reduction::Mean, -100, 0.0)
    }

    /// The logits the cross-entropy sees, `[B, K]`.
    fn adjusted_logits(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        match &self.formula {
            Formula::CrossEntropy | Formula::Focal { .. } => logits.shallow_clone(),
            Formula::BalancedSoftmax(b) => b.adjust(logits),
            Formula::LogitAdjusted(l) => l.adjust(logits),
            Formula::Ldam(l) => l.adjust(logits, targets),
        }
    }

    /// The loss in words for the recipe's log line: "LDAM (largest margin 0.5, s = 30) with
    /// DRW (β = 0.9999 from epoch 160)".
    pub fn describe(&self, cfg: &Config) -> String {
        let formula = match &self.formula {
            Formula::CrossEntropy => "cross-entropy".to_owned(),
            Formula::BalancedSoftmax(_) => "Balanced Softmax (z + log n_c)".to_owned(),
            Formula::LogitAdjusted(l) => format!("logit-adjusted loss (z + {}·log π_c)", l.tau),
            Formula::Ldam(l) => format!(
                "LDAM (margins C/n_c^(1/4), largest {}, s = {})",
                ldam::MAX_MARGIN,
                l.scale
            ),
            Formula::Focal { gamma } => format!("focal loss (γ = {gamma})"),
        };
        let weights = match &self.weights {
            ClassWeights::None => String::new(),
            ClassWeights::Always(_) => {
                format!(" with class-balanced weights (β = {})", cfg.cb_beta)
            }
            ClassWeights::Deferred { from, .. } => format!(
                " with DRW (class-balanced weights, β = {}, from epoch {from})",
                cfg.cb_beta
            ),
        };
        format!("{formula}{weights}")
    }
}

/// The class weights of `reweight`.
fn weights_for(cfg: &Config, class_counts: &[usize]) -> Result<ClassWeights> {
    if cfg.reweight == Reweight::None {
        return Ok(ClassWeights::None);
    }
    if !(0.0..1.0).contains(&cfg.cb_beta) {
        bail!(
            "cb_beta: the effective number's β must be in [0, 1), is {}",
            cfg.cb_beta
        );
    }
    let weights = class_balanced::effective_number_weights(class_counts, cfg.cb_beta)?;
    Ok(match cfg.reweight {
        Reweight::Cb => ClassWeights::Always(weights),
        Reweight::Drw => {
            if cfg.drw_epoch >= cfg.num_epochs {
                bail!(
                    "drw_epoch {} is past the stage's last epoch {} (num_epochs {}): DRW would \
                     never switch on",
                    cfg.drw_epoch,
                    cfg.num_epochs.saturating_sub(1),
                    cfg.num_epochs
                );
            }
            ClassWeights::Deferred {
                from: cfg.drw_epoch,
                weights,
            }
        }
        Reweight::None => ClassWeights::None,
    })
}

/// An error naming `key` when `v` is negative or not a number.
fn check_non_negative(v: f64, key: &str, symbol: &str) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{key}: {symbol} must be a number ≥ 0, is {v}");
    }
    Ok(())
}

/// log n_c of each class, for a loss described as `what`.
///
/// # Errors
/// A class with no training image, named by its index.
pub(crate) fn log_counts(class_counts: &[usize], what: &str) -> Result<Vec<f64>> {
    if let Some(c) = class_counts.iter().position(|&n| n == 0) {
        bail!(
            "loss {what}: class {c} has no training image, so log n_c = −∞; every class needs \
             at least one training image"
        );
    }
    Ok(class_counts.iter().map(|&n| (n as f64).ln()).collect())
}

/// A per-class vector `[K]` on the device and in the float kind of `like`.
pub(crate) fn class_vector(values: &[f64], like: &Tensor) -> Tensor {
    Tensor::from_slice(values)
        .to_kind(like.kind())
        .to_device(like.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassifierKind;

    fn cfg(loss: StageOneLossName, reweight: Reweight) -> Config {
        Config {
            loss,
            reweight,
            classifier: ClassifierKind::Normed,
            cb_beta: 0.5,
            drw_epoch: 4,
            num_epochs: 6,
            ..Config::default()
        }
    }

    /// By hand, β = 0.5, n = [3, 1]: ŵ = [0.5/0.875, 0.5/0.5] = [4/7, 1], scaled to sum 2:
    /// [8/11, 14/11]. β = 0 gives ones.
    #[test]
    fn effective_number_weights_by_hand() {
        let w = class_balanced::effective_number_weights(&[3, 1], 0.5).unwrap();
        assert!((w[0] - 8.0 / 11.0).abs() < 1e-15 && (w[1] - 14.0 / 11.0).abs() < 1e-15);
        let ones = class_balanced::effective_number_weights(&[7, 2, 1], 0.0).unwrap();
        assert_eq!(ones, vec![1.0, 1.0, 1.0]);
    }

    /// DRW: no weights before `drw_epoch`, the class-balanced ones from it on; `cb` always.
    #[test]
    fn drw_switches_on_at_its_epoch() {
        let counts = [3, 1];
        let drw =
            StageOneLoss::for_config(&cfg(StageOneLossName::Ldam, Reweight::Drw), &counts).unwrap();
        let want = [8.0 / 11.0, 14.0 / 11.0];
        for epoch in 0..4 {
            assert_eq!(drw.weights.at(epoch), None, "epoch {epoch}");
        }
        for epoch in 4..6 {
            let w = drw.weights.at(epoch).unwrap();
            assert!((w[0] - want[0]).abs() < 1e-15 && (w[1] - want[1]).abs() < 1e-15);
        }
        let cb =
            StageOneLoss::for_config(&cfg(StageOneLossName::Ce, Reweight::Cb), &counts).unwrap();
        assert!(cb.weights.at(0).is_some());
        let none =
            StageOneLoss::for_config(&cfg(StageOneLossName::Ce, Reweight::None), &counts).unwrap();
        assert_eq!(none.weights, ClassWeights::None);
        // Past the last epoch: an error, not a DRW that never happens.
        let mut late = cfg(StageOneLossName::Ce, Reweight::Drw);
        late.drw_epoch = 6;
        let e = StageOneLoss::for_config(&late, &counts)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("drw_epoch 6 is past the stage's last epoch 5"),
            "{e}"
        );
    }

    /// LDAM's margins by hand: 1/n^{1/4} for n = [16, 1] is [1/2, 1], scaled to a largest 0.5.
    #[test]
    fn ldam_margins_by_hand() {
        let l = ldam::Ldam::new(&[16, 1], ldam::MAX_MARGIN, 30.0).unwrap();
        assert_eq!(l.margins, vec![0.25, 0.5]);
    }

    /// A class with no training image is an error naming it, never a NaN, under every loss
    /// that needs n_c > 0; `ce` and `focal` without weights do not need it.
    #[test]
    fn a_class_without_images_is_named() {
        let counts = [10, 0, 3];
        for (loss, reweight, words) in [
            (StageOneLossName::Ldam, Reweight::None, "loss ldam: class 1"),
            (StageOneLossName::BalancedSoftmax, Reweight::None, "class 1"),
            (StageOneLossName::LogitAdjusted, Reweight::None, "class 1"),
            (
                StageOneLossName::Ce,
                Reweight::Cb,
                "class-balanced weights: class 1",
            ),
            (
                StageOneLossName::Focal,
                Reweight::Drw,
                "class-balanced weights: class 1",
            ),
        ] {
            let e = StageOneLoss::for_config(&cfg(loss, reweight), &counts)
                .unwrap_err()
                .to_string();
            assert!(e.contains(words) && e.contains("no training image"), "{e}");
        }
        for loss in [StageOneLossName::Ce, StageOneLossName::Focal] {
            assert!(StageOneLoss::for_config(&cfg(loss, Reweight::None), &counts).is_ok());
        }
    }

    /// Bad values reach the loss as errors naming the key, whatever skipped validation.
    #[test]
    fn bad_parameters_are_errors() {
        let counts = [4, 2];
        let mut c = cfg(StageOneLossName::LogitAdjusted, Reweight::None);
        c.la_tau = -1.0;
        let e = StageOneLoss::for_config(&c, &counts)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("la_tau: τ must be a number ≥ 0"), "{e}");
        let mut c = cfg(StageOneLossName::Focal, Reweight::None);
        c.focal_gamma = f64::NAN;
        let e = StageOneLoss::for_config(&c, &counts)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("focal_gamma: γ"), "{e}");
        let mut c = cfg(StageOneLossName::Ce, Reweight::Cb);
        c.cb_beta = 1.0;
        let e = StageOneLoss::for_config(&c, &counts)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cb_beta"), "{e}");
        let c = cfg(StageOneLossName::BalancedSoftmax, Reweight::Drw);
        let e = StageOneLoss::for_config(&c, &counts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already corrects for the class prior"), "{e}");
    }

    /// Balanced Softmax and logit adjustment with τ = 1 differ by a constant offset, so their
    /// per-sample losses agree (Menon et al. §4 remark).
    #[test]
    fn logit_adjustment_at_tau_one_is_balanced_softmax() {
        let counts = [50, 5, 1];
        let z = Tensor::from_slice(&[1.0f64, -2.0, 0.5, 0.0, 3.0, -1.0]).view([2, 3]);
        let y = Tensor::from_slice(&[2i64, 0]);
        let mut c = cfg(StageOneLossName::LogitAdjusted, Reweight::None);
        c.la_tau = 1.0;
        let la = StageOneLoss::for_config(&c, &counts).unwrap();
        c.loss = StageOneLossName::BalancedSoftmax;
        let bs = StageOneLoss::for_config(&c, &counts).unwrap();
        let d = (la.per_sample(&z, &y, 0) - bs.per_sample(&z, &y, 0))
            .abs()
            .max();
        assert!(d.double_value(&[]) < 1e-12);
    }
}
