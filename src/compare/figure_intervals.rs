//! Paired bootstrap intervals of the figures beyond top-1 and ECE on a shifted test set:
//! adaptive ECE, NLL, Brier, over-confidence error (OE) and TACE.
//!
//! Each draw is the resample of [`super::bootstrap`] (the same generator, seed and draw index,
//! so the same resampled images as the top-1 and ECE intervals of the set), given as the number
//! of times each image was drawn; each figure is the estimator of [`super::estimators`]
//! applied to the resampled images, computed from those counts without copying the `[N, K]`
//! probabilities:
//!
//! * NLL and Brier: Σ_i count_i·term_i / N;
//! * OE: the 15 equal-width reliability bins' sums weighted by the counts (Thulasidasan et al.,
//!   NeurIPS 2019, Eq. 3);
//! * adaptive ECE and TACE (Nixon et al., CVPR-W 2019): the samples (TACE: each class's
//!   probabilities above 0.01) sorted once by value; a resample's equal-mass bins are the
//!   `np.array_split` of the sorted resample, walked with each sample repeated count_i times.
//!   Distinct samples of exactly equal value keep their order in the full set (a resample
//!   sorted stably would order them by draw position); the bins' sums differ only when such a
//!   tie straddles a bin edge with different outcomes.
//!
//! The interval is [`super::bootstrap::DEFAULT_INTERVAL`] (basic), as for top-1 and ECE: the
//! binned AECE, OE and TACE share the ECE's upward bias. Lower ends are clipped at 0, upper
//! ends of the percent figures at 100.
use super::bootstrap::{resample_counts, Interval, IntervalKind};
use super::estimators::{adaptive_ece, overconfidence_error, tace, Outputs, TACE_THRESHOLD};
use crate::metrics::{linspace_edges, reliability_bin, NUM_BINS};
use serde::{Deserialize, Serialize};

/// The five figures of one method on one resample (or on the set itself): AECE, OE and TACE in
/// percent, NLL in nats, Brier in [0, 2].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CalibrationValues {
    /// Adaptive ECE (15 equal-mass bins), %.
    pub adaptive_ece: f64,
    /// Mean −ln p_y, nats.
    pub nll: f64,
    /// Mean Brier score.
    pub brier: f64,
    /// Over-confidence error, %.
    pub oe: f64,
    /// TACE (threshold 0.01, 15 bins), %.
    pub tace: f64,
}

/// 95 % intervals of the five figures of [`CalibrationValues`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationIntervals {
    /// Adaptive ECE, %.
    pub adaptive_ece: Interval,
    /// NLL, nats.
    pub nll: Interval,
    /// Brier.
    pub brier: Interval,
    /// Over-confidence error, %.
    pub oe: Interval,
    /// TACE, %.
    pub tace: Interval,
}

impl Default for CalibrationIntervals {
    fn default() -> Self {
        let zero = Interval { lo: 0.0, hi: 0.0 };
        CalibrationIntervals {
            adaptive_ece: zero,
            nll: zero,
            brier: zero,
            oe: zero,
            tace: zero,
        }
    }
}

/// One sample's entry in a sorted list: (sample, value, outcome).
type Entry = (u32, f64, bool);

/// What a resample of one method's outputs needs for the five figures: per sample its
/// confidence, correctness, −ln p_y, Brier term and reliability bin; the samples sorted by
/// confidence; per class the probabilities above the TACE threshold, sorted.
#[derive(Debug, Clone)]
pub struct CalibrationCompact {
    conf: Vec<f64>,
    correct: Vec<bool>,
    nll: Vec<f64>,
    brier: Vec<f64>,
    bin: Vec<u8>,
    by_confidence: Vec<Entry>,
    tace_lists: Vec<Vec<Entry>>,
}

