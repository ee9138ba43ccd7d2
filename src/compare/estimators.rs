//! Calibration and accuracy estimators on stored per-sample outputs (a probability matrix and
//! the labels), overall and per group of classes.
//!
//! Every figure is a plain function of [`Outputs`]; each is checked against NumPy computing the
//! same definition (`tests/compare_numpy.rs`). Accuracies and calibration errors are in
//! percent, NLL in nats, Brier in [0, 2].
use crate::metrics::{calibration, linspace_edges, reliability_bin, ReliabilityBin, NUM_BINS};
use serde::{Deserialize, Serialize};

/// Per-sample outputs of one method on one split: `probs` is the row-major `[N, K]` matrix of
/// class probabilities (rows sum to 1), `labels` the `[N]` true classes in `0..K`.
///
/// Derived per sample once: the confidence (largest probability) and prediction (its first
/// arg-max, as `np.argmax`), whether it is right, and −ln p_y (from log-softmax when built
/// from logits, so that a confident mistake's NLL is not lost to float32 underflow).
#[derive(Debug, Clone)]
pub struct Outputs {
    /// K, the number of classes.
    pub num_classes: usize,
    /// `[N, K]` probabilities, row-major.
    pub probs: Vec<f32>,
    /// `[N]` true classes.
    pub labels: Vec<i64>,
    /// `[N]` largest probability of each row.
    pub confidence: Vec<f64>,
    /// `[N]` arg-max of each row (the first on ties).
    pub prediction: Vec<i64>,
    /// `[N]` −ln p_y, nats.
    pub nll: Vec<f64>,
}

impl Outputs {
    /// Outputs from probabilities: NLL is −ln p_y in float64 (infinite where p_y is 0, as NumPy
    /// gives).
    ///
    /// # Panics
    /// `probs` is not `labels.len() × num_classes` long, `num_classes` is 0, or a label is
    /// outside `0..num_classes`.
    pub fn from_probabilities(num_classes: usize, probs: Vec<f32>, labels: Vec<i64>) -> Self {
        let nll = Self::check(num_classes, &probs, &labels)
            .map(|(i, y)| -(probs[i * num_classes + y] as f64).ln())
            .collect();
        Self::with_nll(num_classes, probs, labels, nll)
    }

    /// Outputs from `[N, K]` logits (any float dtype, any device): probabilities are
    /// `softmax(logits)` in float32 and NLL `−log_softmax(logits)[y]` (float64 logits keep
    /// float64 for the NLL), as [`crate::metrics::EvalAccumulator`] computes them.
    ///
    /// # Errors
    /// The logits cannot be read as numbers.
    ///
    /// # Panics
    /// `logits` is not `[N, K]` with N labels, or a label is outside `0..K`.
    pub fn from_logits(logits: &tch::Tensor, labels: Vec<i64>) -> anyhow::Result<Self> {
        use tch::{Device, Kind, Tensor};
        let size = logits.size();
        assert!(
            size.len() == 2 && size[0] as usize == labels.len(),
            "Outputs::from_logits: expected logits [N, K] with N = {}, got {size:?}",
            labels.len()
        );
        let k = size[1] as usize;
        let logits = logits.to_device(Device::Cpu);
        let kind = if logits.kind() == Kind::Double {
            Kind::Double
        } else {
            Kind::Float
        };
        let logits = logits.to_kind(kind);
        let probs = super::values::<f32>(
            &logits
                .softmax(1, kind)
                .to_kind(Kind::Float)
                .contiguous()
                .view([-1]),
            "the softmax probabilities",
        )?;
        let y = Tensor::from_slice(&labels);
        if let Some(bad) = labels.iter().find(|&&l| !(0..k as i64).contains(&l)) {
            panic!("Outputs::from_logits: label {bad} outside 0..{k}");
        }
        let nll = super::values::<f64>(
            &-logits
                .log_softmax(1, kind)
                .gather(1, &y.unsqueeze(1), false)
                .squeeze_dim(1)
                .to_kind(Kind::Double),
            "the per-sample NLL",
        )?;
        Ok(Self::with_nll(k, probs, labels, nll))
    }

