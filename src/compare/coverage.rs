//! How often the bootstrap's 95 % intervals hold the truth, by simulation: top-1 predictions
//! whose accuracy at confidence c is c^k, with the confidence uniform on [lo, hi]. k = 1 is a
//! calibrated model (true ECE 0); k > 1 an over-confident one whose true figures are known in
//! closed form ([`Scenario::true_top1`], [`Scenario::true_ece`]).
//!
//! What "coverage" means for the ECE: the interval is for the population's binned ECE (the
//! reference's 15 equal-width bins), the value the plug-in estimate tends to as N grows. For a
//! calibrated model that value is 0; an interval covers it when its lower end is 0, which the
//! basic interval can reach (its raw lower end 2θ̂ − q(97.5) is at or below 0) and the
//! percentile interval, whose ends are plug-in ECEs of resamples, all above 0, cannot.
//!
//! The unit test of this file runs a short version (200 replications × 200 draws of 2000
//! samples); `cargo run --release --example interval_coverage` prints the long one.
use super::bootstrap::{paired_bootstrap_of, Compact, IntervalKind};
use crate::metrics::NUM_BINS;
use rand::{Rng, SeedableRng};

/// A population of top-1 predictions: confidence C ~ Uniform[`lo`, `hi`], right with
/// probability C^`k`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    /// Lowest confidence, in [0, 1).
    pub lo: f64,
    /// Highest confidence, in (lo, 1].
    pub hi: f64,
    /// Accuracy at confidence c is c^k (k = 1: calibrated; k > 1: over-confident).
    pub k: f64,
}

impl Scenario {
    /// True top-1, %: E[C^k] = (hi^(k+1) − lo^(k+1)) / ((k + 1)(hi − lo)).
    pub fn true_top1(&self) -> f64 {
        let k1 = self.k + 1.0;
        100.0 * (self.hi.powf(k1) - self.lo.powf(k1)) / (k1 * (self.hi - self.lo))
    }

    /// True binned ECE, %: Σ_b |∫_b (c^k − c) dc| / (hi − lo) over the 15 equal-width bins
    /// (the population's Σ_b P(b)·|acc_b − conf_b|), with ∫ (c^k − c) dc = c^(k+1)/(k+1) − c²/2.
    pub fn true_ece(&self) -> f64 {
        let prim = |c: f64| c.powf(self.k + 1.0) / (self.k + 1.0) - c * c / 2.0;
        let gap: f64 = (0..NUM_BINS)
            .map(|b| {
                let a = (b as f64 / NUM_BINS as f64).max(self.lo);
                let z = ((b + 1) as f64 / NUM_BINS as f64).min(self.hi);
                if z > a {
                    (prim(z) - prim(a)).abs()
                } else {
                    0.0
                }
            })
            .sum();
        100.0 * gap / (self.hi - self.lo)
    }

    /// `n` predictions drawn with `rng`: confidences and whether each was right.
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> (Vec<f64>, Vec<bool>) {
        let conf: Vec<f64> = (0..n)
            .map(|_| self.lo + (self.hi - self.lo) * rng.random::<f64>())
            .collect();
        let correct = conf
            .iter()
            .map(|c| rng.random::<f64>() < c.powf(self.k))
            .collect();
        (conf, correct)
    }
}

/// What the replications of one scenario found for one interval kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coverage {
    /// The interval kind.
    pub kind: IntervalKind,
    /// Share of replications whose top-1 interval holds the true top-1.
    pub top1: f64,
    /// Share whose ECE interval holds the true ECE (see the module's comment for ECE 0).
    pub ece: f64,
    /// Share whose ECE interval lies wholly above its own plug-in estimate (issue 18's case).
    pub ece_above_estimate: f64,
}

/// What [`simulate`] found: the coverage of each kind, and the mean estimates.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// One per kind asked, in that order.
    pub coverage: Vec<Coverage>,
    /// Mean plug-in ECE over the replications, %.
    pub mean_ece: f64,
    /// Mean debiased ECE ([`super::debiased_ece`]) over the replications, %.
    pub mean_debiased_ece: f64,
}

