//! Post-hoc classifier-stage methods on cached outputs, each fitted on a validation split and
//! applied to the scored one: τ-norm and NCM (Kang et al., "Decoupling Representation and
//! Classifier for Long-Tailed Recognition", ICLR 2020), post-hoc logit adjustment (Menon et
//! al., "Long-tail learning via logit adjustment", ICLR 2021), temperature scaling and vector
//! scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).
//!
//! All tensors are float32 on the CPU: features `[N, F]`, logits `[N, K]`, classifier weight
//! `[K, F]`.
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// One post-hoc step, with what it was fitted to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fitted {
    /// τ-norm with the chosen τ and the validation sweep `(τ, top-1 %)`.
    TauNorm {
        /// The chosen τ.
        tau: f64,
        /// Validation top-1 (%) at each τ tried.
        sweep: Vec<(f64, f64)>,
    },
    /// Nearest class mean (cosine), class means of the training features.
    Ncm,
    /// Post-hoc logit adjustment with the chosen τ and its validation sweep `(τ, top-1 %)`.
    LogitAdjustment {
        /// The chosen τ.
        tau: f64,
        /// Validation top-1 (%) at each τ tried.
        sweep: Vec<(f64, f64)>,
    },
    /// Temperature scaling with the fitted T and its validation NLL (nats) before and after.
    Temperature {
        /// The fitted temperature.
        t: f64,
        /// Validation NLL at T = 1.
        nll_before: f64,
        /// Validation NLL at T.
        nll_after: f64,
    },
    /// Vector scaling: per-class scale a `[K]` and shift b `[K]` with its validation NLL before
    /// and after, and the Newton iterations it took.
    Vector {
        /// a_k, the scale of class k's logit.
        scale: Vec<f32>,
        /// b_k, the shift of class k's logit.
        shift: Vec<f32>,
        /// Validation NLL at a = 1, b = 0.
        nll_before: f64,
        /// Validation NLL at the fitted a, b.
        nll_after: f64,
        /// Newton iterations.
        iterations: usize,
    },
    /// A prior-aware correction ([`super::prior`]) on the scored split: how its test prior was
    /// obtained (`known`, `EM`, `BBSE`), that prior `[K]`, and its L1 distance to the scored
    /// split's class frequencies.
    TestPrior {
        /// `known`, `EM` or `BBSE`.
        estimator: String,
        /// The prior the posteriors were moved to.
        prior: Vec<f64>,
        /// Σ_c |prior_c − true_c|.
        l1_error: f64,
    },
}

impl Fitted {
    /// One line: `τ-norm τ=0.75`, `TS T=1.42 (val NLL 0.61 → 0.52)`.
    pub fn describe(&self) -> String {
        match self {
            Fitted::TauNorm { tau, .. } => format!("τ-norm τ={tau:.2}"),
            Fitted::Ncm => "NCM (cosine)".into(),
            Fitted::LogitAdjustment { tau, .. } => format!("logit adjustment τ={tau:.2}"),
            Fitted::Temperature {
                t,
                nll_before,
                nll_after,
            } => format!("TS T={t:.3} (val NLL {nll_before:.4} → {nll_after:.4})"),
            Fitted::Vector {
                scale,
                nll_before,
                nll_after,
                ..
            } => {
                let (lo, hi) = scale
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &a| {
                        (l.min(a), h.max(a))
                    });
                format!("VS a∈[{lo:.2}, {hi:.2}] (val NLL {nll_before:.4} → {nll_after:.4})")
            }
            Fitted::TestPrior {
                estimator,
                l1_error,
                ..
            } => format!("test prior {estimator} (L1 error {l1_error:.4})"),
        }
    }
}

/// τ values tried for τ-norm: 0, 0.05, …, 2 (Decoupling's notebook sweeps [0, 2]).
pub fn tau_norm_grid() -> Vec<f64> {
    (0..=40).map(|i| i as f64 * 0.05).collect()
}

/// τ values tried for logit adjustment: 0, 0.1, …, 3 (Menon et al. use τ = 1 and tune it).
pub fn logit_adjustment_grid() -> Vec<f64> {
    (0..=30).map(|i| i as f64 * 0.1).collect()
}

