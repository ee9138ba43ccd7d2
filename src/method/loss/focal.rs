//! The focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, Eq. 5):
//! −(1 − p_y)^γ·log p_y, softmax over the classes.
//!
//! As LDAM-DRW's `FocalLoss` (kaidic/LDAM-DRW, `losses.py`), which the `reweight` grid of
//! that code combines with class weights: ℓ = w_y·CE, p = exp(−ℓ), loss (1 − p)^γ·ℓ averaged
//! over the batch (a plain mean, not divided by Σ w_y). Without weights this is Lin et al.'s
//! formula with α = 1; with weights the modulating factor sees exp(−w_y·CE) rather than p_y —
//! the authors' code, followed here so that `focal` + `drw` is the baseline LDAM-DRW reports.
use tch::Tensor;

/// Focal modulation of per-sample (weighted) cross-entropies `ce` `[B]`:
/// (1 − e^{−ce})^γ·ce, `[B]`. γ = 0 returns `ce` itself (the gradient of x^0 stays 0 at x = 0).
pub fn modulate(ce: &Tensor, gamma: f64) -> Tensor {
    if gamma == 0.0 {
        return ce.shallow_clone();
    }
    // 1 − e^{−ce} as −expm1(−ce): exact for the small losses of well-classified samples.
    let one_minus_p = -(-ce).expm1();
    one_minus_p.pow_tensor_scalar(gamma) * ce
}
