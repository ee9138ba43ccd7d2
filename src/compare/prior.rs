//! Prior-aware post-hoc corrections: move a model's posteriors from the prior they were
//! calibrated under (the source prior) to a test set's class prior, known or estimated from the
//! unlabelled test images.
//!
//! * Logit adjustment toward a known target prior q (Menon et al. 2021, Eq. 7 with the target
//!   prior of §4's general form): `z − τ·ln π_train + τ·ln q`.
//! * EM / maximum-likelihood label shift (Saerens, Latinne & Decaestecker, "Adjusting the
//!   outputs of a classifier to new a priori probabilities", Neural Computation 2002, Eqs. 2.9
//!   and 2.10).
//! * Black-box shift estimation, BBSE (Lipton, Wang & Smola, ICML 2018, Eq. 4 and Alg. 1 with
//!   the hard confusion matrix): Ĉ w = μ̂, q̂ = w ⊙ p_s.
//!
//! The source prior p_s of the correction is the prior the model's posteriors imply on the
//! validation split ([`implied_prior`]): a model trained on long-tailed data keeps its training
//! prior in its logits (temperature scaling does not remove it), a class-balanced classifier
//! stage does not; the p_s for which the validation split's true class frequencies p_val are
//! the fixed point of EM covers both (the bias correction of Alexandari et al., ICML 2020,
//! "Maximum likelihood with bias-corrected calibration", in a moment-matching form). Each
//! estimate is followed by the posterior correction p(y|x) ∝ p_s(y|x)·q̂(y)/p_s(y), in logits
//! `z + ln q̂ − ln p_s` ([`correct_posterior`]). BBSE's confusion matrix needs no calibration;
//! its weights multiply p_val.
use anyhow::Result;
use tch::{Kind, Tensor};

/// Estimated prior probabilities below this are raised to it inside the logarithm of the
/// posterior correction, so that a class BBSE clips to 0 keeps a finite logit (and NLL).
pub const PRIOR_FLOOR: f64 = 1e-8;

/// EM stops when no class's prior moves by more than this between iterations.
pub const EM_TOLERANCE: f64 = 1e-8;

/// EM stops after this many iterations at most.
pub const EM_MAX_ITERATIONS: usize = 1000;

/// How the test prior of a correction is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    /// The test set's true prior, known (logit adjustment toward it).
    Known,
    /// EM / MLLS (Saerens et al. 2002).
    Em,
    /// BBSE (Lipton et al. 2018).
    Bbse,
}

/// Class frequencies of `labels` (`[N]` in `0..k`), each class counted at least once so that
/// its logarithm is finite.
pub fn label_frequencies(labels: &[i64], k: usize) -> Vec<f64> {
    let mut n = vec![0usize; k];
    for &y in labels {
        n[y as usize] += 1;
    }
    let total: usize = n.iter().map(|&c| c.max(1)).sum();
    n.iter().map(|&c| c.max(1) as f64 / total as f64).collect()
}