    fn check<'a>(
        k: usize,
        probs: &'a [f32],
        labels: &'a [i64],
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        assert!(k > 0, "Outputs: at least one class");
        assert_eq!(
            probs.len(),
            labels.len() * k,
            "Outputs: probabilities must be N × K"
        );
        labels.iter().enumerate().map(move |(i, &y)| {
            assert!(
                (0..k as i64).contains(&y),
                "Outputs: label {y} outside 0..{k}"
            );
            (i, y as usize)
        })
    }

    fn with_nll(k: usize, probs: Vec<f32>, labels: Vec<i64>, nll: Vec<f64>) -> Self {
        let (confidence, prediction) = probs
            .chunks_exact(k)
            .map(|row| {
                let (mut best, mut at) = (row[0], 0usize);
                for (j, &p) in row.iter().enumerate().skip(1) {
                    if p > best {
                        (best, at) = (p, j);
                    }
                }
                (best as f64, at as i64)
            })
            .unzip();
        Outputs {
            num_classes: k,
            probs,
            labels,
            confidence,
            prediction,
            nll,
        }
    }

    /// N, the number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether sample `i`'s prediction is its label.
    pub fn correct(&self, i: usize) -> bool {
        self.prediction[i] == self.labels[i]
    }

    /// `[N]` squared error of each probability row against the one-hot label,
    /// Σ_k (p_k − 1[y = k])² (Brier, 1950; the multi-class form of Guo et al. 2017).
    pub fn brier_per_sample(&self) -> Vec<f64> {
        let k = self.num_classes;
        self.probs
            .chunks_exact(k)
            .zip(&self.labels)
            .map(|(row, &y)| {
                let sq: f64 = row.iter().map(|&p| (p as f64) * (p as f64)).sum();
                let py = row[y as usize] as f64;
                // Σ (p − e_y)² = Σ p² − 2 p_y + 1
                (sq - 2.0 * py + 1.0).max(0.0)
            })
            .collect()
    }
}

/// A named set of classes that figures are reported for: `all`, the many/medium/few-shot splits
/// (by training count, [`crate::metrics::MANY_SHOT_ABOVE`] / [`crate::metrics::FEW_SHOT_BELOW`])
/// and the preset's head/medium/tail index ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// `all`, `many`, `medium`, `few`, `head`, `mid`, `tail`.
    pub name: String,
    /// `[K]` whether each class belongs to the group.
    pub classes: Vec<bool>,
}

impl Group {
    /// `all`, then the shot splits of `train_class_counts` and the class-index bands
    /// `head`/`med`/`tail` (half-open ranges, clipped to K). Empty groups are left out.
    pub fn standard(
        train_class_counts: &[usize],
        head: [usize; 2],
        med: [usize; 2],
        tail: [usize; 2],
    ) -> Vec<Group> {
        use crate::metrics::{FEW_SHOT_BELOW, MANY_SHOT_ABOVE};
        let k = train_class_counts.len();
        let by_count = |name: &str, keep: &dyn Fn(usize) -> bool| Group {
            name: name.into(),
            classes: train_class_counts.iter().map(|&c| keep(c)).collect(),
        };
        let band = |name: &str, r: [usize; 2]| Group {
            name: name.into(),
            classes: (0..k).map(|c| c >= r[0] && c < r[1]).collect(),
        };
        [
            by_count("all", &|_| true),
            by_count("many", &|c| c > MANY_SHOT_ABOVE),
            by_count("medium", &|c| {
                (FEW_SHOT_BELOW..=MANY_SHOT_ABOVE).contains(&c)
            }),
            by_count("few", &|c| c < FEW_SHOT_BELOW),
            band("head", head),
            band("mid", med),
            band("tail", tail),
        ]
        .into_iter()
        .filter(|g| g.classes.iter().any(|&b| b))
        .collect()
    }

    /// The samples whose true class is in the group.
    pub fn samples(&self, labels: &[i64]) -> Vec<usize> {
        (0..labels.len())
            .filter(|&i| self.classes[labels[i] as usize])
            .collect()
    }
}

/// The figures of one method on one group of samples (those whose true class is in the group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Samples in the group.
    pub samples: usize,
    /// Top-1 accuracy over the group's samples, %. (On a class-balanced test set this is the
    /// reference's mean per-class accuracy.)
    pub top1: f64,
    /// ECE, 15 equal-width bins, the reference's definition ([`calibration`]), %.
    pub ece: f64,
    /// Adaptive ECE, 15 equal-mass bins ([`adaptive_ece`]), %.
    pub adaptive_ece: f64,
    /// Classwise ECE ([`classwise_ece`]) averaged over the group's classes, %.
    pub classwise_ece: f64,
    /// MCE over the 15 equal-width bins, %.
    pub mce: f64,
    /// Mean −ln p_y, nats.
    pub nll: f64,
    /// Mean Σ_k (p_k − 1[y = k])², in [0, 2].
    pub brier: f64,
    /// The 15 equal-width reliability bins of the group's samples.
    pub bins: Vec<ReliabilityBin>,
}

