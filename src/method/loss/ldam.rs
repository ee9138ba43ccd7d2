//! LDAM, the label-distribution-aware margin loss (Cao et al., "Learning Imbalanced Datasets
//! with Label-Distribution-Aware Margin Loss", NeurIPS 2019, Eq. 13): cross-entropy of
//! softmax(s·(cos − Δ_y·e_y)), margins Δ_c = C / n_c^{1/4}.
//!
//! As the authors' `LDAMLoss` (kaidic/LDAM-DRW, `losses.py`): C is chosen so that the largest
//! margin (the rarest class's) is `max_m` = 0.5, s = 30, and the logits are the cosines of
//! `NormedLinear`. Here the normed classifier already outputs s·cos
//! ([`crate::model::NORMED_SCALE`]), so the margin enters as s·Δ_y: s·cos − s·Δ_y =
//! s·(cos − Δ_y), the authors' `F.cross_entropy(self.s * output, target, weight)` exactly.
use anyhow::{bail, Result};
use tch::Tensor;

/// The largest margin of LDAM-DRW's code (`max_m=0.5`).
pub const MAX_MARGIN: f64 = 0.5;

/// LDAM's per-class margins and scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Ldam {
    /// Δ_c = max_m · (n_min / n_c)^{1/4}, `[K]` (cosine units).
    pub margins: Vec<f64>,
    /// The scale s of the cosine logits (30).
    pub scale: f64,
}

impl Ldam {
    /// LDAM of the training counts `class_counts` (`[K]`), largest margin `max_m`, logits of
    /// scale `scale`.
    ///
    /// # Errors
    /// A class with no training image (its margin 1/0^{1/4} has no value), named by its index.
    pub fn new(class_counts: &[usize], max_m: f64, scale: f64) -> Result<Self> {
        if let Some(c) = class_counts.iter().position(|&n| n == 0) {
            bail!(
                "loss ldam: class {c} has no training image, and its margin C/n_c^(1/4) has no \
                 value; every class needs at least one training image"
            );
        }
        let raw: Vec<f64> = class_counts
            .iter()
            .map(|&n| 1.0 / (n as f64).sqrt().sqrt())
            .collect();
        let largest = raw.iter().cloned().fold(0.0f64, f64::max);
        Ok(Ldam {
            margins: raw.iter().map(|m| m * max_m / largest).collect(),
            scale,
        })
    }

    /// The logits with the target's margin taken off, z − s·Δ_y·e_y, `[B, K]`, of logits
    /// `[B, K]` (s·cos) and targets `[B]` int64.
    pub fn adjust(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        let margins = super::class_vector(&self.margins, logits);
        let batch_m = margins.index_select(0, targets).unsqueeze(1) * self.scale;
        let k = logits.size()[1];
        let onehot = targets.one_hot(k).to_kind(logits.kind());
        logits - onehot * batch_m
    }
}