/// Top-1 (%) of logits `[N, K]` against labels `[N]` (int64).
pub fn top1(logits: &Tensor, labels: &Tensor) -> f64 {
    100.0
        * logits
            .argmax(1, false)
            .eq_tensor(labels)
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[])
}

/// τ-normalised logits: `f · (W_j / ‖W_j‖₂^τ)ᵀ`, without the bias (Decoupling, Eq. in §4,
/// as its `tau_norm`); τ = 0 is the classifier without bias, τ = 1 cosine-like weights.
pub fn tau_norm_logits(features: &Tensor, weight: &Tensor, tau: f64) -> Tensor {
    let norms = weight
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .pow_tensor_scalar(tau);
    features.matmul(&(weight / norms).tr())
}

/// The τ of `grid` with the highest validation top-1 (the smallest on ties), and the sweep.
///
/// Since ‖W_j‖^τ scales column j, the product f·Wᵀ is computed once and each τ rescales it
/// ([`sweep_top1`]).
pub fn fit_tau_norm(
    val_features: &Tensor,
    val_labels: &Tensor,
    weight: &Tensor,
    grid: &[f64],
) -> Result<Fitted> {
    let raw = val_features.matmul(&weight.tr());
    let norms = super::values::<f64>(
        &weight
            .norm_scalaropt_dim(2, [1i64].as_slice(), false)
            .to_kind(Kind::Double),
        "the classifier's row norms",
    )?;
    let scales: Vec<Vec<f32>> = grid
        .iter()
        .map(|&t| norms.iter().map(|&n| n.powf(-t) as f32).collect())
        .collect();
    let shifts = vec![vec![0.0f32; norms.len()]; grid.len()];
    let sweep = grid
        .iter()
        .copied()
        .zip(sweep_top1(&raw, val_labels, &scales, &shifts)?)
        .collect::<Vec<_>>();
    Ok(Fitted::TauNorm {
        tau: best(&sweep),
        sweep,
    })
}

/// Top-1 (%) of `logits` `[N, K]` against `labels` `[N]` under each of T per-class affine
/// maps, z_ij·scale_t[j] + shift_t[j], in one pass over the logits (two threads).
///
/// Sample i counts as right under map t when its label's score is the first maximum, as
/// `argmax` picks: no earlier class scores ≥ and no later class > the label's. The comparisons
/// are branch-free, so each row's loop over classes vectorises.
///
/// # Panics
/// `scales` and `shifts` of different lengths, or a map not of length K.
pub fn sweep_top1(
    logits: &Tensor,
    labels: &Tensor,
    scales: &[Vec<f32>],
    shifts: &[Vec<f32>],
) -> Result<Vec<f64>> {
    let k = logits.size()[1] as usize;
    assert_eq!(
        scales.len(),
        shifts.len(),
        "sweep_top1: one shift per scale"
    );
    assert!(scales.iter().chain(shifts).all(|m| m.len() == k));
    let z = super::values::<f32>(
        &logits.to_kind(Kind::Float).contiguous().view([-1]),
        "the logits",
    )?;
    let y = super::values::<i64>(labels, "the labels")?;
    let hits = |rows: std::ops::Range<usize>| -> Vec<usize> {
        let mut hits = vec![0usize; scales.len()];
        for i in rows {
            let (row, yi) = (&z[i * k..(i + 1) * k], y[i] as usize);
            for (t, (sc, sh)) in scales.iter().zip(shifts).enumerate() {
                let zy = row[yi] * sc[yi] + sh[yi];
                let before = (0..yi)
                    .map(|j| u32::from(row[j] * sc[j] + sh[j] >= zy))
                    .sum::<u32>();
                let after = (yi + 1..k)
                    .map(|j| u32::from(row[j] * sc[j] + sh[j] > zy))
                    .sum::<u32>();
                hits[t] += usize::from(before + after == 0);
            }
        }
        hits
    };
    let n = y.len();
    let (a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| hits(n / 2..n));
        (hits(0..n / 2), super::joined(h, "sweep"))
    });
    let b = b?;
    Ok(a.iter()
        .zip(&b)
        .map(|(x, y)| 100.0 * (x + y) as f64 / n.max(1) as f64)
        .collect())
}

fn best(sweep: &[(f64, f64)]) -> f64 {
    sweep
        .iter()
        .fold((f64::NAN, f64::NEG_INFINITY), |(bt, ba), &(t, a)| {
            if a > ba {
                (t, a)
            } else {
                (bt, ba)
            }
        })
        .0
}

