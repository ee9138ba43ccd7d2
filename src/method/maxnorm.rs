//! MaxNorm by projected gradient descent, the constraint of weight balancing's classifier stage
//! (Alshammari et al., "Long-Tailed Recognition via Weight Balancing", CVPR 2022, §3.3, Eq. 5):
//! after every SGD step each class vector w_c of the classifier is projected back into the ball
//! ‖w_c‖₂ ≤ r.
//!
//! As the authors' `MaxNorm_via_PGD` (ShadeAlsha/LTR-weight-balancing, `utils/regularizers.py`),
//! which the paper leaves unspecified: the radius is set once, from the classifier the stage
//! starts with, as r = min_c ‖w_c‖ + t·(max_c ‖w_c‖ − min_c ‖w_c‖) (`thresh` t = 0.1 in
//! `demo2_second-stage-training.py`); rows above r are scaled to norm r, the others untouched;
//! the bias is not constrained (its threshold is ∞ there).
use tch::{Kind, Tensor};

/// The row norms ‖w_c‖₂ `[K]` of a weight `[K, F]`, in f64.
pub fn row_norms(weight: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(
        weight
            .detach()
            .to_kind(Kind::Double)
            .norm_scalaropt_dim(2, [1], false),
    )
    .unwrap_or_default()
}

/// The MaxNorm radius of the weight-balancing code: min + t·(max − min) of the row norms of
/// `weight` `[K, F]` (`setPerLayerThresh`).
pub fn radius(weight: &Tensor, t: f64) -> f64 {
    let norms = row_norms(weight);
    let min = norms.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = norms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    min + t * (max - min)
}

/// Projects each row of `weight` `[K, F]` (changed in place, without gradient) whose norm
/// exceeds `radius` onto the sphere of that radius, w_c ← w_c·r/‖w_c‖ (`PGD` with τ = 1); rows
/// within the ball keep their values bit for bit. Returns how many rows were projected.
pub fn project(weight: &Tensor, radius: f64) -> usize {
    tch::no_grad(|| {
        let norms = weight.norm_scalaropt_dim(2, [1], true);
        let over = norms.gt(radius);
        let projected = over.sum(Kind::Int64).int64_value(&[]) as usize;
        if projected > 0 {
            let scaled = weight * (norms.reciprocal() * radius);
            let kept = scaled.where_self(&over, weight);
            let _ = weight.shallow_clone().copy_(&kept);
        }
        projected
    })
}