impl CalibrationCompact {
    /// The compact form of `out` (N samples; its `[N, K]` probabilities are read once).
    ///
    /// # Panics
    /// More than 2³² samples.
    pub fn of(out: &Outputs) -> CalibrationCompact {
        assert!(u32::try_from(out.len()).is_ok(), "at most 2^32 samples");
        let k = out.num_classes;
        let edges = linspace_edges(NUM_BINS);
        let correct: Vec<bool> = (0..out.len()).map(|i| out.correct(i)).collect();
        let mut by_confidence: Vec<Entry> = (0..out.len())
            .map(|i| (i as u32, out.confidence[i], correct[i]))
            .collect();
        by_confidence.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut tace_lists: Vec<Vec<Entry>> = vec![Vec::new(); k];
        for (i, row) in out.probs.chunks_exact(k).enumerate() {
            let y = out.labels[i] as usize;
            for (c, &p) in row.iter().enumerate() {
                if f64::from(p) > TACE_THRESHOLD {
                    tace_lists[c].push((i as u32, f64::from(p), c == y));
                }
            }
        }
        for v in &mut tace_lists {
            v.sort_by(|a, b| a.1.total_cmp(&b.1));
        }
        CalibrationCompact {
            bin: out
                .confidence
                .iter()
                .map(|&c| reliability_bin(&edges, c).map_or(u8::MAX, |b| b as u8))
                .collect(),
            conf: out.confidence.clone(),
            correct,
            nll: out.nll.clone(),
            brier: out.brier_per_sample(),
            by_confidence,
            tace_lists,
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

    /// The five figures of the resample in which sample i is drawn `count[i]` times (all ones:
    /// the set itself, equal to [`adaptive_ece`], [`overconfidence_error`], [`tace`] and the
    /// mean NLL and Brier of the outputs).
    ///
    /// # Panics
    /// `count` is not N long.
    pub fn values(&self, count: &[u32]) -> CalibrationValues {
        assert_eq!(count.len(), self.len(), "one count per sample");
        let total: u64 = count.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return CalibrationValues::default();
        }
        let n = total as f64;
        let weighted = |v: &[f64]| -> f64 {
            v.iter()
                .zip(count)
                .filter(|(_, &w)| w > 0)
                .map(|(x, &w)| f64::from(w) * x)
                .sum::<f64>()
                / n
        };
        let (aece_gap, _) = equal_mass(&self.by_confidence, count, NUM_BINS);
        let (tace_gaps, terms) = self
            .tace_lists
            .iter()
            .map(|v| equal_mass_mean_gaps(v, count, NUM_BINS))
            .fold((0.0, 0usize), |a, b| (a.0 + b.0, a.1 + b.1));
        CalibrationValues {
            adaptive_ece: 100.0 * aece_gap / n,
            nll: weighted(&self.nll),
            brier: weighted(&self.brier),
            oe: 100.0 * self.overconfidence(count),
            tace: if terms == 0 {
                0.0
            } else {
                100.0 * tace_gaps / terms as f64
            },
        }
    }

    /// Over-confidence error of the resample: Σ_b (n_b/n)·conf_b·max(conf_b − acc_b, 0) over
    /// the 15 equal-width bins, n the samples in some bin.
    fn overconfidence(&self, count: &[u32]) -> f64 {
        // Per bin: count, Σ confidence, Σ correct.
        let mut bins = [(0u64, 0.0f64, 0u64); NUM_BINS];
        for (i, &w) in count.iter().enumerate() {
            if w == 0 || self.bin[i] == u8::MAX {
                continue;
            }
            let a = &mut bins[self.bin[i] as usize];
            a.0 += u64::from(w);
            a.1 += f64::from(w) * self.conf[i];
            a.2 += u64::from(w) * u64::from(self.correct[i]);
        }
        let total: u64 = bins.iter().map(|b| b.0).sum();
        if total == 0 {
            return 0.0;
        }
        bins.iter()
            .filter(|b| b.0 > 0)
            .map(|b| {
                let conf = b.1 / b.0 as f64;
                conf * (b.1 - b.2 as f64).max(0.0)
            })
            .sum::<f64>()
            / total as f64
    }
}

/// The equal-mass bins (`np.array_split` of `bins` pieces) of the sorted `list` with entry e
/// repeated `count[e.0]` times: (Σ over bins of |hits − Σ value|, and per bin that gap over
/// the bin's size, summed) — the first is adaptive ECE's numerator, the second TACE's.
fn equal_mass_both(list: &[Entry], count: &[u32], bins: usize) -> (f64, f64, usize) {
    let m: u64 = list.iter().map(|e| u64::from(count[e.0 as usize])).sum();
    let (base, extra) = (m / bins as u64, m % bins as u64);
    let size = |b: usize| base + u64::from((b as u64) < extra);
    let (mut gap_sum, mut mean_gap_sum, mut terms) = (0.0, 0.0, 0usize);
    let (mut b, mut room) = (0usize, size(0));
    let (mut conf, mut hits) = (0.0f64, 0u64);
    for &(i, v, ok) in list {
        let mut w = u64::from(count[i as usize]);
        while w > 0 {
            // Only bins of size 0 follow a full last bin, and then no weight is left.
            let t = w.min(room);
            conf += t as f64 * v;
            hits += t * u64::from(ok);
            w -= t;
            room -= t;
            if room == 0 {
                let len = size(b) as f64;
                let gap = (hits as f64 - conf).abs();
                gap_sum += gap;
                mean_gap_sum += gap / len;
                terms += 1;
                (conf, hits) = (0.0, 0);
                b += 1;
                room = if b < bins { size(b) } else { 0 };
                if room == 0 {
                    break;
                }
            }
        }
    }
    (gap_sum, mean_gap_sum, terms)
}

/// Adaptive ECE's numerator on the resample: (Σ_b |hits_b − Σ conf_b|, bins).
fn equal_mass(list: &[Entry], count: &[u32], bins: usize) -> (f64, usize) {
    let (g, _, t) = equal_mass_both(list, count, bins);
    (g, t)
}

/// TACE's terms of one class on the resample: (Σ_b |acc_b − conf_b|, non-empty bins).
fn equal_mass_mean_gaps(list: &[Entry], count: &[u32], bins: usize) -> (f64, usize) {
    let (_, g, t) = equal_mass_both(list, count, bins);
    (g, t)
}

/// The five figures of every method on each of `draws` resamples of their N samples
/// ([`resample_counts`] with `seed`, the draws of [`super::bootstrap::paired_bootstrap`]):
/// per draw, per method. Two threads share the draws.
///
/// # Errors
/// A worker thread failed.
///
/// # Panics
/// Methods of different N.
pub fn draw_values(
    methods: &[CalibrationCompact],
    draws: usize,
    seed: u64,
) -> anyhow::Result<Vec<Vec<CalibrationValues>>> {
    let n = methods.first().map_or(0, CalibrationCompact::len);
    assert!(
        methods.iter().all(|m| m.len() == n),
        "paired bootstrap: every method on the same images"
    );
    let run = |range: std::ops::Range<usize>| -> Vec<Vec<CalibrationValues>> {
        let mut count = vec![0u32; n];
        range
            .map(|d| {
                resample_counts(seed, d, &mut count);
                methods.iter().map(|m| m.values(&count)).collect()
            })
            .collect()
    };
    let half = draws / 2;
    std::thread::scope(|s| {
        let h = s.spawn(|| run(half..draws));
        let mut first = run(0..half);
        first.extend(super::joined(h, "bootstrap")?);
        Ok(first)
    })
}

/// 95 % `kind` intervals of the five figures of every method from `draws` paired resamples
/// (see [`draw_values`]); with no sample every interval is [0, 0].
///
/// # Errors
/// A worker thread failed.
///
/// # Panics
/// Methods of different N, or `draws` is 0.
pub fn paired_calibration_intervals(
    methods: &[CalibrationCompact],
    draws: usize,
    seed: u64,
    kind: IntervalKind,
) -> anyhow::Result<Vec<CalibrationIntervals>> {
    assert!(draws > 0, "bootstrap: at least one draw");
    if methods.first().is_none_or(CalibrationCompact::is_empty) {
        return Ok(vec![CalibrationIntervals::default(); methods.len()]);
    }
    let all = draw_values(methods, draws, seed)?;
    Ok(methods
        .iter()
        .enumerate()
        .map(|(m, c)| {
            let est = c.values(&vec![1; c.len()]);
            let of = |f: fn(&CalibrationValues) -> f64, max: f64| {
                let v: Vec<f64> = all.iter().map(|d| f(&d[m])).collect();
                bounded(kind, f(&est), &v, max)
            };
            CalibrationIntervals {
                adaptive_ece: of(|v| v.adaptive_ece, 100.0),
                nll: of(|v| v.nll, f64::INFINITY),
                brier: of(|v| v.brier, 2.0),
                oe: of(|v| v.oe, 100.0),
                tace: of(|v| v.tace, 100.0),
            }
        })
        .collect())
}

/// `kind`'s interval of `estimate` from its bootstrap values, clipped to [0, `max`].
fn bounded(kind: IntervalKind, estimate: f64, draws: &[f64], max: f64) -> Interval {
    let (lo, hi) = (
        super::bootstrap::percentile(draws, 2.5),
        super::bootstrap::percentile(draws, 97.5),
    );
    let (lo, hi) = match kind {
        IntervalKind::Percentile => (lo, hi),
        IntervalKind::Basic => (2.0 * estimate - hi, 2.0 * estimate - lo),
    };
    Interval {
        lo: lo.clamp(0.0, max),
        hi: hi.clamp(0.0, max),
    }
}

/// The five figures of `out` by the estimators themselves (for the checks).
pub fn values_of(out: &Outputs) -> CalibrationValues {
    let ok: Vec<bool> = (0..out.len()).map(|i| out.correct(i)).collect();
    let n = out.len().max(1) as f64;
    CalibrationValues {
        adaptive_ece: 100.0 * adaptive_ece(&out.confidence, &ok, NUM_BINS),
        nll: out.nll.iter().sum::<f64>() / n,
        brier: out.brier_per_sample().iter().sum::<f64>() / n,
        oe: 100.0 * overconfidence_error(&out.confidence, &ok),
        tace: 100.0 * tace(out, TACE_THRESHOLD, NUM_BINS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::bootstrap::resample;

    /// N samples of K classes with distinct, spread probabilities (no ties), about 65 % right.
    fn outputs(n: usize, k: usize) -> Outputs {
        let mut probs = Vec::with_capacity(n * k);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let raw: Vec<f32> = (0..k)
                .map(|c| (1.0 + ((i * 7919 + c * 104_729) % 997) as f32 / 97.0).powi(3))
                .collect();
            let s: f32 = raw.iter().sum();
            probs.extend(raw.iter().map(|r| r / s));
            let best = (0..k)
                .max_by(|&a, &b| raw[a].total_cmp(&raw[b]))
                .unwrap_or(0);
            labels.push(if i % 20 < 13 {
                best
            } else {
                (best + 1 + i) % k
            } as i64);
        }
        Outputs::from_probabilities(k, probs, labels)
    }

    fn close(a: CalibrationValues, b: CalibrationValues, what: &str) {
        for (x, y, name) in [
            (a.adaptive_ece, b.adaptive_ece, "AECE"),
            (a.nll, b.nll, "NLL"),
            (a.brier, b.brier, "Brier"),
            (a.oe, b.oe, "OE"),
            (a.tace, b.tace, "TACE"),
        ] {
            assert!((x - y).abs() < 1e-9, "{what} {name}: {x} vs {y}");
        }
    }

    /// All-ones counts give the estimators' figures; a resample's counts give the estimators
    /// on the explicitly resampled outputs (sizes that are and are not multiples of 15).
    #[test]
    fn counts_equal_the_estimators_on_the_resample() {
        for (n, k) in [(300, 4), (47, 6), (10, 3)] {
            let out = outputs(n, k);
            let c = CalibrationCompact::of(&out);
            close(c.values(&vec![1; n]), values_of(&out), "full set");
            for d in 0..5 {
                let idx = resample(9, d, n);
                let mut count = vec![0u32; n];
                resample_counts(9, d, &mut count);
                let mut want = vec![0u32; n];
                for &i in &idx {
                    want[i] += 1;
                }
                assert_eq!(count, want, "the bootstrap's draw");
                let probs = idx
                    .iter()
                    .flat_map(|&i| out.probs[i * k..(i + 1) * k].to_vec())
                    .collect();
                let labels = idx.iter().map(|&i| out.labels[i]).collect();
                let r = Outputs::from_probabilities(k, probs, labels);
                close(c.values(&count), values_of(&r), &format!("n {n} draw {d}"));
            }
        }
    }

    #[test]
    fn intervals_bracket_the_estimates_and_are_seeded() {
        let out = outputs(400, 5);
        let c = CalibrationCompact::of(&out);
        let est = values_of(&out);
        let a = paired_calibration_intervals(std::slice::from_ref(&c), 200, 3, IntervalKind::Basic)
            .unwrap();
        let b = paired_calibration_intervals(std::slice::from_ref(&c), 200, 3, IntervalKind::Basic)
            .unwrap();
        assert_eq!(a, b);
        let iv = a[0];
        for (v, i, name) in [
            (est.nll, iv.nll, "NLL"),
            (est.brier, iv.brier, "Brier"),
            (est.adaptive_ece, iv.adaptive_ece, "AECE"),
        ] {
            assert!(i.lo < v && v < i.hi, "{name} {v} outside {i:?}");
        }
        let empty = Outputs::from_probabilities(3, Vec::new(), Vec::new());
        let none = paired_calibration_intervals(
            &[CalibrationCompact::of(&empty)],
            10,
            0,
            IntervalKind::Basic,
        )
        .unwrap();
        assert_eq!(none[0], CalibrationIntervals::default());
    }
}
