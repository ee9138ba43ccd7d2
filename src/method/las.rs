//! Label-aware smoothing (LAS), MiSLAS §4.2 (Zhong et al., CVPR 2021), as the reference's
//! `LabelAwareSmoothing` (`methods.py` of the MiSLAS release): label smoothing whose factor ε_y
//! grows with the training count of the true class, so that over-confident head classes are
//! smoothed more than tail classes.
use crate::config::LasShape;
use std::f64::consts::PI;
use tch::{Device, Kind, Tensor};

/// The smoothing factor ε_c of every class (MiSLAS Eq. 6 and its variants in the reference).
///
/// With n_1 = max count, n_K = min count and r_c = (n_c − n_K)/(n_1 − n_K) ∈ [0, 1]:
/// * concave (the paper's): ε_c = ε_tail + (ε_head − ε_tail)·sin(π·r_c/2);
/// * linear: ε_c = ε_tail + (ε_head − ε_tail)·r_c;
/// * convex: ε_c = ε_head + (ε_head − ε_tail)·sin(3π/2 + π·r_c/2);
/// * exp: ε_c = ε_tail + (ε_head − ε_tail)·r_c^p with p = `power`.
///
/// Every shape gives ε_tail to the rarest class and ε_head to the most frequent. A balanced
/// set (n_1 = n_K, where the reference divides 0 by 0) has every class both head and tail: all
/// get ε_head, i.e. plain label smoothing with ε_head.
///
/// * `class_counts`: training images of each class (any order), length K ≥ 1.
/// * `smooth_head`, `smooth_tail`: ε_head and ε_tail, each in [0, 1].
/// * `power`: p of the `exp` shape, finite and > 0; ignored by the other shapes (as the
///   reference ignores it).
///
/// # Errors
/// A message when `class_counts` is empty, ε_head or ε_tail is outside [0, 1], or the `exp`
/// shape has no power or a power that is not a positive finite number (the reference leaves
/// `self.smooth` undefined then).
pub fn las_epsilons(
    class_counts: &[usize],
    smooth_head: f64,
    smooth_tail: f64,
    shape: LasShape,
    power: Option<f64>,
) -> Result<Vec<f64>, String> {
    let (Some(&n_1), Some(&n_k)) = (class_counts.iter().max(), class_counts.iter().min()) else {
        return Err("label-aware smoothing needs the training count of at least one class".into());
    };
    for (name, e) in [("smooth_head", smooth_head), ("smooth_tail", smooth_tail)] {
        if !(0.0..=1.0).contains(&e) {
            return Err(format!("{name} must be in [0, 1], is {e}"));
        }
    }
    let power = match (shape, power) {
        (LasShape::Exp, Some(p)) if p > 0.0 && p.is_finite() => p,
        (LasShape::Exp, p) => {
            return Err(format!(
                "las_shape 'exp' needs las_power > 0, has {}",
                p.map_or("none".into(), |p| p.to_string())
            ))
        }
        _ => 1.0,
    };
    if n_1 == n_k {
        return Ok(vec![smooth_head; class_counts.len()]);
    }
    let (head, tail) = (smooth_head, smooth_tail);
    let span = (n_1 - n_k) as f64;
    Ok(class_counts
        .iter()
        .map(|&n| {
            let r = (n - n_k) as f64 / span;
            match shape {
                LasShape::Concave => tail + (head - tail) * (r * PI / 2.0).sin(),
                LasShape::Linear => tail + (head - tail) * r,
                LasShape::Convex => head + (head - tail) * (1.5 * PI + r * PI / 2.0).sin(),
                LasShape::Exp => tail + (head - tail) * r.powf(power),
            }
        })
        .collect())
}

/// The LAS criterion with its per-class ε held as a tensor.
#[derive(Debug)]
pub struct LabelAwareSmoothing {
    smooth: Tensor,
}

