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
            weight.shallow_clone().copy_(&kept);
        }
        projected
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand: norms 5, 1, 1 and t = 0.5 give r = 1 + 0.5·4 = 3; the first row becomes
    /// [3, 4]·3/5 = [1.8, 2.4], the others keep their values.
    #[test]
    fn projection_by_hand() {
        let w = Tensor::from_slice(&[3.0f64, 4.0, 0.6, 0.8, 0.0, 1.0]).view([3, 2]);
        let r = radius(&w, 0.5);
        assert!((r - 3.0).abs() < 1e-15);
        assert_eq!(project(&w, r), 1);
        let got = Vec::<f64>::try_from(w.view([-1])).unwrap();
        assert!((got[0] - 1.8).abs() < 1e-15 && (got[1] - 2.4).abs() < 1e-15);
        assert_eq!(&got[2..], &[0.6, 0.8, 0.0, 1.0]);
    }

    /// After a step that pushes rows out of the ball, no row's norm is above the radius, and the
    /// rows that were inside keep their values bit for bit.
    #[test]
    fn no_row_above_the_radius_after_a_step() {
        tch::manual_seed(3);
        let w = Tensor::randn([40, 16], (Kind::Float, tch::Device::Cpu));
        let r = radius(&w, 0.1);
        let step = Tensor::randn([40, 16], (Kind::Float, tch::Device::Cpu)) * 0.5;
        let _ = w.shallow_clone().g_add_(&step);
        // Ten rows shrunk well inside the ball.
        let _ = w.narrow(0, 0, 10).g_mul_scalar_(0.02);
        let before = w.copy();
        let norms_before = row_norms(&w);
        let inside: Vec<usize> = (0..40).filter(|&i| norms_before[i] <= r).collect();
        let outside = 40 - inside.len();
        assert!(outside > 20 && inside.len() >= 10, "{outside} rows outside");
        assert_eq!(project(&w, r), outside);
        for (i, n) in row_norms(&w).iter().enumerate() {
            assert!(*n <= r * (1.0 + 1e-6), "row {i}: {n} > {r}");
            if inside.contains(&i) {
                assert!(
                    w.get(i as i64).equal(&before.get(i as i64)),
                    "row {i} changed"
                );
            } else {
                assert!((n - r).abs() < 1e-5 * r, "row {i}: {n} vs {r}");
            }
        }
    }
}
