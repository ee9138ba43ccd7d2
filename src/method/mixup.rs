//! Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018), as the
//! reference's `mixup_data` / `mixup_criterion` (`methods.py` of the MiSLAS release), which
//! stage 1 trains with (MiSLAS §4.1).
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Beta, Distribution};
use tch::{Kind, Reduction, Tensor};

/// A mixed batch: `x̃ = λ·x + (1 − λ)·x[perm]`, with both label sets the loss needs.
#[derive(Debug)]
pub struct MixedBatch {
    /// The mixed images, `[B, C, H, W]` (any shape with the batch first), on the input's device
    /// and dtype.
    pub images: Tensor,
    /// Labels of the first images of each pair, `[B]` int64: the input labels (`y_a`).
    pub targets_a: Tensor,
    /// Labels of the permuted partners, `[B]` int64: `labels[perm]` (`y_b`).
    pub targets_b: Tensor,
    /// The mixing coefficient λ in [0, 1]; 1 means no mixing.
    pub lam: f64,
}

impl MixedBatch {
    /// The mixup loss for any per-batch criterion: λ·criterion(y_a) + (1 − λ)·criterion(y_b)
    /// (the reference's `mixup_criterion(criterion, pred, y_a, y_b, lam)`). `criterion` maps a
    /// `[B]` target tensor to a scalar loss; stage 1 uses cross-entropy ([`mixup_criterion`]),
    /// stage 2 with mixup would use label-aware smoothing.
    pub fn loss_with(&self, criterion: impl Fn(&Tensor) -> Tensor) -> Tensor {
        if self.lam == 1.0 {
            // Not mixed: the plain loss.
            return criterion(&self.targets_a);
        }
        criterion(&self.targets_a) * self.lam + criterion(&self.targets_b) * (1.0 - self.lam)
    }

    /// Images and labels `start..start + len` of the batch, with the same λ: a micro-batch for
    /// gradient accumulation. The pairs were formed over the whole batch, so the micro-batches
    /// together hold exactly the mixed batch.
    ///
    /// # Panics
    /// If `start + len` exceeds the batch.
    pub fn narrow(&self, start: i64, len: i64) -> MixedBatch {
        MixedBatch {
            images: self.images.narrow(0, start, len),
            targets_a: self.targets_a.narrow(0, start, len),
            targets_b: self.targets_b.narrow(0, start, len),
            lam: self.lam,
        }
    }
}

/// Mixes a batch with a given pairing: `x̃ = λ·x + (1 − λ)·x[perm]`, `y_a = y`,
/// `y_b = y[perm]` (the body of the reference's `mixup_data` once λ and `index` are drawn).
///
/// * `images`: `[B, …]` floating point, any device; the result stays on it.
/// * `labels`: `[B]` class indices.
/// * `lam`: λ, normally in [0, 1].
/// * `perm`: `[B]` int64 permutation of `0..B`, any device (moved to the images' device).
///
/// # Panics
/// If the shapes disagree or `perm` holds an index outside `0..B` (libtorch's indexing error).
pub fn mix_with_permutation(
    images: &Tensor,
    labels: &Tensor,
    lam: f64,
    perm: &Tensor,
) -> MixedBatch {
    let perm = perm.to_device(images.device()).to_kind(Kind::Int64);
    let partners = images.index_select(0, &perm);
    let label_perm = perm.to_device(labels.device());
    MixedBatch {
        images: images * lam + partners * (1.0 - lam),
        targets_a: labels.shallow_clone(),
        targets_b: labels.index_select(0, &label_perm),
        lam,
    }
}

/// Draws λ ~ Beta(α, α) and a uniform permutation of the batch from `rng`, and mixes the batch
/// (the reference's `mixup_data(x, y, alpha)`; there λ comes from `np.random.beta` and the
/// permutation from `torch.randperm`, here both come from the caller's generator so that a seed
/// reproduces a run).
///
/// * `images`: `[B, …]` floating point, any device; `labels`: `[B]` class indices.
/// * `alpha`: `Some(α)` with α > 0 mixes; `None` or α ≤ 0 returns the batch unmixed with λ = 1
///   and `targets_b = targets_a`, drawing nothing from `rng` (the reference still permutes, but
///   with λ = 1 the permuted half has weight 0).
///
/// Exactly one λ per batch, as in the reference.
///
/// # Panics
/// If α is NaN or infinite (the configuration rejects both), or as [`mix_with_permutation`].
pub fn mixup_data(
    images: &Tensor,
    labels: &Tensor,
    alpha: Option<f64>,
    rng: &mut impl Rng,
) -> MixedBatch {
    if let Some(a) = alpha {
        assert!(a.is_finite(), "mixup: α must be a finite number, is {a}");
    }
    let alpha = match alpha {
        Some(a) if a > 0.0 => a,
        _ => {
            return MixedBatch {
                images: images.shallow_clone(),
                targets_a: labels.shallow_clone(),
                targets_b: labels.shallow_clone(),
                lam: 1.0,
            }
        }
    };
    let lam = Beta::new(alpha, alpha)
        .expect("Beta(α, α) is a distribution for finite α > 0")
        .sample(rng);
    let batch = images.size().first().copied().unwrap_or(0);
    let mut perm: Vec<i64> = (0..batch).collect();
    perm.shuffle(rng);
    mix_with_permutation(images, labels, lam, &Tensor::from_slice(&perm))
}