/// Class means `[K, F]` of L2-normalised training features, each re-normalised (a class with
/// no image gets a zero mean, so its cosine is 0).
pub fn class_means(train_features: &Tensor, train_labels: &Tensor, num_classes: i64) -> Tensor {
    let f = l2_normalise(train_features);
    let onehot = train_labels.one_hot(num_classes).to_kind(Kind::Float);
    let sums = onehot.tr().matmul(&f);
    l2_normalise(&sums)
}

fn l2_normalise(x: &Tensor) -> Tensor {
    let n = x
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(1e-12);
    x / n
}

/// NCM scores `[N, K]`: cosine similarity of the L2-normalised features with the class means
/// (Decoupling §4, "NCM ... cosine similarity"). Used as logits: its softmax is close to
/// uniform, so NCM's calibration figures mean little without temperature scaling after it.
pub fn ncm_logits(features: &Tensor, means: &Tensor) -> Tensor {
    l2_normalise(features).matmul(&means.tr())
}

/// `log π` `[K]` of the training class counts (π_k = n_k / Σ n).
pub fn log_prior(train_class_counts: &[usize]) -> Tensor {
    let total: usize = train_class_counts.iter().sum();
    let p: Vec<f32> = train_class_counts
        .iter()
        .map(|&n| ((n.max(1)) as f64 / total as f64).ln() as f32)
        .collect();
    Tensor::from_slice(&p)
}

/// Post-hoc logit adjustment: `logits − τ·log π` (Menon et al. 2021, Eq. 7 of §4).
pub fn adjust_logits(logits: &Tensor, log_prior: &Tensor, tau: f64) -> Tensor {
    logits - log_prior * tau
}

/// The τ of `grid` with the highest validation top-1, and the sweep ([`sweep_top1`] of the
/// shifts −τ·log π).
pub fn fit_logit_adjustment(
    val_logits: &Tensor,
    val_labels: &Tensor,
    log_prior: &Tensor,
    grid: &[f64],
) -> Result<Fitted> {
    let lp = super::values::<f32>(&log_prior.to_kind(Kind::Float), "the log prior")?;
    let scales = vec![vec![1.0f32; lp.len()]; grid.len()];
    let shifts: Vec<Vec<f32>> = grid
        .iter()
        .map(|&t| lp.iter().map(|&l| -(l * t as f32)).collect())
        .collect();
    let sweep = grid
        .iter()
        .copied()
        .zip(sweep_top1(val_logits, val_labels, &scales, &shifts)?)
        .collect::<Vec<_>>();
    Ok(Fitted::LogitAdjustment {
        tau: best(&sweep),
        sweep,
    })
}

/// Mean NLL (nats) of `logits / t`: float32 log-softmax, mean in float64.
pub fn nll_at(logits: &Tensor, labels: &Tensor, t: f64) -> f64 {
    -(logits / t)
        .log_softmax(1, Kind::Float)
        .gather(1, &labels.unsqueeze(1), false)
        .mean(Kind::Double)
        .double_value(&[])
}

/// Temperature scaling: the T > 0 minimising validation NLL of `logits / T` (Guo et al. 2017,
/// §4.2). With β = 1/T the NLL, mean(logsumexp(β·z) − β·z_y), is convex in β with derivative
/// mean(E_p[z] − z_y) and second derivative mean(Var_p[z]); Newton's method on β (a step that
/// would leave β > 0 is halved) stops when the step is below 1e-7·β, at most 50 steps. It
/// starts on every 16th row from β = 1 and then continues on all rows from that β, so that the
/// full `[N, K]` passes are the last two or three steps only. Each step is one softmax in
/// float32, sums in float64.
pub fn fit_temperature(val_logits: &Tensor, val_labels: &Tensor) -> Fitted {
    let z = val_logits.to_kind(Kind::Float);
    let n = z.size()[0];
    let beta = if n >= 4096 {
        let rows = Tensor::arange_start_step(0, n, 16, (Kind::Int64, z.device()));
        newton_beta(
            &z.index_select(0, &rows),
            &val_labels.index_select(0, &rows),
            1.0,
        )
    } else {
        1.0
    };
    let t = 1.0 / newton_beta(&z, val_labels, beta);
    Fitted::Temperature {
        t,
        nll_before: nll_at(&z, val_labels, 1.0),
        nll_after: nll_at(&z, val_labels, t),
    }
}

