//! Seeded bootstrap confidence intervals (Efron & Tibshirani, 1993) for top-1 and ECE, overall
//! and per group: the basic (pivotal) interval by default, the percentile one on request
//! ([`IntervalKind`]).
//!
//! Why not the percentile interval: the binned ECE is biased upward (|mean of a bin's noisy
//! accuracies − its confidence| > 0 even for a calibrated model), and more so on a resample,
//! which repeats samples and so has fewer distinct ones per bin. The percentile interval takes
//! the resamples' distribution as that of the estimate around the truth, so for a
//! well-calibrated method it lies to the right of the true ECE, often wholly above the point
//! estimate itself (issue 18: ECE 0.75 % with "95 %" interval [0.77, 1.83]). The basic
//! interval uses the resamples' spread *around the estimate* as the estimate's spread around
//! the truth (θ̂* − θ̂ ≈ θ̂ − θ), which carries the bias over with its sign:
//! `[2θ̂ − q(97.5), 2θ̂ − q(2.5)]`. Its coverage is measured by simulation in
//! [`super::coverage`]. BCa was not taken: its bias correction z₀ = Φ⁻¹(share of θ̂* < θ̂) is
//! infinite exactly in the case above (every resample's ECE exceeds the estimate), and its
//! acceleration needs N jackknife ECEs per method and group.
//!
//! Draw `d` resamples the N scored images with replacement from its own generator, seeded by
//! `(seed, d)`: every method scored with the same seed sees the same resamples (a paired
//! bootstrap), and the intervals do not depend on the number of threads.
use super::estimators::{Group, Outputs};
use crate::metrics::{linspace_edges, reliability_bin, NUM_BINS};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Draws of the bootstrap when not told otherwise.
pub const DEFAULT_DRAWS: usize = 1000;

/// Fewer scored images than this: no bootstrap interval is drawn (`compare` refuses a scored
/// split this small and skips a shifted test set this small, saying so). A resampled top-1 of
/// n images takes at most n + 1 values, so under 20 an interval's ends move in steps of 5
/// points or more.
pub const MIN_BOOTSTRAP_IMAGES: usize = 20;

/// How a 95 % interval is read from the B bootstrap values θ̂*_b of a figure whose estimate on
/// the scored images is θ̂; q(p) is the p-th percentile of the θ̂*_b ([`percentile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalKind {
    /// `[2θ̂ − q(97.5), 2θ̂ − q(2.5)]`, clipped to [0, 100] (Efron & Tibshirani 1993, §13.4;
    /// Davison & Hinkley 1997, eq. 5.6, "basic bootstrap"). Accounts for an estimator's bias
    /// (the binned ECE's); its lower end may reach 0, where the ECE of a calibrated model is.
    Basic,
    /// `[q(2.5), q(97.5)]` (Efron & Tibshirani 1993, §13.3). Right for an unbiased, symmetric
    /// estimate such as top-1; to the right of the truth for the binned ECE.
    Percentile,
}

/// The interval of `mislas compare` and the Methods view: [`IntervalKind::Basic`] (see the
/// module's comment for why).
pub const DEFAULT_INTERVAL: IntervalKind = IntervalKind::Basic;

impl IntervalKind {
    /// Its name in tables: "basic" or "percentile".
    pub fn name(self) -> &'static str {
        match self {
            IntervalKind::Basic => "basic",
            IntervalKind::Percentile => "percentile",
        }
    }

    /// The interval of an estimate `estimate` from its bootstrap values `draws` (percent).
    pub fn interval(self, estimate: f64, draws: &[f64]) -> Interval {
        let (q_lo, q_hi) = (percentile(draws, 2.5), percentile(draws, 97.5));
        match self {
            IntervalKind::Percentile => Interval { lo: q_lo, hi: q_hi },
            IntervalKind::Basic => Interval {
                lo: (2.0 * estimate - q_hi).clamp(0.0, 100.0),
                hi: (2.0 * estimate - q_lo).clamp(0.0, 100.0),
            },
        }
    }
}

/// The percentile kind: `comparison.json` files written before the kind was recorded used it.
pub fn legacy_interval_kind() -> IntervalKind {
    IntervalKind::Percentile
}

/// A two-sided 95 % bootstrap interval ([`IntervalKind`]), in the figure's unit (percent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// The intervals of one group, and the debiased ECE that the ECE interval is about.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupIntervals {
    /// Top-1 accuracy, %.
    pub top1: Interval,
    /// ECE (15 equal-width bins, the reference's definition), %: an interval for the
    /// population's binned ECE, which the plug-in estimate overstates.
    pub ece: Interval,
    /// Kumar et al.'s debiased ECE on the scored images, %, on the same bins
    /// ([`super::debiased_ece`]); may be slightly below 0. 0 in files written before it was.
    #[serde(default)]
    pub ece_debiased: f64,
}