/// L1 distance Σ_c |a_c − b_c|.
pub fn l1(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

fn log_vector(p: &[f64]) -> Tensor {
    let v: Vec<f64> = p.iter().map(|&x| x.max(PRIOR_FLOOR).ln()).collect();
    Tensor::from_slice(&v)
}

/// EM / MLLS estimate of the test prior (Saerens et al. 2002, Eqs. 2.9–2.10) from test logits
/// `[N, K]` calibrated under `source` (`[K]`, sums to 1): starting from q⁰ = p_s, repeat
/// p^t(y|x_i) = softmax(z_i + ln q^t − ln p_s), q^{t+1} = mean_i p^t(·|x_i), in float64, until
/// max_c |q^{t+1}_c − q^t_c| < [`EM_TOLERANCE`] or [`EM_MAX_ITERATIONS`]. Returns the prior and
/// the iterations run.
///
/// # Errors
/// The logits cannot be read.
pub fn em_prior(logits: &Tensor, source: &[f64]) -> Result<(Vec<f64>, usize)> {
    let z = logits.to_kind(Kind::Double).log_softmax(1, Kind::Double);
    let ls = log_vector(source);
    let mut q = source.to_vec();
    for it in 1..=EM_MAX_ITERATIONS {
        let shift = log_vector(&q) - &ls;
        let next = super::values::<f64>(
            &(&z + shift)
                .softmax(1, Kind::Double)
                .mean_dim(0, false, Kind::Double),
            "the EM prior",
        )?;
        let moved = l_inf(&next, &q);
        q = next;
        if moved < EM_TOLERANCE {
            return Ok((q, it));
        }
    }
    Ok((q, EM_MAX_ITERATIONS))
}

fn l_inf(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The prior p_s `[K]` implied by validation logits `[N, K]` whose true class frequencies are
/// `p_val`: the one for which EM on the validation split stays at p_val, i.e.
/// mean_i softmax(z_i + ln p_val − ln p_s) = p_val. With b = ln p_val − ln p_s this is the
/// stationary point of the convex mean_i logsumexp(z_i + b) − Σ_c p_val,c·b_c, reached by
/// b ← b + ln p_val − ln mean_i softmax(z_i + b) (float64) until no class's mean moves by more
/// than [`EM_TOLERANCE`] or [`EM_MAX_ITERATIONS`]; p_s ∝ p_val·e^{−b}, normalised.
///
/// # Errors
/// The logits cannot be read.
pub fn implied_prior(val_logits: &Tensor, p_val: &[f64]) -> Result<Vec<f64>> {
    let z = val_logits
        .to_kind(Kind::Double)
        .log_softmax(1, Kind::Double);
    let lv = log_vector(p_val);
    let mut b = Tensor::zeros([p_val.len() as i64], (Kind::Double, tch::Device::Cpu));
    for _ in 0..EM_MAX_ITERATIONS {
        let mean = (&z + &b)
            .softmax(1, Kind::Double)
            .mean_dim(0, false, Kind::Double);
        let gap = super::values::<f64>(&mean, "the mean posteriors")?;
        if l_inf(&gap, p_val) < EM_TOLERANCE {
            break;
        }
        b = &b + &lv - mean.clamp_min(PRIOR_FLOOR).log();
    }
    super::values::<f64>(&(&lv - &b).softmax(0, Kind::Double), "the implied prior")
}

/// Arg-max of each row of `[N, K]` logits.
fn predictions(logits: &Tensor) -> Result<Vec<i64>> {
    super::values::<i64>(&logits.argmax(1, false), "the predictions")
}

/// BBSE estimate of the test prior (Lipton et al. 2018): the hard confusion matrix of the
/// validation split Ĉ[i, j] = #{ŷ = i, y = j} / n_val (its column sums are p_s, the validation
/// frequencies), the test predictions' frequencies μ̂[i] = #{ŷ = i} / n_test, the weights
/// w = argmin ‖Ĉ w − μ̂‖₂ (LAPACK `gelsd`, NumPy's `lstsq`: the exact solution when Ĉ is
/// invertible, the least-norm one when a class is never predicted), clipped at 0, and
/// q̂ = w ⊙ p_s renormalised. Falls back to p_s if every weight clips to 0.
///
/// # Errors
/// The logits or the least-squares solution cannot be read.
pub fn bbse_prior(
    val_logits: &Tensor,
    val_labels: &[i64],
    test_logits: &Tensor,
    k: usize,
) -> Result<Vec<f64>> {
    let mut c = vec![0.0f64; k * k];
    let val_pred = predictions(val_logits)?;
    let nv = val_labels.len().max(1) as f64;
    for (&p, &y) in val_pred.iter().zip(val_labels) {
        c[p as usize * k + y as usize] += 1.0 / nv;
    }
    let mut mu = vec![0.0f64; k];
    let test_pred = predictions(test_logits)?;
    let nt = test_pred.len().max(1) as f64;
    for &p in &test_pred {
        mu[p as usize] += 1.0 / nt;
    }
    let a = Tensor::from_slice(&c).view([k as i64, k as i64]);
    let b = Tensor::from_slice(&mu).view([k as i64, 1]);
    let (w, _, _, _) = a.linalg_lstsq(&b, None::<f64>, "gelsd");
    let w = super::values::<f64>(&w.view([-1]), "the BBSE weights")?;
    let mut p_s = vec![0.0f64; k];
    for &y in val_labels {
        p_s[y as usize] += 1.0 / nv;
    }
    let q: Vec<f64> = w.iter().zip(&p_s).map(|(w, p)| w.max(0.0) * p).collect();
    let total: f64 = q.iter().sum();
    Ok(if total > 0.0 {
        q.iter().map(|x| x / total).collect()
    } else {
        p_s
    })
}

/// The posterior correction toward `target` (Saerens et al. 2002, Eq. 2.4):
/// `z + ln q − ln p_s` for logits `[N, K]` (float64 out), q floored at [`PRIOR_FLOOR`].
pub fn correct_posterior(logits: &Tensor, target: &[f64], source: &[f64]) -> Tensor {
    logits.to_kind(Kind::Double) + log_vector(target) - log_vector(source)
}

/// Logit adjustment toward a known target prior: `z − τ·ln π_train + τ·ln q` (`log_train` the
/// `[K]` ln π_train of [`super::posthoc::log_prior`]).
pub fn adjust_toward(logits: &Tensor, log_train: &Tensor, target: &[f64], tau: f64) -> Tensor {
    let lq = log_vector(target).to_kind(logits.kind());
    logits - log_train.to_kind(logits.kind()) * tau + lq * tau
}

/// What one correction needs besides the test logits.
#[derive(Debug)]
pub struct Correction<'a> {
    /// How the test prior is obtained.
    pub estimator: Estimator,
    /// Validation logits `[N_val, K]` at the point of the correction (for BBSE's Ĉ).
    pub val_logits: &'a Tensor,
    /// Validation labels.
    pub val_labels: &'a [i64],
    /// ln π_train, `[K]` (for [`Estimator::Known`]).
    pub log_train: &'a Tensor,
    /// Logit adjustment's τ, fitted on the validation split (for [`Estimator::Known`]).
    pub tau: f64,
}

impl Correction<'_> {
    /// The validation logits moved to the validation split's own class frequencies p_val (the
    /// test set of known prior that the later steps are fitted on): `la-q` adjusts toward
    /// p_val; EM and BBSE apply z + ln p_val − ln p_s ([`implied_prior`]).
    ///
    /// # Errors
    /// The logits cannot be read.
    pub fn on_validation(&self) -> Result<Tensor> {
        let k = self.log_train.size()[0] as usize;
        let p_val = label_frequencies(self.val_labels, k);
        Ok(match self.estimator {
            Estimator::Known => adjust_toward(self.val_logits, self.log_train, &p_val, self.tau),
            Estimator::Em | Estimator::Bbse => {
                let p_s = implied_prior(self.val_logits, &p_val)?;
                correct_posterior(self.val_logits, &p_val, &p_s)
            }
        })
    }

    /// The corrected test logits `[N, K]` and the prior they were moved to: the true one
    /// (`[K]`, known) or the estimate.
    ///
    /// # Errors
    /// The logits cannot be read.
    pub fn apply(&self, test_logits: &Tensor, true_prior: &[f64]) -> Result<(Tensor, Vec<f64>)> {
        let k = true_prior.len();
        let source = || implied_prior(self.val_logits, &label_frequencies(self.val_labels, k));
        Ok(match self.estimator {
            Estimator::Known => (
                adjust_toward(test_logits, self.log_train, true_prior, self.tau),
                true_prior.to_vec(),
            ),
            Estimator::Em => {
                let p_s = source()?;
                let (q, _) = em_prior(test_logits, &p_s)?;
                (correct_posterior(test_logits, &q, &p_s), q)
            }
            Estimator::Bbse => {
                let p_s = source()?;
                let q = bbse_prior(self.val_logits, self.val_labels, test_logits, k)?;
                (correct_posterior(test_logits, &q, &p_s), q)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly calibrated outputs of K Gaussian classes in one dimension (means 0, 6, 12, …,
    /// σ = 1) under the source prior `source`: logits ln p_s(y) − (x − m_y)²/2, with the
    /// labels drawn from `prior` (seeded).
    fn gaussian_set(n: usize, prior: &[f64], source: &[f64], seed: i64) -> (Tensor, Vec<i64>) {
        tch::manual_seed(seed);
        let k = prior.len() as i64;
        let y = Tensor::from_slice(prior).multinomial(n as i64, true);
        let means = Tensor::arange(k, (Kind::Double, tch::Device::Cpu)) * 6.0;
        let x =
            means.index_select(0, &y) + Tensor::randn([n as i64], (Kind::Double, tch::Device::Cpu));
        let d = x.unsqueeze(1) - means.unsqueeze(0);
        let logits = Tensor::from_slice(source).log().unsqueeze(0) - d.square() / 2.0;
        (logits, Vec::<i64>::try_from(y).unwrap())
    }

    /// The tolerance of a prior estimate: 4 standard deviations per class of the empirical
    /// frequency of N multinomial draws, Σ_c 4·sqrt(q_c(1 − q_c)/N) (classes 6 σ apart are
    /// told apart 99.7 % of the time, so EM's estimate is the empirical frequency to within
    /// the 0.3 % overlap, whose effect is much smaller).
    fn tolerance(q: &[f64], n: usize) -> f64 {
        q.iter()
            .map(|&p| 4.0 * (p * (1.0 - p) / n as f64).sqrt())
            .sum()
    }

    #[test]
    fn em_recovers_a_known_prior() {
        let source = [0.25; 4];
        let q = [0.5, 0.3, 0.15, 0.05];
        let (logits, labels) = gaussian_set(20_000, &q, &source, 1);
        let (est, iters) = em_prior(&logits, &source).unwrap();
        assert!(iters < EM_MAX_ITERATIONS, "EM did not converge");
        let tol = tolerance(&q, 20_000);
        assert!(
            l1(&est, &q) < tol,
            "EM {est:?} vs {q:?}: L1 {} ≥ {tol}",
            l1(&est, &q)
        );
        // Closer to the truth than the source prior it started from, by far.
        assert!(l1(&est, &q) < 0.1 * l1(&source, &q));
        // With the true prior as source there is nothing to move.
        let freq = label_frequencies(&labels, 4);
        assert!((freq.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bbse_recovers_a_known_prior() {
        let source = [0.25; 4];
        let q = [0.05, 0.15, 0.3, 0.5];
        let (val, val_labels) = gaussian_set(8_000, &source, &source, 2);
        let (test, _) = gaussian_set(20_000, &q, &source, 3);
        let est = bbse_prior(&val, &val_labels, &test, 4).unwrap();
        // ŵ_c ≈ μ̂_c / Ĉ_cc: the delta method adds the validation's variance,
        // q_c²(1 − p_c)/(p_c·N_val), to the test's q_c(1 − q_c)/N_test; 4 σ per class.
        let tol: f64 = q
            .iter()
            .zip(&source)
            .map(|(&qc, &pc)| {
                4.0 * (qc * (1.0 - qc) / 20_000.0 + qc * qc * (1.0 - pc) / (pc * 8_000.0)).sqrt()
            })
            .sum();
        assert!(
            l1(&est, &q) < tol,
            "BBSE {est:?} vs {q:?}: L1 {} ≥ {tol}",
            l1(&est, &q)
        );
        assert!((est.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn corrections_by_hand() {
        let z = Tensor::from_slice(&[1.0f64, 2.0, 3.0]).view([1, 3]);
        let out = correct_posterior(&z, &[0.5, 0.25, 0.25], &[0.25, 0.25, 0.5]);
        let got = Vec::<f64>::try_from(out.view([-1])).unwrap();
        let want = [1.0 + 2f64.ln(), 2.0, 3.0 - 2f64.ln()];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-12);
        }
        // Toward a uniform target, LA to q is today's LA plus a constant: same softmax.
        let lp = Tensor::from_slice(&[(0.7f64).ln(), (0.2f64).ln(), (0.1f64).ln()]);
        let a = adjust_toward(&z, &lp, &[1.0 / 3.0; 3], 1.0).softmax(1, Kind::Double);
        let b = (&z - &lp).softmax(1, Kind::Double);
        assert!(f64::try_from((a - b).abs().max()).unwrap() < 1e-12);
        assert!((l1(&[0.5, 0.5], &[0.25, 0.75]) - 0.5).abs() < 1e-15);
    }
}
