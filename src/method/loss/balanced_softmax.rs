//! Balanced Softmax (Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition",
//! NeurIPS 2020, Eq. 4): cross-entropy of softmax(z + log n), n the training count of each
//! class — the softmax of the balanced test distribution, trained on the long-tailed one.
//!
//! As the authors' `BalancedSoftmaxLoss` (jiawei-ren/BalancedMetaSoftmax,
//! `loss/BalancedSoftmaxLoss.py`): `logits + sample_per_class.log()`, then `F.cross_entropy`.
use super::log_counts;
use anyhow::Result;
use tch::Tensor;

/// The log-prior offsets of Balanced Softmax: log n_c for each class c.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancedSoftmax {
    /// log n_c, `[K]` (nats).
    pub offsets: Vec<f64>,
}

impl BalancedSoftmax {
    /// Balanced Softmax of the training counts `class_counts` (`[K]`).
    ///
    /// # Errors
    /// A class with no training image (log 0 has no value), named by its index.
    pub fn new(class_counts: &[usize]) -> Result<Self> {
        Ok(BalancedSoftmax {
            offsets: log_counts(class_counts, "balanced_softmax (z + log n_c)")?,
        })
    }

    /// The adjusted logits z + log n, `[B, K]`, of logits `[B, K]`.
    pub fn adjust(&self, logits: &Tensor) -> Tensor {
        logits + super::class_vector(&self.offsets, logits)
    }
}
