//! Class-balanced re-weighting by the effective number of samples (Cui et al., "Class-Balanced
//! Loss Based on Effective Number of Samples", CVPR 2019, Eq. 3 and §4): class c weighs
//! (1 − β)/(1 − β^{n_c}), the weights scaled to sum to K; and DRW, deferred re-weighting (Cao et
//! al., NeurIPS 2019, §3.2), which applies those weights only from a given epoch on.
//!
//! As LDAM-DRW's `cifar_train.py` (`train_rule` `Reweight` and `DRW`): `per_cls_weights =
//! (1 − β)/(1 − β^n) / Σ · K`, and for DRW `betas = [0, 0.9999]` indexed by `epoch // 160`, i.e.
//! weights of one (β = 0) before 0-based epoch 160 and the β weights from it on. The weights
//! enter `nn.CrossEntropyLoss(weight=…)`, whose mean is Σ w_y·ℓ / Σ w_y (see
//! [`super::StageOneLoss::batch_loss`]).
use anyhow::{bail, Result};

/// The class-balanced weights of `class_counts` (`[K]`) for β in [0, 1):
/// K·ŵ_c/Σ ŵ with ŵ_c = (1 − β)/(1 − β^{n_c}). β = 0 gives weights of one.
///
/// # Errors
/// A class with no training image (1 − β^0 = 0: its weight has no value), named by its index.
pub fn effective_number_weights(class_counts: &[usize], beta: f64) -> Result<Vec<f64>> {
    if let Some(c) = class_counts.iter().position(|&n| n == 0) {
        bail!(
            "class-balanced weights: class {c} has no training image, and its weight \
             (1 − β)/(1 − β^n_c) has no value at n_c = 0; every class needs at least one image"
        );
    }
    let raw: Vec<f64> = class_counts
        .iter()
        .map(|&n| (1.0 - beta) / (1.0 - beta.powf(n as f64)))
        .collect();
    let total: f64 = raw.iter().sum();
    let k = class_counts.len() as f64;
    Ok(raw.iter().map(|w| w / total * k).collect())
}

/// The class weights of a stage-1 loss over its epochs.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassWeights {
    /// Every class weighs one.
    None,
    /// The class-balanced weights `[K]` from the first epoch (`reweight cb`).
    Always(Vec<f64>),
    /// DRW: weights of one before 0-based epoch `from`, the class-balanced `weights` from it on.
    Deferred {
        /// The first 0-based epoch with the class-balanced weights.
        from: usize,
        /// The class-balanced weights `[K]`.
        weights: Vec<f64>,
    },
}

impl ClassWeights {
    /// The weights in force during 0-based `epoch`; `None` when every class weighs one.
    pub fn at(&self, epoch: usize) -> Option<&[f64]> {
        match self {
            ClassWeights::None => None,
            ClassWeights::Always(w) => Some(w),
            ClassWeights::Deferred { from, weights } => (epoch >= *from).then_some(weights),
        }
    }
}