/// Adaptive ECE (equal-mass bins; Nixon et al., "Measuring Calibration in Deep Learning",
/// CVPR-W 2019): samples sorted by confidence (stable: ties keep sample order) are cut into
/// `num_bins` consecutive bins as `np.array_split` cuts (the first N mod B bins one sample
/// larger); AECE = Σ_b (n_b / N)·|acc_b − conf_b| over the non-empty bins, a fraction in [0, 1].
/// Every sample counts, a confidence of 0 included. 0 with no sample.
///
/// # Panics
/// The slices differ in length or `num_bins` is 0.
pub fn adaptive_ece(confidences: &[f64], correct: &[bool], num_bins: usize) -> f64 {
    assert_eq!(confidences.len(), correct.len());
    assert!(num_bins > 0, "adaptive_ece: num_bins must be positive");
    let n = confidences.len();
    if n == 0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| confidences[a].total_cmp(&confidences[b]));
    let (base, extra) = (n / num_bins, n % num_bins);
    let mut start = 0;
    let mut total = 0.0;
    for b in 0..num_bins {
        let len = base + usize::from(b < extra);
        if len == 0 {
            continue;
        }
        let bin = &order[start..start + len];
        let conf: f64 = bin.iter().map(|&i| confidences[i]).sum();
        let hits = bin.iter().filter(|&&i| correct[i]).count() as f64;
        total += (hits - conf).abs();
        start += len;
    }
    total / n as f64
}

/// Classwise ECE (Kull et al., "Beyond temperature scaling", NeurIPS 2019), one value per
/// class: for class k, the reference's 15-bin ECE ([`calibration`]) of the probabilities
/// p_k of every sample against the indicator y = k. A probability of exactly 0 falls in no bin,
/// as in [`calibration`]; a class whose probabilities are all 0 has ECE 0. Fractions in [0, 1].
///
/// Runs over the `[N, K]` matrix once, on up to two threads.
///
/// # Errors
/// A worker thread failed.
pub fn classwise_ece(outputs: &Outputs) -> anyhow::Result<Vec<f64>> {
    let k = outputs.num_classes;
    let edges = linspace_edges(NUM_BINS);
    // Per class and bin: count, Σ p, Σ 1[y = k].
    let accumulate = |rows: std::ops::Range<usize>| {
        let mut acc = vec![(0u32, 0.0f64, 0u32); k * NUM_BINS];
        for i in rows {
            let row = &outputs.probs[i * k..(i + 1) * k];
            let y = outputs.labels[i] as usize;
            for (c, &p) in row.iter().enumerate() {
                if let Some(b) = reliability_bin(&edges, p as f64) {
                    let a = &mut acc[c * NUM_BINS + b];
                    a.0 += 1;
                    a.1 += p as f64;
                    a.2 += u32::from(c == y);
                }
            }
        }
        acc
    };
    let n = outputs.len();
    let mid = n / 2;
    let (a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| accumulate(mid..n));
        (accumulate(0..mid), super::joined(h, "classwise ECE"))
    });
    let b = b?;
    Ok((0..k)
        .map(|c| {
            let (mut total, mut gap) = (0u64, 0.0);
            for bin in 0..NUM_BINS {
                let (x, y) = (a[c * NUM_BINS + bin], b[c * NUM_BINS + bin]);
                let cnt = x.0 + y.0;
                if cnt > 0 {
                    total += cnt as u64;
                    gap += ((x.2 + y.2) as f64 - (x.1 + y.1)).abs();
                }
            }
            if total == 0 {
                0.0
            } else {
                gap / total as f64
            }
        })
        .collect())
}

/// Per class, mean confidence minus accuracy over the samples of that true class, in
/// percentage points: > 0 over-confident, < 0 under-confident; 0 for a class with no sample.
pub fn overconfidence_per_class(outputs: &Outputs) -> Vec<f64> {
    let k = outputs.num_classes;
    let mut sum = vec![0.0; k];
    let mut n = vec![0usize; k];
    for i in 0..outputs.len() {
        let y = outputs.labels[i] as usize;
        sum[y] += outputs.confidence[i] - f64::from(u8::from(outputs.correct(i)));
        n[y] += 1;
    }
    (0..k)
        .map(|c| {
            if n[c] == 0 {
                0.0
            } else {
                100.0 * sum[c] / n[c] as f64
            }
        })
        .collect()
}

/// Accuracy of each true class, %, 0 for a class with no sample.
pub fn accuracy_per_class(outputs: &Outputs) -> Vec<f64> {
    let k = outputs.num_classes;
    let mut hits = vec![0usize; k];
    let mut n = vec![0usize; k];
    for i in 0..outputs.len() {
        let y = outputs.labels[i] as usize;
        hits[y] += usize::from(outputs.correct(i));
        n[y] += 1;
    }
    (0..k)
        .map(|c| {
            if n[c] == 0 {
                0.0
            } else {
                100.0 * hits[c] as f64 / n[c] as f64
            }
        })
        .collect()
}