/// The stage-1 mixup loss: λ·CE(z, y_a) + (1 − λ)·CE(z, y_b), each cross-entropy the batch mean
/// of −log softmax(z)_y (`nn.CrossEntropyLoss()` in the reference's `mixup_criterion`).
///
/// * `logits`: `[B, K]` of the mixed images, on the targets' device.
///
/// Returns a scalar tensor (nats) that carries the graph for `backward`.
pub fn mixup_criterion(logits: &Tensor, b: &MixedBatch) -> Tensor {
    b.loss_with(|y| logits.cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// By hand: rows x_i = [2i, 2i + 1], perm [2, 0, 3, 1], λ = 0.3, so row 0 is
    /// 0.3·[0, 1] + 0.7·[4, 5] = [2.8, 3.8], and so on.
    #[test]
    fn mix_with_fixed_permutation() {
        let x = Tensor::arange(8, (Kind::Float, tch::Device::Cpu)).view([4, 2]);
        let y = Tensor::from_slice(&[0i64, 1, 2, 0]);
        let b = mix_with_permutation(&x, &y, 0.3, &Tensor::from_slice(&[2i64, 0, 3, 1]));
        let got = Vec::<f32>::try_from(&b.images.view([-1])).unwrap();
        let want = [2.8f32, 3.8, 0.6, 1.6, 5.4, 6.4, 3.2, 4.2];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        assert_eq!(Vec::<i64>::try_from(&b.targets_a).unwrap(), [0, 1, 2, 0]);
        assert_eq!(Vec::<i64>::try_from(&b.targets_b).unwrap(), [2, 0, 0, 1]);
        assert_eq!(b.lam, 0.3);
    }

    /// PyTorch 2.11:
    /// ```python
    /// z = torch.tensor([[1.0, -0.5, 0.25], [0.0, 2.0, -1.0], [0.5, 0.5, 1.5], [-1.0, 0.0, 3.0]])
    /// ya = torch.tensor([0, 1, 2, 0]); yb = ya[torch.tensor([2, 0, 3, 1])]   # [2, 0, 0, 1]
    /// crit = torch.nn.CrossEntropyLoss()
    /// 0.3 * crit(z, ya) + 0.7 * crit(z, yb)    # 1.810037612915039
    /// ```
    #[test]
    fn criterion_matches_pytorch() {
        let z = Tensor::from_slice(&[
            1.0f32, -0.5, 0.25, 0.0, 2.0, -1.0, 0.5, 0.5, 1.5, -1.0, 0.0, 3.0,
        ])
        .view([4, 3]);
        let b = MixedBatch {
            images: Tensor::zeros([4, 1], (Kind::Float, tch::Device::Cpu)),
            targets_a: Tensor::from_slice(&[0i64, 1, 2, 0]),
            targets_b: Tensor::from_slice(&[2i64, 0, 0, 1]),
            lam: 0.3,
        };
        let loss = mixup_criterion(&z, &b).double_value(&[]);
        assert!((loss - 1.810037612915039).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn no_alpha_means_no_mixing() {
        let x = Tensor::arange(6, (Kind::Float, tch::Device::Cpu)).view([3, 2]);
        let y = Tensor::from_slice(&[0i64, 1, 2]);
        let mut rng = StdRng::seed_from_u64(0);
        for alpha in [None, Some(0.0), Some(-1.0)] {
            let b = mixup_data(&x, &y, alpha, &mut rng);
            assert_eq!(b.lam, 1.0);
            assert!(b.images.equal(&x));
            assert!(b.targets_b.equal(&y));
        }
    }

    /// With α > 0 the batch is a convex mix of each row with its permuted partner; the partner
    /// is identified by its (distinct) label, so every y_b must name a row and each row is used
    /// once.
    #[test]
    fn mixup_data_pairs_rows_by_a_permutation() {
        let x = Tensor::arange(20, (Kind::Double, tch::Device::Cpu)).view([5, 4]);
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4]);
        let mut rng = StdRng::seed_from_u64(7);
        let b = mixup_data(&x, &y, Some(1.0), &mut rng);
        assert!((0.0..=1.0).contains(&b.lam));
        let mut yb = Vec::<i64>::try_from(&b.targets_b).unwrap();
        let expect = &x * b.lam + x.index_select(0, &b.targets_b) * (1.0 - b.lam);
        assert!(b.images.allclose(&expect, 1e-12, 1e-12, false));
        yb.sort_unstable();
        assert_eq!(yb, [0, 1, 2, 3, 4]);
    }

    /// λ ~ Beta(α, α): mean 1/2 and variance 1/(4(2α + 1)) (1/12 for α = 1, 0.1786 for α = 0.2).
    #[test]
    fn lambda_follows_beta() {
        let x = Tensor::zeros([2, 1], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1]);
        let mut rng = StdRng::seed_from_u64(3);
        for alpha in [1.0, 0.2] {
            let lams: Vec<f64> = (0..20_000)
                .map(|_| mixup_data(&x, &y, Some(alpha), &mut rng).lam)
                .collect();
            let n = lams.len() as f64;
            let mean = lams.iter().sum::<f64>() / n;
            let var = lams.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n;
            assert!((mean - 0.5).abs() < 0.01, "α {alpha}: mean {mean}");
            let want = 1.0 / (4.0 * (2.0 * alpha + 1.0));
            assert!((var - want).abs() < 0.01, "α {alpha}: var {var}");
        }
    }
}
