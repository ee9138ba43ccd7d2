//! The logit-adjusted loss (Menon et al., "Long-Tail Learning via Logit Adjustment", ICLR 2021,
//! Eq. 10): cross-entropy of softmax(z + τ·log π), π_c = n_c / N the training prior.
//!
//! As the authors' code (google-research/logit_adjustment, `main.py`:
//! `logits + tau * log(base_probs)`, the prior estimated from the training counts). With τ = 1
//! the logits differ from Balanced Softmax's by the constant −log N, which softmax removes.
use super::log_counts;
use anyhow::Result;
use tch::Tensor;

/// The offsets τ·log π_c of the logit-adjusted loss.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitAdjusted {
    /// τ ≥ 0.
    pub tau: f64,
    /// τ·log(n_c / N), `[K]` (nats).
    pub offsets: Vec<f64>,
}

impl LogitAdjusted {
    /// The loss of the training counts `class_counts` (`[K]`) with temperature `tau`.
    ///
    /// # Errors
    /// A class with no training image (log π_c = −∞), named by its index.
    pub fn new(class_counts: &[usize], tau: f64) -> Result<Self> {
        let logs = log_counts(class_counts, "logit_adjusted (z + τ·log π_c)")?;
        let log_total = (class_counts.iter().sum::<usize>() as f64).ln();
        Ok(LogitAdjusted {
            tau,
            offsets: logs.iter().map(|l| tau * (l - log_total)).collect(),
        })
    }

    /// The adjusted logits z + τ·log π, `[B, K]`, of logits `[B, K]`.
    pub fn adjust(&self, logits: &Tensor) -> Tensor {
        logits + super::class_vector(&self.offsets, logits)
    }
}