/// The figures of `outputs` for each group (see [`Figures`]); `classwise` is
/// [`classwise_ece`] of the same outputs and `brier` its [`Outputs::brier_per_sample`]. A group
/// with no sample reports zeros.
pub fn figures(
    outputs: &Outputs,
    groups: &[Group],
    classwise: &[f64],
    brier: &[f64],
) -> Vec<Figures> {
    groups
        .iter()
        .map(|g| {
            let idx = g.samples(&outputs.labels);
            let conf: Vec<f64> = idx.iter().map(|&i| outputs.confidence[i]).collect();
            let ok: Vec<bool> = idx.iter().map(|&i| outputs.correct(i)).collect();
            let (ece, mce, bins) = calibration(&conf, &ok, NUM_BINS);
            let n = idx.len();
            let mean = |v: f64| if n == 0 { 0.0 } else { v / n as f64 };
            let classes: Vec<f64> = (0..outputs.num_classes)
                .filter(|&c| g.classes[c])
                .map(|c| classwise[c])
                .collect();
            Figures {
                samples: n,
                top1: 100.0 * mean(ok.iter().filter(|&&b| b).count() as f64),
                ece: 100.0 * ece,
                adaptive_ece: 100.0 * adaptive_ece(&conf, &ok, NUM_BINS),
                classwise_ece: 100.0 * classes.iter().sum::<f64>() / classes.len().max(1) as f64,
                mce: 100.0 * mce,
                nll: mean(idx.iter().map(|&i| outputs.nll[i]).sum()),
                brier: mean(idx.iter().map(|&i| brier[i]).sum()),
                bins,
            }
        })
        .collect()
}

/// Over-confidence error (Thulasidasan et al., "On Mixup Training", NeurIPS 2019, §3.1):
/// OE = Σ_b (n_b / n)·conf_b·max(conf_b − acc_b, 0) over the reference's 15 equal-width bins
/// of the confidences ([`calibration`]'s bins: (lo, hi], a confidence of 0 in none, n the
/// samples in some bin). It counts only the bins where confidence exceeds accuracy, weighted
/// by their confidence. A fraction in [0, 1]; 0 with no sample.
///
/// # Panics
/// The slices differ in length.
pub fn overconfidence_error(confidences: &[f64], correct: &[bool]) -> f64 {
    let (_, _, bins) = calibration(confidences, correct, NUM_BINS);
    let total: usize = bins.iter().map(|b| b.count).sum();
    if total == 0 {
        return 0.0;
    }
    bins.iter()
        .filter(|b| b.count > 0)
        .map(|b| b.count as f64 * b.confidence * (b.confidence - b.accuracy).max(0.0))
        .sum::<f64>()
        / total as f64
}

/// The threshold of [`tace`] (Nixon et al. 2019 use 0.01 in their experiments).
pub const TACE_THRESHOLD: f64 = 0.01;

/// Thresholded adaptive calibration error (Nixon et al., "Measuring Calibration in Deep
/// Learning", CVPR-W 2019, §4, TACE): for each class k, the probabilities p_k above
/// `threshold` (strictly) of every sample, sorted (stable: ties keep sample order) and cut into
/// `num_bins` equal-mass bins as `np.array_split` cuts; per bin r the gap
/// |acc(r, k) − conf(r, k)| between the fraction of its samples whose label is k and their mean
/// p_k. TACE = the mean of the gaps over the non-empty (class, bin) pairs, which is the paper's
/// 1/(K·R) Σ_k Σ_r when every pair is non-empty (a class with fewer than R probabilities above
/// the threshold, or none, then adds fewer terms rather than zeros). A fraction in [0, 1]; 0
/// when no probability is above the threshold.
///
/// # Panics
/// `num_bins` is 0.
pub fn tace(outputs: &Outputs, threshold: f64, num_bins: usize) -> f64 {
    assert!(num_bins > 0, "tace: num_bins must be positive");
    let k = outputs.num_classes;
    let mut per_class: Vec<Vec<(f64, bool)>> = vec![Vec::new(); k];
    for (i, row) in outputs.probs.chunks_exact(k).enumerate() {
        let y = outputs.labels[i] as usize;
        for (c, &p) in row.iter().enumerate() {
            if f64::from(p) > threshold {
                per_class[c].push((f64::from(p), c == y));
            }
        }
    }
    let (mut gaps, mut terms) = (0.0, 0usize);
    for mut v in per_class {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (base, extra) = (v.len() / num_bins, v.len() % num_bins);
        let mut start = 0;
        for b in 0..num_bins {
            let len = base + usize::from(b < extra);
            if len == 0 {
                continue;
            }
            let bin = &v[start..start + len];
            let conf: f64 = bin.iter().map(|s| s.0).sum();
            let hits = bin.iter().filter(|s| s.1).count() as f64;
            gaps += (hits - conf).abs() / len as f64;
            terms += 1;
            start += len;
        }
    }
    if terms == 0 {
        0.0
    } else {
        gaps / terms as f64
    }
}