/// Newton's method on β of [`fit_temperature`] from `beta`.
fn newton_beta(z: &Tensor, labels: &Tensor, mut beta: f64) -> f64 {
    let zy = z.gather(1, &labels.unsqueeze(1), false).squeeze_dim(1);
    for _ in 0..50 {
        let p = (z * beta).softmax(1, Kind::Float);
        let pz = &p * z;
        let ez = pz.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let ez2 = (pz * z).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let grad = (&ez - &zy).mean(Kind::Double).double_value(&[]);
        let hess = (&ez2 - &ez * &ez)
            .mean(Kind::Double)
            .double_value(&[])
            .max(1e-12);
        let mut step = grad / hess;
        while beta - step <= 0.0 {
            step /= 2.0;
        }
        beta -= step;
        if step.abs() < 1e-7 * beta {
            break;
        }
    }
    beta
}

/// Vector-scaled logits `z·a + b` of `[N, K]` logits with per-class `a`, `b` `[K]`.
pub fn vector_scale(logits: &Tensor, scale: &Tensor, shift: &Tensor) -> Tensor {
    logits * scale + shift
}

/// Mean NLL (nats) of `z·a + b` against `labels`.
fn vector_nll(z: &Tensor, labels: &Tensor, a: &Tensor, b: &Tensor) -> f64 {
    -vector_scale(z, a, b)
        .log_softmax(1, Kind::Float)
        .gather(1, &labels.unsqueeze(1), false)
        .mean(Kind::Double)
        .double_value(&[])
}

/// The longest (a_k, b_k) step of one vector-scaling iteration.
const MAX_STEP: f64 = 4.0;