impl LabelAwareSmoothing {
    /// Builds the criterion from the training counts ([`las_epsilons`]); ε is stored as a `[K]`
    /// float32 tensor on `device` (the reference's `self.smooth.float().cuda()`).
    ///
    /// # Errors
    /// As [`las_epsilons`].
    pub fn new(
        class_counts: &[usize],
        smooth_head: f64,
        smooth_tail: f64,
        shape: LasShape,
        power: Option<f64>,
        device: Device,
    ) -> Result<Self, String> {
        let eps = las_epsilons(class_counts, smooth_head, smooth_tail, shape, power)?;
        let smooth = Tensor::from_slice(&eps)
            .to_kind(Kind::Float)
            .to_device(device);
        Ok(LabelAwareSmoothing { smooth })
    }

    /// ε of each class, `[K]` float32.
    pub fn epsilons(&self) -> &Tensor {
        &self.smooth
    }

    /// The batch-mean LAS loss, in nats, as the reference's `forward`:
    ///
    /// loss = mean_i [ (1 − ε_{y_i})·(−log p_{i,y_i}) + ε_{y_i}·mean_k(−log p_{i,k}) ],
    /// with log p = `log_softmax(logits, -1)`.
    ///
    /// The target distribution this minimises the cross-entropy to gives the true class weight
    /// 1 − ε_y + ε_y/K and every other class ε_y/K. The paper's Eq. 6 writes it slightly
    /// differently: q_y = 1 − ε_y for the true class and ε_y/(K − 1) for each of the others.
    /// This follows the code, which produced the paper's numbers.
    ///
    /// * `logits`: `[B, K]` floating point, any device (ε is moved there when it lives elsewhere).
    /// * `target`: `[B]` int64 class indices on the logits' device.
    ///
    /// Returns a scalar tensor that carries the graph for `backward`.
    ///
    /// # Panics
    /// On a shape mismatch or a target outside `0..K` (libtorch's indexing error).
    pub fn loss(&self, logits: &Tensor, target: &Tensor) -> Tensor {
        let smoothing = self
            .smooth
            .to_device(logits.device())
            .index_select(0, target);
        let confidence = 1f64 - &smoothing;
        let log_probs = logits.log_softmax(-1, None::<Kind>);
        let nll = -log_probs
            .gather(-1, &target.unsqueeze(1), false)
            .squeeze_dim(1);
        let smooth_loss = -log_probs.mean_dim(-1, false, None::<Kind>);
        (confidence * nll + smoothing * smooth_loss).mean(None::<Kind>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: [usize; 6] = [500, 300, 180, 100, 60, 20];

    fn logits() -> Tensor {
        Tensor::from_slice(&[
            2.0f32, 0.5, -1.0, 0.0, 0.3, -0.2, //
            0.1, 1.5, 0.2, -0.4, 0.0, 0.9, //
            -1.0, 0.0, 0.5, 2.5, -0.3, 0.4, //
            0.7, -0.6, 0.0, 0.2, 1.1, -1.5, //
            0.0, 0.0, 0.0, 0.0, 0.0, 3.0,
        ])
        .view([5, 6])
    }

    fn targets() -> Tensor {
        Tensor::from_slice(&[0i64, 2, 3, 5, 5])
    }

    /// ε and the loss for each shape, from the reference's `LabelAwareSmoothing` (`__init__`
    /// and `forward` verbatim) in NumPy 2.4 / PyTorch 2.11, counts [500, 300, 180, 100, 60, 20],
    /// ε_head 0.4, ε_tail 0.1, power 2 for `exp`:
    /// ```python
    /// s = smooth(counts, 0.4, 0.1, shape, p)                   # __init__
    /// forward(torch.from_numpy(s).float(), x, t).item()       # x, t as `logits()`, `targets()`
    /// ```
    const EXPECTED: [(LasShape, [f64; 6], f64); 4] = [
        (
            LasShape::Concave,
            [
                0.4,
                0.3380060020873706,
                0.25,
                0.17764571353075626,
                0.1391578576660155,
                0.1,
            ],
            1.6032898426055908,
        ),
        (
            LasShape::Linear,
            [0.4, 0.275, 0.2, 0.15000000000000002, 0.125, 0.1],
            1.5932353734970093,
        ),
        (
            LasShape::Convex,
            [
                0.39999999999999997,
                0.21737157129738374,
                0.1401923788646684,
                0.11022225211327946,
                0.10256654158785683,
                0.09999999999999998,
            ],
            1.5783238410949707,
        ),
        (
            LasShape::Exp,
            [
                0.4,
                0.2020833333333334,
                0.13333333333333336,
                0.10833333333333334,
                0.10208333333333335,
                0.1,
            ],
            1.5777631998062134,
        ),
    ];

    #[test]
    fn epsilons_match_numpy_reference() {
        for (shape, want, _) in EXPECTED {
            let eps = las_epsilons(&COUNTS, 0.4, 0.1, shape, Some(2.0)).unwrap();
            for (g, w) in eps.iter().zip(want) {
                assert!((g - w).abs() < 1e-12, "{shape:?}: {eps:?}");
            }
        }
    }

    #[test]
    fn loss_matches_pytorch_reference() {
        for (shape, _, want) in EXPECTED {
            let las =
                LabelAwareSmoothing::new(&COUNTS, 0.4, 0.1, shape, Some(2.0), Device::Cpu).unwrap();
            assert_eq!(las.epsilons().kind(), Kind::Float);
            let got = las.loss(&logits(), &targets()).double_value(&[]);
            assert!((got - want).abs() < 1e-6, "{shape:?}: {got} vs {want}");
        }
    }

    /// A balanced set is plain label smoothing with ε_head, which PyTorch computes as
    /// `F.cross_entropy(x, t, label_smoothing=0.3)` = 1.6600687503814697 on the same logits.
    #[test]
    fn balanced_set_is_plain_label_smoothing() {
        for shape in [
            LasShape::Concave,
            LasShape::Linear,
            LasShape::Convex,
            LasShape::Exp,
        ] {
            let eps = las_epsilons(&[7; 6], 0.3, 0.0, shape, Some(2.0)).unwrap();
            assert_eq!(eps, [0.3; 6]);
        }
        let las = LabelAwareSmoothing::new(&[7; 6], 0.3, 0.0, LasShape::Concave, None, Device::Cpu)
            .unwrap();
        let got = las.loss(&logits(), &targets()).double_value(&[]);
        assert!((got - 1.6600687503814697).abs() < 1e-6, "{got}");
    }

    #[test]
    fn loss_carries_gradient() {
        let las = LabelAwareSmoothing::new(&COUNTS, 0.4, 0.1, LasShape::Concave, None, Device::Cpu)
            .unwrap();
        let x = logits().set_requires_grad(true);
        las.loss(&x, &targets()).backward();
        // Each row of d loss / d logits sums to 0 (softmax minus a distribution).
        let row_sums =
            Vec::<f64>::try_from(&x.grad().sum_dim_intlist(1, false, Kind::Double)).unwrap();
        assert!(row_sums.iter().all(|s| s.abs() < 1e-6), "{row_sums:?}");
    }

    #[test]
    fn invalid_arguments_are_errors() {
        assert!(las_epsilons(&[], 0.3, 0.0, LasShape::Concave, None).is_err());
        assert!(las_epsilons(&COUNTS, 0.3, 0.0, LasShape::Exp, None).is_err());
        assert!(las_epsilons(&COUNTS, 0.3, 0.0, LasShape::Exp, Some(0.0)).is_err());
        assert!(las_epsilons(&COUNTS, 1.5, 0.0, LasShape::Linear, None).is_err());
        assert!(las_epsilons(&COUNTS, 0.3, -0.1, LasShape::Linear, None).is_err());
        assert!(las_epsilons(&COUNTS, f64::NAN, 0.0, LasShape::Linear, None).is_err());
    }
}