/// The `n` indices of draw `draw`: uniform with replacement from `0..n`, generated by a
/// [`rand::rngs::StdRng`] seeded with a SplitMix64 mix of `seed` and `draw`.
pub fn resample(seed: u64, draw: usize, n: usize) -> Vec<usize> {
    let mut rng = draw_rng(seed, draw);
    (0..n).map(|_| rng.random_range(0..n)).collect()
}

/// The multiplicities of draw `draw` of N = `count.len()` samples: `count[i]` is how often
/// [`resample`]`(seed, draw, N)` holds i (the same generator, so the same resample).
pub fn resample_counts(seed: u64, draw: usize, count: &mut [u32]) {
    let n = count.len();
    let mut rng = draw_rng(seed, draw);
    count.fill(0);
    for _ in 0..n {
        count[rng.random_range(0..n)] += 1;
    }
}

fn draw_rng(seed: u64, draw: usize) -> rand::rngs::StdRng {
    // SplitMix64 (Steele et al., 2014) of seed and draw: distinct, well-mixed streams.
    let mut z = seed.wrapping_add(
        (draw as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    rand::rngs::StdRng::seed_from_u64(z ^ (z >> 31))
}

/// The `q`-th percentile (0–100) of `values` with linear interpolation between order
/// statistics, as NumPy's default `np.percentile(values, q)`. NaN for no value.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Per sample of one method's outputs, what a draw needs: its reliability bin (`u8::MAX` for
/// none), confidence, correctness and the groups its class belongs to (bit g for `groups[g]`).
/// A few bytes per sample, so that many methods' intervals can share the draws after their
/// `[N, K]` probabilities are gone.
#[derive(Debug, Clone)]
pub struct Compact {
    bin: Vec<u8>,
    conf: Vec<f64>,
    correct: Vec<bool>,
    mask: Vec<u64>,
}

impl Compact {
    /// The compact form of `outputs` for `groups`.
    ///
    /// # Panics
    /// More than 64 groups.
    pub fn of(outputs: &Outputs, groups: &[Group]) -> Compact {
        assert!(groups.len() <= 64, "bootstrap: at most 64 groups");
        let edges = linspace_edges(NUM_BINS);
        Compact {
            bin: outputs
                .confidence
                .iter()
                .map(|&c| reliability_bin(&edges, c).map_or(u8::MAX, |b| b as u8))
                .collect(),
            conf: outputs.confidence.clone(),
            correct: (0..outputs.len()).map(|i| outputs.correct(i)).collect(),
            mask: outputs
                .labels
                .iter()
                .map(|&y| {
                    groups
                        .iter()
                        .enumerate()
                        .filter(|(_, g)| g.classes[y as usize])
                        .fold(0u64, |m, (g, _)| m | (1 << g))
                })
                .collect(),
        }
    }

    /// N, the number of samples.
    pub fn len(&self) -> usize {
        self.conf.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.conf.is_empty()
    }

    /// The compact form of top-1 predictions given only by their confidences (in [0, 1]) and
    /// whether they were right, all in one group (group 0): for simulations.
    ///
    /// # Panics
    /// The slices differ in length.
    pub fn from_confidences(confidence: &[f64], correct: &[bool]) -> Compact {
        assert_eq!(
            confidence.len(),
            correct.len(),
            "one correctness per confidence"
        );
        let edges = linspace_edges(NUM_BINS);
        Compact {
            bin: confidence
                .iter()
                .map(|&c| reliability_bin(&edges, c).map_or(u8::MAX, |b| b as u8))
                .collect(),
            conf: confidence.to_vec(),
            correct: correct.to_vec(),
            mask: vec![1; confidence.len()],
        }
    }

    /// Top-1 and ECE (percent) of each of the first `groups` groups on all samples once.
    pub fn figures(&self, groups: usize) -> Vec<(f64, f64)> {
        draw_figures(self, groups, &vec![1; self.len()])
    }

    /// Kumar et al.'s debiased ECE (percent, [`super::debiased_ece`]) of each of the
    /// `groups` groups (all it was made for) on all samples once, over the samples in a bin
    /// (as the plug-in ECE).
    pub fn debiased_ece(&self, groups: usize) -> Vec<f64> {
        let (_, _, bins) = draw_sums(self, groups, &vec![1; self.len()]);
        (0..groups)
            .map(|g| {
                let gb: Vec<(f64, f64, f64)> = bins[g * NUM_BINS..(g + 1) * NUM_BINS]
                    .iter()
                    .map(|a| (f64::from(a.0), a.1, f64::from(a.2)))
                    .collect();
                let n: f64 = gb.iter().map(|a| a.0).sum();
                100.0 * super::debiased_ece::debiased_ece_of_bins(&gb, n)
            })
            .collect()
    }
}

/// Per group of a resample: samples, hits, and per bin (count, Σ confidence, Σ correct).
type Sums = (Vec<u32>, Vec<u32>, Vec<(u32, f64, u32)>);

/// Top-1 and ECE (percent) of each group on a resample given by its multiplicities: sample i
/// drawn `count[i]` times.
fn draw_figures(c: &Compact, groups: usize, count: &[u32]) -> Vec<(f64, f64)> {
    let (n, hits, bins) = draw_sums(c, groups, count);
    (0..groups)
        .map(|g| {
            let top1 = if n[g] == 0 {
                0.0
            } else {
                100.0 * hits[g] as f64 / n[g] as f64
            };
            let gb = &bins[g * NUM_BINS..(g + 1) * NUM_BINS];
            let total: u32 = gb.iter().map(|a| a.0).sum();
            let gap: f64 = gb.iter().map(|a| (a.2 as f64 - a.1).abs()).sum();
            let ece = if total == 0 {
                0.0
            } else {
                100.0 * gap / total as f64
            };
            (top1, ece)
        })
        .collect()
}

/// The sums of each group on a resample (see [`draw_figures`]).
fn draw_sums(c: &Compact, groups: usize, count: &[u32]) -> Sums {
    let mut n = vec![0u32; groups];
    let mut hits = vec![0u32; groups];
    // Per group and bin: count, Σ confidence, Σ correct.
    let mut bins = vec![(0u32, 0.0f64, 0u32); groups * NUM_BINS];
    for (i, &w) in count.iter().enumerate() {
        if w == 0 {
            continue;
        }
        let (ok, b) = (w * u32::from(c.correct[i]), c.bin[i]);
        let conf = f64::from(w) * c.conf[i];
        let mut m = c.mask[i];
        while m != 0 {
            let g = m.trailing_zeros() as usize;
            m &= m - 1;
            n[g] += w;
            hits[g] += ok;
            if b != u8::MAX {
                let a = &mut bins[g * NUM_BINS + b as usize];
                a.0 += w;
                a.1 += conf;
                a.2 += ok;
            }
        }
    }
    (n, hits, bins)
}

/// 95 % intervals ([`DEFAULT_INTERVAL`]) of top-1 and ECE for each group, from `draws` resamples of the
/// N samples of `outputs` (see [`resample`]); groups are recomputed on each resample (a
/// group's size varies between draws, as it would between test sets). Two threads share the
/// draws. With no sample, every interval is [0, 0].
///
/// # Errors
/// A worker thread failed.
///
/// # Panics
/// More than 64 groups, or `draws` is 0.
pub fn bootstrap(
    outputs: &Outputs,
    groups: &[Group],
    draws: usize,
    seed: u64,
) -> anyhow::Result<Vec<GroupIntervals>> {
    let compact = Compact::of(outputs, groups);
    Ok(paired_bootstrap(&[compact], groups.len(), draws, seed)?.remove(0))
}

/// [`bootstrap`] of several methods scored on the same N images, on the same resamples (a
/// paired bootstrap): each draw's indices are generated once, counted per sample, and every
/// method's figures taken from the counts (Σ over drawn indices = Σ_i count_i · term_i).
/// Result: per method, per group (`groups` of them) the [`DEFAULT_INTERVAL`] intervals.
///
/// # Errors
/// A worker thread failed.
///
/// # Panics
/// Methods of different N, or `draws` is 0.
pub fn paired_bootstrap(
    methods: &[Compact],
    groups: usize,
    draws: usize,
    seed: u64,
) -> anyhow::Result<Vec<Vec<GroupIntervals>>> {
    Ok(paired_bootstrap_of(methods, groups, draws, seed, &[DEFAULT_INTERVAL])?.remove(0))
}

/// [`paired_bootstrap`] with intervals of each of `kinds`, read from the same draws: per kind,
/// per method, per group.
///
/// # Panics
/// As [`paired_bootstrap`].
pub fn paired_bootstrap_of(
    methods: &[Compact],
    groups: usize,
    draws: usize,
    seed: u64,
    kinds: &[IntervalKind],
) -> anyhow::Result<Vec<Vec<Vec<GroupIntervals>>>> {
    assert!(draws > 0, "bootstrap: at least one draw");
    let n = methods.first().map_or(0, Compact::len);
    assert!(
        methods.iter().all(|m| m.len() == n),
        "paired bootstrap: every method on the same images"
    );
    let all = draw_all(methods, groups, draws, seed)?;
    let estimates: Vec<Vec<(f64, f64)>> = methods.iter().map(|c| c.figures(groups)).collect();
    let debiased: Vec<Vec<f64>> = methods.iter().map(|c| c.debiased_ece(groups)).collect();
    let per_kind = |kind: IntervalKind| -> Vec<Vec<GroupIntervals>> {
        (0..methods.len())
            .map(|m| {
                (0..groups)
                    .map(|g| {
                        let top1: Vec<f64> = all.iter().map(|d| d[m][g].0).collect();
                        let ece: Vec<f64> = all.iter().map(|d| d[m][g].1).collect();
                        let (t, e) = estimates[m][g];
                        GroupIntervals {
                            top1: kind.interval(t, &top1),
                            ece: kind.interval(e, &ece),
                            ece_debiased: debiased[m][g],
                        }
                    })
                    .collect()
            })
            .collect()
    };
    Ok(kinds.iter().map(|&k| per_kind(k)).collect())
}

/// One draw's figures: per method, per group, (top-1, ECE).
type DrawFigures = Vec<Vec<(f64, f64)>>;

/// Per draw, per method, per group: (top-1, ECE) on the resamples of [`paired_bootstrap`], two
/// threads sharing the draws; one draw of zeros when there is no sample.
fn draw_all(
    methods: &[Compact],
    groups: usize,
    draws: usize,
    seed: u64,
) -> anyhow::Result<Vec<DrawFigures>> {
    let n = methods.first().map_or(0, Compact::len);
    let run = |range: std::ops::Range<usize>| -> Vec<Vec<Vec<(f64, f64)>>> {
        let mut count = vec![0u32; n];
        range
            .map(|d| {
                resample_counts(seed, d, &mut count);
                methods
                    .iter()
                    .map(|c| draw_figures(c, groups, &count))
                    .collect()
            })
            .collect()
    };
    let half = draws / 2;
    let mut all = std::thread::scope(|s| {
        let h = s.spawn(|| run(half..draws));
        let mut first = run(0..half);
        first.extend(super::joined(h, "bootstrap")?);
        Ok::<_, anyhow::Error>(first)
    })?;
    if n == 0 {
        all = vec![vec![vec![(0.0, 0.0); groups]; methods.len()]];
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::estimators::{classwise_ece, figures};

    /// 300 samples of 4 classes, confidences spread over (0.25, 1], about 70 % right.
    fn outputs() -> Outputs {
        let (n, k) = (300usize, 4usize);
        let mut probs = Vec::with_capacity(n * k);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let top = 0.25 + 0.75 * ((i * 37 % 101) as f32 / 100.0);
            let rest = (1.0 - top) / 3.0;
            let pred = i % k;
            probs.extend((0..k).map(|c| if c == pred { top } else { rest }));
            labels.push(if i % 10 < 7 {
                pred as i64
            } else {
                ((pred + 1) % k) as i64
            });
        }
        Outputs::from_probabilities(k, probs, labels)
    }

    /// The threaded, compact bootstrap equals recomputing [`figures`] on each explicit
    /// resample and taking NumPy-style percentiles: as they are (percentile) and reflected
    /// about the full sample's figure (basic, the default).
    #[test]
    fn bootstrap_equals_recomputed_resamples() {
        let out = outputs();
        let groups = Group::standard(&[500, 50, 10, 5], [0, 1], [1, 3], [3, 4]);
        let kinds = [IntervalKind::Percentile, IntervalKind::Basic];
        let compact = Compact::of(&out, &groups);
        let both = paired_bootstrap_of(&[compact], groups.len(), 40, 11, &kinds).unwrap();
        assert_eq!(
            both[1][0],
            bootstrap(&out, &groups, 40, 11).unwrap(),
            "basic by default"
        );
        let full = figures(
            &out,
            &groups,
            &classwise_ece(&out).unwrap(),
            &out.brier_per_sample(),
        );
        let mut per_draw = vec![(Vec::new(), Vec::new()); groups.len()];
        for d in 0..40 {
            let idx = resample(11, d, out.len());
            let k = out.num_classes;
            let probs = idx
                .iter()
                .flat_map(|&i| out.probs[i * k..(i + 1) * k].to_vec())
                .collect();
            let labels = idx.iter().map(|&i| out.labels[i]).collect();
            let r = Outputs::from_probabilities(k, probs, labels);
            let f = figures(
                &r,
                &groups,
                &classwise_ece(&r).unwrap(),
                &r.brier_per_sample(),
            );
            for (g, fg) in f.iter().enumerate() {
                per_draw[g].0.push(fg.top1);
                per_draw[g].1.push(fg.ece);
            }
        }
        for (g, (t, e)) in per_draw.iter().enumerate() {
            let (pct, basic) = (both[0][0][g], both[1][0][g]);
            let (ft, fe) = (full[g].top1, full[g].ece);
            let clip = |v: f64| v.clamp(0.0, 100.0);
            for (a, b) in [
                (pct.top1.lo, percentile(t, 2.5)),
                (pct.top1.hi, percentile(t, 97.5)),
                (pct.ece.lo, percentile(e, 2.5)),
                (pct.ece.hi, percentile(e, 97.5)),
                (basic.top1.lo, clip(2.0 * ft - percentile(t, 97.5))),
                (basic.top1.hi, clip(2.0 * ft - percentile(t, 2.5))),
                (basic.ece.lo, clip(2.0 * fe - percentile(e, 97.5))),
                (basic.ece.hi, clip(2.0 * fe - percentile(e, 2.5))),
            ] {
                assert!((a - b).abs() < 1e-9, "group {}: {a} vs {b}", groups[g].name);
            }
            assert_eq!(pct.ece_debiased, basic.ece_debiased);
        }
    }

    /// The debiased ECE of the bootstrap's compact form is Kumar et al.'s formula on the 15
    /// bins of [`figures`], and lies below the plug-in ECE.
    #[test]
    fn the_debiased_ece_uses_the_plug_ins_bins() {
        let out = outputs();
        let groups = Group::standard(&[500, 500, 500, 500], [0, 4], [4, 4], [4, 4]);
        let f = figures(
            &out,
            &groups,
            &classwise_ece(&out).unwrap(),
            &out.brier_per_sample(),
        );
        let bins: Vec<(f64, f64, f64)> = f[0]
            .bins
            .iter()
            .map(|b| {
                let n = b.count as f64;
                (n, b.confidence * n, b.accuracy * n)
            })
            .collect();
        let n: f64 = bins.iter().map(|b| b.0).sum();
        let want = 100.0 * crate::compare::debiased_ece::debiased_ece_of_bins(&bins, n);
        let got = Compact::of(&out, &groups).debiased_ece(groups.len())[0];
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        assert!(got < f[0].ece, "{got} vs plug-in {}", f[0].ece);
    }

    /// Issue 18's case: every resample's ECE above the estimate. The percentile interval lies
    /// wholly above it; the basic one reaches down towards 0.
    #[test]
    fn the_basic_interval_reflects_a_biased_estimate() {
        let draws = [0.77, 1.0, 1.2, 1.5, 1.83];
        let p = IntervalKind::Percentile.interval(0.75, &draws);
        assert_eq!(
            (p.lo, p.hi),
            (percentile(&draws, 2.5), percentile(&draws, 97.5))
        );
        assert!(p.lo > 0.75);
        let b = IntervalKind::Basic.interval(0.75, &draws);
        assert_eq!(b.lo, 0.0, "2·0.75 − q(97.5) < 0 is clipped to 0");
        assert!((b.hi - (1.5 - percentile(&draws, 2.5))).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_estimate() {
        let out = outputs();
        let groups = Group::standard(&[500, 500, 500, 500], [0, 4], [4, 4], [4, 4]);
        let a = bootstrap(&out, &groups, 200, 3).unwrap();
        assert_eq!(a, bootstrap(&out, &groups, 200, 3).unwrap());
        assert_ne!(a, bootstrap(&out, &groups, 200, 4).unwrap());
        let f = figures(
            &out,
            &groups,
            &classwise_ece(&out).unwrap(),
            &out.brier_per_sample(),
        );
        let (iv, fig) = (a[0], &f[0]);
        assert!(
            iv.top1.lo < fig.top1 && fig.top1 < iv.top1.hi,
            "{iv:?} {}",
            fig.top1
        );
        assert!(
            iv.ece.lo < fig.ece && fig.ece < iv.ece.hi,
            "{iv:?} {}",
            fig.ece
        );
        // About ±1.96·sqrt(p(1−p)/N) = ±5.2 points for p = 0.7, N = 300.
        let half = (iv.top1.hi - iv.top1.lo) / 2.0;
        assert!((4.0..6.5).contains(&half), "half-width {half}");
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        // np.percentile([3, 1, 2, 10], [0, 25, 50, 100]) -> [1, 1.75, 2.5, 10]
        let v = [3.0, 1.0, 2.0, 10.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 25.0), 1.75);
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