/// `replications` samples of `samples` predictions of `s`, each with `draws` bootstrap
/// resamples, seeded by `seed`; the intervals of every kind in `kinds` are read from the same
/// draws.
///
/// # Errors
/// A bootstrap worker thread failed.
///
/// # Panics
/// `replications` or `draws` is 0.
pub fn simulate(
    s: &Scenario,
    samples: usize,
    draws: usize,
    replications: usize,
    seed: u64,
    kinds: &[IntervalKind],
) -> anyhow::Result<Simulation> {
    assert!(replications > 0, "coverage: at least one replication");
    let (top1, ece) = (s.true_top1(), s.true_ece());
    let mut hits = vec![[0usize; 3]; kinds.len()];
    let (mut sum_ece, mut sum_debiased) = (0.0, 0.0);
    for r in 0..replications {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(1_000_003) + r as u64);
        let (conf, correct) = s.sample(samples, &mut rng);
        let c = Compact::from_confidences(&conf, &correct);
        let estimate = c.figures(1)[0].1;
        sum_ece += estimate;
        sum_debiased += c.debiased_ece(1)[0];
        let per_kind = paired_bootstrap_of(&[c], 1, draws, seed + r as u64, kinds)?;
        for (h, iv) in hits.iter_mut().zip(&per_kind) {
            let iv = iv[0][0];
            h[0] += usize::from(iv.top1.lo <= top1 && top1 <= iv.top1.hi);
            h[1] += usize::from(iv.ece.lo <= ece && ece <= iv.ece.hi);
            h[2] += usize::from(iv.ece.lo > estimate);
        }
    }
    let share = |k: usize| k as f64 / replications as f64;
    Ok(Simulation {
        coverage: kinds
            .iter()
            .zip(&hits)
            .map(|(&kind, h)| Coverage {
                kind,
                top1: share(h[0]),
                ece: share(h[1]),
                ece_above_estimate: share(h[2]),
            })
            .collect(),
        mean_ece: sum_ece / replications as f64,
        mean_debiased_ece: sum_debiased / replications as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed forms against a midpoint rule of 200 000 points per unit.
    #[test]
    fn true_figures_match_numerical_integration() {
        let s = Scenario {
            lo: 0.3,
            hi: 1.0,
            k: 1.7,
        };
        let m = 140_000;
        let (mut acc, mut ece_bins) = (0.0, vec![(0.0, 0.0); NUM_BINS]);
        for i in 0..m {
            let c = s.lo + (s.hi - s.lo) * (i as f64 + 0.5) / m as f64;
            acc += c.powf(s.k) / m as f64;
            let b = ((c * NUM_BINS as f64) as usize).min(NUM_BINS - 1);
            ece_bins[b].0 += c.powf(s.k) / m as f64;
            ece_bins[b].1 += c / m as f64;
        }
        let ece: f64 = ece_bins.iter().map(|(a, c)| (a - c).abs()).sum();
        assert!((s.true_top1() - 100.0 * acc).abs() < 1e-6);
        assert!((s.true_ece() - 100.0 * ece).abs() < 1e-6);
        let calibrated = Scenario { k: 1.0, ..s };
        assert_eq!(calibrated.true_ece(), 0.0);
    }

    /// Coverage of 200 replications × 200 draws of 2000 samples, confidence uniform on
    /// [0.4, 1], against the nominal 95 %. Over R replications a coverage has binomial sd
    /// √(0.95·0.05/R) = 1.54 points for R = 200: an exact interval lies within 95 ± 4.6 (3 sd)
    /// save once in 370 runs; the bootstrap is exact only as N grows, so the floor asked is
    /// 95 − 3 sd − 2 points = 88.4 %. Measured (seeded, so these are the figures the test
    /// sees; `examples/interval_coverage.rs` prints them):
    ///
    /// | k    | true ECE | basic: top-1, ECE | percentile: top-1, ECE, above its estimate |
    /// |------|----------|-------------------|--------------------------------------------|
    /// | 1    | 0        | 94.0 %, 53.0 %    | 95.5 %, 0 %, 14.0 %                        |
    /// | 1.05 | 1.125 %  | 91.5 %, 86.0 %    | 92.5 %, 0 %, 9.5 %                         |
    /// | 1.5  | 10.08 %  | 90.5 %, 91.0 %    | 92.0 %, 92.5 %, 0 %                        |
    ///
    /// Where a model is miscalibrated well beyond the noise of its bins (k = 1.5) both kinds
    /// cover; as it nears calibration the percentile interval never holds the truth (it lies to
    /// its right, often above its own estimate: issue 18), while the basic one mostly does. At
    /// ECE exactly 0 no bootstrap of |·| is exact (the estimator is not smooth there): the basic
    /// interval reaches 0 about half the time, the percentile one never.
    #[test]
    fn basic_intervals_cover_the_true_ece_and_top1() {
        let kinds = [IntervalKind::Basic, IntervalKind::Percentile];
        let (reps, sd) = (200usize, (0.95f64 * 0.05 / 200.0).sqrt());
        let floor = 0.95 - 3.0 * sd - 0.02;
        let run = |k: f64, seed: u64| {
            let s = Scenario {
                lo: 0.4,
                hi: 1.0,
                k,
            };
            let sim = simulate(&s, 2000, 200, reps, seed, &kinds).unwrap();
            eprintln!("k {k}: true ECE {:.3} %: {sim:?}", s.true_ece());
            for c in &sim.coverage {
                assert!(c.top1 >= floor, "k {k}: top-1 {c:?}");
            }
            assert_eq!(sim.coverage[0].ece_above_estimate, 0.0, "k {k}");
            (s, sim)
        };
        // Miscalibrated beyond the bins' noise: both cover.
        let (_, sim) = run(1.5, 7);
        assert!(sim.coverage.iter().all(|c| c.ece >= floor), "{sim:?}");
        // Nearly calibrated: the percentile interval misses, the basic one covers far more
        // often; the debiased ECE is nearer the truth than the plug-in.
        for k in [1.0, 1.05] {
            let (s, sim) = run(k, 7);
            let (basic, pct) = (sim.coverage[0], sim.coverage[1]);
            assert!(pct.ece <= 0.02, "k {k}: {pct:?}");
            assert!(pct.ece_above_estimate > 0.05, "k {k}: {pct:?}");
            let want = if k == 1.0 { 0.4 } else { 0.8 };
            assert!(basic.ece >= want, "k {k}: {basic:?}");
            let truth = s.true_ece();
            assert!(
                (sim.mean_debiased_ece - truth).abs() < 0.7 * (sim.mean_ece - truth).abs(),
                "k {k}: {sim:?}"
            );
        }
    }
}