/// Vector scaling (Guo et al. 2017, §4.2: "W is restricted to be a diagonal matrix"): the
/// per-class a, b `[K]` minimising the validation NLL of `z·a + b`, a convex problem.
///
/// From a = 1, b = 0, each iteration takes the Newton step of every class's (a_k, b_k) with
/// its 2×2 block of the Hessian (Σ_i p_ik(1 − p_ik)·[z², z; z, 1] / N, the cross-class terms
/// left out, a ridge of 1e-6, each class's step at most 4 long), halved until the NLL falls by
/// at least 1e-4 of the predicted decrease (Armijo);
/// it stops when an iteration gains less than 1e-10 nats, at most 100 iterations. Float32
/// tensors, sums in float64.
pub fn fit_vector_scaling(val_logits: &Tensor, val_labels: &Tensor) -> Result<Fitted> {
    let z = val_logits.to_kind(Kind::Float);
    let (n, k) = (z.size()[0], z.size()[1]);
    let dev = z.device();
    let onehot = val_labels.one_hot(k).to_kind(Kind::Float);
    let mut a = Tensor::ones([k], (Kind::Float, dev));
    let mut b = Tensor::zeros([k], (Kind::Float, dev));
    let nll_before = vector_nll(&z, val_labels, &a, &b);
    let mut nll = nll_before;
    let mut iterations = 0;
    let col_mean =
        |t: &Tensor| t.sum_dim_intlist([0i64].as_slice(), false, Kind::Double) / n as f64;
    while iterations < 100 {
        iterations += 1;
        let p = vector_scale(&z, &a, &b).softmax(1, Kind::Float);
        let r = &p - &onehot;
        let (ga, gb) = (col_mean(&(&r * &z)), col_mean(&r));
        let w = &p * (1.0 - &p);
        let wz = &w * &z;
        let (haa, hab, hbb) = (col_mean(&(&wz * &z)), col_mean(&wz), col_mean(&w));
        // Solve [haa hab; hab hbb]·(da, db) = −(ga, gb) per class, with a small ridge; a class
        // whose block is nearly singular (never predicted) has its step shortened to length
        // MAX_STEP, which keeps it a descent direction and lets the other classes' steps pass
        // the line search.
        let (haa, hbb) = (haa + 1e-6, hbb + 1e-6);
        let det = &haa * &hbb - &hab * &hab;
        let da = -(&hbb * &ga - &hab * &gb) / &det;
        let db = -(&haa * &gb - &hab * &ga) / &det;
        let length = (&da * &da + &db * &db).sqrt().clamp_min(1e-12);
        let shorten = (MAX_STEP / length).clamp_max(1.0);
        let (da, db) = (da * &shorten, db * &shorten);
        let predicted = (&ga * &da + &gb * &db).sum(Kind::Double).double_value(&[]);
        let mut step = 1.0;
        let accepted = loop {
            let (na, nb) = (&a + &da * step, &b + &db * step);
            let (na, nb) = (na.to_kind(Kind::Float), nb.to_kind(Kind::Float));
            let trial = vector_nll(&z, val_labels, &na, &nb);
            if trial <= nll + 1e-4 * step * predicted {
                break Some((na, nb, trial));
            }
            step /= 2.0;
            if step < 1e-6 {
                break None;
            }
        };
        let Some((na, nb, trial)) = accepted else {
            break;
        };
        let gain = nll - trial;
        (a, b, nll) = (na, nb, trial);
        if gain < 1e-10 {
            break;
        }
    }
    Ok(Fitted::Vector {
        scale: super::values::<f32>(&a, "the vector scales")?,
        shift: super::values::<f32>(&b, "the vector shifts")?,
        nll_before,
        nll_after: nll,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from PyTorch 2.11:
    /// ```python
    /// f = torch.tensor([[1., 2.], [0., 1.], [3., -1.]]); W = torch.tensor([[2., 0.], [0., 4.], [1., 1.]])
    /// Wn = W / W.norm(dim=1, keepdim=True) ** 0.5
    /// (f @ Wn.T).flatten()   # [1.41421, 4.0, 2.52269, 0.0, 2.0, 0.84090, 4.24264, -2.0, 1.68179]
    /// ```
    #[test]
    fn tau_norm_matches_pytorch() {
        let f = Tensor::from_slice(&[1.0f32, 2.0, 0.0, 1.0, 3.0, -1.0]).view([3, 2]);
        let w = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 4.0, 1.0, 1.0]).view([3, 2]);
        let got = Vec::<f32>::try_from(tau_norm_logits(&f, &w, 0.5).view([-1])).unwrap();
        let want = [
            std::f32::consts::SQRT_2,
            4.0,
            2.522_689_3,
            0.0,
            2.0,
            0.840_896_4,
            4.242_640_5,
            -2.0,
            1.681_793,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{got:?}");
        }
        // τ = 0: plain product.
        let plain = tau_norm_logits(&f, &w, 0.0);
        assert!(plain.allclose(&f.matmul(&w.tr()), 1e-6, 1e-6, false));
    }

    /// The one-pass sweep gives `argmax`'s top-1 for every map, ties included: integer logits
    /// in 0..4 over 7 classes tie often, and `argmax` takes the first maximum.
    #[test]
    fn sweep_top1_is_argmax_top1_with_ties() {
        tch::manual_seed(2);
        let opts = (Kind::Int64, tch::Device::Cpu);
        let z = Tensor::randint(4, [3001, 7], opts).to_kind(Kind::Float);
        let y = Tensor::randint(7, [3001], opts);
        let scales = vec![
            vec![1.0f32; 7],
            vec![1.0, 0.5, 2.0, 1.0, 1.5, 1.0, 0.25],
            vec![0.3, 1.7, 1.0, 0.9, 1.1, 2.5, 1.0],
        ];
        let shifts = vec![
            vec![0.0f32; 7],
            vec![0.0, 1.0, 0.0, -1.0, 0.5, 0.0, 2.0],
            vec![-0.7, 0.2, 0.1, 0.0, -0.3, 0.45, 0.0],
        ];
        let got = sweep_top1(&z, &y, &scales, &shifts).unwrap();
        for t in 0..3 {
            let m = &z * Tensor::from_slice(&scales[t]) + Tensor::from_slice(&shifts[t]);
            assert!((got[t] - top1(&m, &y)).abs() < 1e-9, "map {t}");
        }
        // Ties are frequent here, so the tie rule matters: the plain map's top-1 is well below
        // the share of rows whose label reaches the maximum.
        let reach = z
            .gather(1, &y.unsqueeze(1), false)
            .squeeze_dim(1)
            .ge_tensor(&z.amax([1i64].as_slice(), false));
        let reach = 100.0
            * reach
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[]);
        assert!(
            got[0] + 5.0 < reach,
            "top-1 {} vs label at max {reach}",
            got[0]
        );
    }

    /// A class the logits never predict (always 30 below the others) but a quarter of the
    /// labels belong to: its block of the Hessian is nearly zero, and the fit still lifts it
    /// level with the others and reaches the best NLL.
    #[test]
    fn vector_scaling_lifts_a_class_that_is_never_predicted() {
        tch::manual_seed(3);
        let n = 4000;
        let opts = (Kind::Float, tch::Device::Cpu);
        let z = Tensor::cat(
            &[
                Tensor::randn([n, 3], opts),
                Tensor::full([n, 1], -30.0, opts),
            ],
            1,
        );
        let labels = Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)).remainder(4);
        let Fitted::Vector {
            scale,
            shift,
            nll_before,
            nll_after,
            ..
        } = fit_vector_scaling(&z, &labels).unwrap()
        else {
            unreachable!()
        };
        assert!(nll_before > 7.0, "{nll_before}");
        // The labels (i mod 4) are independent of the logits: the best is every class at ¼,
        // NLL ln 4; class 3's logit −30·a_3 + b_3 must come up level with the others'.
        assert!((nll_after - 4f64.ln()).abs() < 0.02, "{nll_after}");
        let lifted = -30.0 * f64::from(scale[3]) + f64::from(shift[3]);
        assert!(
            lifted.abs() < 1.0,
            "class 3's logit {lifted}: a {scale:?}, b {shift:?}"
        );
    }

    #[test]
    fn ncm_is_cosine_to_normalised_means() {
        // Class 0 features along x, class 1 along y: means are the axes.
        let tf = Tensor::from_slice(&[2.0f32, 0.0, 5.0, 0.0, 0.0, 3.0]).view([3, 2]);
        let tl = Tensor::from_slice(&[0i64, 0, 1]);
        let means = class_means(&tf, &tl, 2);
        let s = ncm_logits(&Tensor::from_slice(&[1.0f32, 1.0]).view([1, 2]), &means);
        let v = Vec::<f32>::try_from(s.view([-1])).unwrap();
        let r = std::f32::consts::FRAC_1_SQRT_2;
        assert!((v[0] - r).abs() < 1e-6 && (v[1] - r).abs() < 1e-6, "{v:?}");
    }

    /// Logits generated at temperature 1 from a known model and scaled by 3: TS finds T ≈ 3.
    #[test]
    fn temperature_recovers_the_scale() {
        tch::manual_seed(0);
        let n = 4000;
        let logits = Tensor::randn([n, 5], (Kind::Float, tch::Device::Cpu)) * 2.0;
        let labels = logits
            .softmax(1, Kind::Float)
            .multinomial(1, true)
            .squeeze_dim(1);
        let Fitted::Temperature {
            t,
            nll_before,
            nll_after,
        } = fit_temperature(&(&logits * 3.0), &labels)
        else {
            unreachable!()
        };
        assert!((t - 3.0).abs() < 0.25, "T {t}");
        assert!(nll_after < nll_before);
        // The minimum: NLL at T is below NLL at T ± 5 %.
        let l3 = &logits * 3.0;
        assert!(nll_after <= nll_at(&l3, &labels, t * 1.05));
        assert!(nll_after <= nll_at(&l3, &labels, t * 0.95));
    }

    /// Labels drawn from a balanced distribution but logits biased by log π: the logit
    /// adjustment sweep peaks near τ = 1.
    #[test]
    fn logit_adjustment_removes_a_prior_bias() {
        tch::manual_seed(1);
        let n = 6000;
        let clean = Tensor::randn([n, 4], (Kind::Float, tch::Device::Cpu)) * 1.5;
        let labels = clean
            .softmax(1, Kind::Float)
            .multinomial(1, true)
            .squeeze_dim(1);
        let lp = log_prior(&[1000, 300, 100, 10]);
        let biased = &clean + &lp;
        let Fitted::LogitAdjustment { tau, sweep } =
            fit_logit_adjustment(&biased, &labels, &lp, &logit_adjustment_grid()).unwrap()
        else {
            unreachable!()
        };
        assert!((0.6..=1.4).contains(&tau), "τ {tau}, sweep {sweep:?}");
        assert!(sweep[0].1 < sweep.iter().map(|s| s.1).fold(0.0, f64::max));
    }
}
