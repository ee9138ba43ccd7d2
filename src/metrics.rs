//! Evaluation figures of the reference (`utils/metric.py`, `validate` of `train_stage1.py` and
//! `train_stage2.py` of the MiSLAS release): top-1/top-5, per-class accuracy, head/medium/tail
//! and many/medium/few-shot accuracy, ECE/MCE with 15 equal-width bins, NLL.
//!
//! [`calibration`] works on plain slices; [`EvalAccumulator`] collects per-sample figures from
//! batches of logits (on any device) into CPU vectors and turns them into an [`EvalReport`].
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Number of confidence bins of ECE/MCE and the reliability diagram (Guo et al., 2017; MiSLAS).
pub const NUM_BINS: usize = 15;

/// A class with more training images than this is many-shot; with this many or fewer, down to
/// [`FEW_SHOT_BELOW`], medium-shot (the split of Liu et al., 2019, OLTR, used by MiSLAS).
pub const MANY_SHOT_ABOVE: usize = 100;

/// A class with fewer training images than this is few-shot.
pub const FEW_SHOT_BELOW: usize = 20;

/// One bin of the reliability diagram: confidences in (lo, hi].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge (exclusive).
    pub lo: f64,
    /// Upper edge (inclusive).
    pub hi: f64,
    /// Samples whose confidence falls in the bin.
    pub count: usize,
    /// Mean confidence of those samples, in [0, 1] (0 when empty).
    pub confidence: f64,
    /// Their accuracy, in [0, 1] (0 when empty).
    pub accuracy: f64,
}

/// Everything one evaluation reports. Accuracies and ECE/MCE are in percent, NLL in nats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Evaluated samples.
    pub samples: usize,
    /// Top-1 accuracy, %.
    pub top1: f64,
    /// Top-5 accuracy, % (top-K when K < 5).
    pub top5: f64,
    /// Accuracy of each class, %, in class index order (`NaN`-free: 0 for a class with no test
    /// sample).
    pub per_class: Vec<f64>,
    /// Mean per-class accuracy over `head_class_idx`, % (the reference's `HAcc`).
    pub head: f64,
    /// Over `med_class_idx`, % (`MAcc`).
    pub medium: f64,
    /// Over `tail_class_idx`, % (`TAcc`).
    pub tail: f64,
    /// Mean accuracy of the many-shot classes (> 100 training images), %; `None` if there is none.
    pub many_shot: Option<f64>,
    /// Medium-shot classes (20–100 training images), %.
    pub medium_shot: Option<f64>,
    /// Few-shot classes (< 20 training images), %.
    pub few_shot: Option<f64>,
    /// Expected calibration error, % (15 bins, weighted by bin count).
    pub ece: f64,
    /// Maximum calibration error, % (largest gap over non-empty bins).
    pub mce: f64,
    /// Mean negative log-likelihood of the true class, nats.
    pub nll: f64,
    /// The 15 bins.
    pub bins: Vec<ReliabilityBin>,
}

impl EvalReport {
    /// The lines an evaluation adds to a run's log: the reference's `* Acc@1 … HAcc … MAcc … TAcc …`
    /// and `* ECE …` (percent, 3 decimals, as `train_stage1.py` logs them), then mislas's line with
    /// NLL, MCE and the many/medium/few-shot accuracies.
    pub fn report_lines(&self) -> [String; 3] {
        let pct = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}%"));
        [
            format!(
                "* Acc@1 {:.3}% Acc@5 {:.3}% HAcc {:.3}% MAcc {:.3}% TAcc {:.3}%.",
                self.top1, self.top5, self.head, self.medium, self.tail
            ),
            format!("* ECE   {:.3}%.", self.ece),
            format!(
                "* NLL {:.4} MCE {:.3}% Many {} Medium {} Few {}",
                self.nll,
                self.mce,
                pct(self.many_shot),
                pct(self.medium_shot),
                pct(self.few_shot)
            ),
        ]
    }
}

/// Bin edges as NumPy's `linspace(0, 1, num_bins + 1)` computes them: `i · (1/num_bins)`, the
/// last edge exactly 1. (`i / num_bins` differs in the last bit for some `i`, e.g. 5/7, which
/// moves a confidence lying on an edge into the neighbouring bin.)
pub fn linspace_edges(num_bins: usize) -> Vec<f64> {
    let step = 1.0 / num_bins as f64;
    let mut edges: Vec<f64> = (0..=num_bins).map(|i| i as f64 * step).collect();
    edges[num_bins] = 1.0;
    edges
}

/// The 0-based bin of confidence `c` among `edges` (from [`linspace_edges`]): `b` when
/// `edges[b] < c ≤ edges[b + 1]` (`np.digitize(c, edges, right=True) − 1`), `None` for a
/// confidence of exactly 0, outside [0, 1] or NaN (the reference counts those in no bin).
///
/// A first guess from `⌈c·n⌉` is corrected against the edges, so the result is the binary
/// search's bit for bit at a constant cost.
#[inline]
pub fn reliability_bin(edges: &[f64], c: f64) -> Option<usize> {
    let n = edges.len() - 1;
    if !(c > 0.0 && c <= 1.0) {
        return None;
    }
    // idx = number of edges < c, in 1..=n for c in (0, 1].
    let mut idx = ((c * n as f64).ceil() as usize).clamp(1, n);
    while idx > 1 && edges[idx - 1] >= c {
        idx -= 1;
    }
    while idx < n && edges[idx] < c {
        idx += 1;
    }
    Some(idx - 1)
}

/// Reliability bins, expected and maximum calibration error (Guo et al., 2017), as the
/// reference's `calibration` of `utils/metric.py` computes them.
///
/// * `confidences`: one per sample, the top softmax probability, in [0, 1].
/// * `correct`: one per sample, whether the top-1 prediction was right.
/// * `num_bins`: equal-width bins of [0, 1]; the edges are NumPy's
///   `linspace(0, 1, num_bins + 1)` bit for bit, and a confidence `c` falls in bin `b` when
///   `edge[b] < c ≤ edge[b + 1]` (`np.digitize(c, edges, right=True) == b + 1`). A confidence of
///   exactly 0 (or outside [0, 1], or NaN) falls in no bin and counts nowhere, as in the
///   reference.
///
/// Returns `(ece, mce, bins)` with ECE = Σ_b |acc_b − conf_b|·n_b / Σ_b n_b and MCE =
/// max_b |acc_b − conf_b| over the non-empty bins, both fractions in [0, 1] (not percent).
/// With no sample in any bin both are 0 (the reference divides 0 by 0).
///
/// # Panics
/// If the slices differ in length or `num_bins` is 0.
pub fn calibration(
    confidences: &[f64],
    correct: &[bool],
    num_bins: usize,
) -> (f64, f64, Vec<ReliabilityBin>) {
    assert_eq!(
        confidences.len(),
        correct.len(),
        "calibration: one correctness flag per confidence"
    );
    assert!(num_bins > 0, "calibration: num_bins must be positive");
    let edges = linspace_edges(num_bins);
    let mut conf_sum = vec![0.0; num_bins];
    let mut hits = vec![0usize; num_bins];
    let mut counts = vec![0usize; num_bins];
    for (&c, &ok) in confidences.iter().zip(correct) {
        if let Some(b) = reliability_bin(&edges, c) {
            conf_sum[b] += c;
            hits[b] += usize::from(ok);
            counts[b] += 1;
        }
    }
    let bins: Vec<ReliabilityBin> = (0..num_bins)
        .map(|b| {
            let n = counts[b];
            let (confidence, accuracy) = if n == 0 {
                (0.0, 0.0)
            } else {
                (conf_sum[b] / n as f64, hits[b] as f64 / n as f64)
            };
            ReliabilityBin {
                lo: edges[b],
                hi: edges[b + 1],
                count: n,
                confidence,
                accuracy,
            }
        })
        .collect();
    let total: usize = counts.iter().sum();
    if total == 0 {
        return (0.0, 0.0, bins);
    }
    let gap = |b: &ReliabilityBin| (b.accuracy - b.confidence).abs();
    let ece = bins.iter().map(|b| gap(b) * b.count as f64).sum::<f64>() / total as f64;
    let mce = bins
        .iter()
        .filter(|b| b.count > 0)
        .map(gap)
        .fold(0.0, f64::max);
    (ece, mce, bins)
}

/// Collects per-sample figures over an evaluation pass, batch by batch, into CPU vectors.
///
/// Each [`EvalAccumulator::add`] copies, per sample: the confidence (max softmax probability),
/// the prediction (its arg-max), the label, whether the label is among the top-min(5, K) logits,
/// and −log p_y. [`EvalAccumulator::finish`] turns them into an [`EvalReport`].
#[derive(Debug, Clone)]
pub struct EvalAccumulator {
    num_classes: usize,
    confidences: Vec<f64>,
    predictions: Vec<i64>,
    labels: Vec<i64>,
    top5_hits: Vec<bool>,
    nlls: Vec<f64>,
}

impl EvalAccumulator {
    /// An empty accumulator for `num_classes` (K) classes.
    pub fn new(num_classes: usize) -> Self {
        EvalAccumulator {
            num_classes,
            confidences: Vec::new(),
            predictions: Vec::new(),
            labels: Vec::new(),
            top5_hits: Vec::new(),
            nlls: Vec::new(),
        }
    }

    /// Samples added so far.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no sample was added.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Adds one batch.
    ///
    /// * `logits`: `[B, K]`, any floating dtype, any device. Softmax and log-softmax run on that
    ///   device in float32 (float64 logits stay float64), as in the reference's `validate`.
    /// * `labels`: `[B]` class indices (int64 or any integer dtype), same device.
    ///
    /// Prediction and confidence are `softmax(logits).max(1)` (the reference's
    /// `torch.max(prob, dim=1)`); top-5 is `logits.topk(min(5, K))` containing the label (the
    /// reference's `accuracy`); the NLL is `−log_softmax(logits)[y]`.
    ///
    /// # Panics
    /// When `logits` is not `[B, K]` with this accumulator's K, `labels` is not `[B]`, a label
    /// is outside `0..K`, or libtorch fails.
    pub fn add(&mut self, logits: &Tensor, labels: &Tensor) {
        let k = self.num_classes as i64;
        let shape = logits.size();
        assert!(
            shape.len() == 2 && shape[1] == k && labels.size() == [shape[0]],
            "EvalAccumulator::add: expected logits [B, {k}] and labels [B], got {shape:?} and {:?}",
            labels.size()
        );
        if shape[0] == 0 {
            return;
        }
        let labels = labels.to_kind(Kind::Int64);
        let cpu_labels = to_vec::<i64>(&labels);
        if let Some(bad) = cpu_labels.iter().find(|&&y| !(0..k).contains(&y)) {
            panic!("EvalAccumulator::add: label {bad} outside 0..{k}");
        }
        let kind = if logits.kind() == Kind::Double {
            Kind::Double
        } else {
            Kind::Float
        };
        let logits = logits.to_kind(kind);
        let (conf, pred) = logits.softmax(1, kind).max_dim(1, false);
        let nll = -logits
            .log_softmax(1, kind)
            .gather(1, &labels.unsqueeze(1), false)
            .squeeze_dim(1);
        let (_, top) = logits.topk(k.min(5), 1, true, true);
        let top5 = top.eq_tensor(&labels.unsqueeze(1)).any_dim(1, false);
        self.confidences.extend(to_vec::<f64>(&conf));
        self.predictions.extend(to_vec::<i64>(&pred));
        self.top5_hits.extend(to_vec::<bool>(&top5));
        self.nlls.extend(to_vec::<f64>(&nll));
        self.labels.extend(cpu_labels);
    }

    /// The per-sample figures as rows `[n, 5]` f64 on the CPU, in the order added: confidence,
    /// prediction, label, top-5 hit (0 or 1), NLL. [`EvalAccumulator::add_rows`] takes them
    /// back: data-parallel evaluation gathers them from every rank.
    pub fn to_rows(&self) -> Tensor {
        let n = self.len();
        let mut flat = Vec::with_capacity(n * 5);
        for i in 0..n {
            flat.extend([
                self.confidences[i],
                self.predictions[i] as f64,
                self.labels[i] as f64,
                f64::from(u8::from(self.top5_hits[i])),
                self.nlls[i],
            ]);
        }
        Tensor::from_slice(&flat).view([n as i64, 5])
    }

    /// Appends rows made by [`EvalAccumulator::to_rows`] (`[m, 5]` f64, CPU).
    ///
    /// # Panics
    /// When `rows` is not `[m, 5]`.
    pub fn add_rows(&mut self, rows: &Tensor) {
        let shape = rows.size();
        assert!(
            shape.len() == 2 && shape[1] == 5,
            "expected rows [m, 5], got {shape:?}"
        );
        let flat = to_vec::<f64>(&rows.to_kind(Kind::Double).reshape([-1]));
        for r in flat.chunks_exact(5) {
            self.confidences.push(r[0]);
            self.predictions.push(r[1] as i64);
            self.labels.push(r[2] as i64);
            self.top5_hits.push(r[3] != 0.0);
            self.nlls.push(r[4]);
        }
    }

    /// The report over every sample added.
    ///
    /// * `train_class_counts`: training images of each class (length K), for the many (> 100),
    ///   medium (20–100 inclusive) and few (< 20) shot splits.
    /// * `head`, `med`, `tail`: half-open class-index ranges `[start, end)` (`head_class_idx`, …
    ///   of the configuration); the band's accuracy is the mean per-class accuracy over the
    ///   range, as the reference's `acc_classes[a:b].mean()`. Ends past K are clipped to K; an
    ///   empty range gives 0 (the reference gives NaN).
    ///
    /// A class with no evaluation sample has accuracy 0 everywhere (the reference's 0/0 = NaN
    /// would poison the band means). Shot-split means are over the classes whose training count
    /// falls in the split, `None` when no class does. With no sample at all every figure is 0.
    /// ECE/MCE use [`NUM_BINS`] bins (see [`calibration`]) and, like every accuracy, are in
    /// percent; NLL is the mean −log p_y in nats.
    ///
    /// # Panics
    /// If `train_class_counts` does not hold K counts.
    pub fn finish(
        &self,
        train_class_counts: &[usize],
        head: [usize; 2],
        med: [usize; 2],
        tail: [usize; 2],
    ) -> EvalReport {
        let k = self.num_classes;
        assert_eq!(
            train_class_counts.len(),
            k,
            "finish: one training count per class"
        );
        let n = self.labels.len();
        let pct = |num: usize, den: usize| {
            if den == 0 {
                0.0
            } else {
                100.0 * num as f64 / den as f64
            }
        };
        let mut class_total = vec![0usize; k];
        let mut class_correct = vec![0usize; k];
        let correct: Vec<bool> = self
            .predictions
            .iter()
            .zip(&self.labels)
            .map(|(p, y)| p == y)
            .collect();
        for (&y, &ok) in self.labels.iter().zip(&correct) {
            class_total[y as usize] += 1;
            class_correct[y as usize] += usize::from(ok);
        }
        let per_class: Vec<f64> = (0..k)
            .map(|c| pct(class_correct[c], class_total[c]))
            .collect();
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let band = |r: [usize; 2]| {
            let lo = r[0].min(k);
            mean(&per_class[lo..r[1].clamp(lo, k)])
        };
        let shot = |keep: fn(usize) -> bool| {
            let accs: Vec<f64> = (0..k)
                .filter(|&c| keep(train_class_counts[c]))
                .map(|c| per_class[c])
                .collect();
            (!accs.is_empty()).then(|| mean(&accs))
        };
        let (ece, mce, bins) = calibration(&self.confidences, &correct, NUM_BINS);
        EvalReport {
            samples: n,
            top1: pct(correct.iter().filter(|&&c| c).count(), n),
            top5: pct(self.top5_hits.iter().filter(|&&c| c).count(), n),
            head: band(head),
            medium: band(med),
            tail: band(tail),
            many_shot: shot(|c| c > MANY_SHOT_ABOVE),
            medium_shot: shot(|c| (FEW_SHOT_BELOW..=MANY_SHOT_ABOVE).contains(&c)),
            few_shot: shot(|c| c < FEW_SHOT_BELOW),
            per_class,
            ece: 100.0 * ece,
            mce: 100.0 * mce,
            nll: mean(&self.nlls),
            bins,
        }
    }
}

/// A `[N]` tensor on any device as a CPU vector of `T`.
///
/// # Panics
/// If libtorch cannot convert it.
fn to_vec<T: tch::kind::Element + Copy>(t: &Tensor) -> Vec<T> {
    Vec::<T>::try_from(&t.to_device(Device::Cpu))
        .unwrap_or_else(|e| panic!("cannot copy a tensor to the CPU: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Expected values from the reference's `calibration` (utils/metric.py, `np.float`/`np.int`
    /// replaced by `float`/`int`) in NumPy 2.4:
    /// ```python
    /// c = np.array([0.0, 0.05, 0.6, 0.61, 0.65, 0.9, 0.95, 1.0, 0.3, 0.6666666666666666, 0.99])
    /// k = np.array([1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 0])
    /// ece, mce, acc, conf, cnt = calibration(k, np.ones(11, int), c, 15)
    /// # np.digitize(c, np.linspace(0, 1, 16), right=True)
    /// #   -> [0, 1, 9, 10, 10, 14, 15, 15, 5, 10, 15]
    /// # ece = 0.18633333333333332, mce = 0.4
    /// ```
    #[test]
    fn calibration_matches_numpy_reference() {
        let conf = [
            0.0,
            0.05,
            0.6,
            0.61,
            0.65,
            0.9,
            0.95,
            1.0,
            0.3,
            0.6666666666666666,
            0.99,
        ];
        let ok = [
            true, false, true, false, true, true, true, true, false, true, false,
        ];
        let (ece, mce, bins) = calibration(&conf, &ok, 15);
        assert!(close(ece, 0.18633333333333332, 1e-12), "{ece}");
        assert!(close(mce, 0.4, 1e-12), "{mce}");
        let counts: Vec<usize> = bins.iter().map(|b| b.count).collect();
        // Confidence 0 is in no bin; 0.6 == edge 9 lies in bin 8 = (0.5333, 0.6]; 2/3 == edge
        // 10 lies in bin 9; 1.0 in the last bin.
        assert_eq!(counts, [1, 0, 0, 0, 1, 0, 0, 0, 1, 3, 0, 0, 0, 1, 3]);
        let expect_conf = [
            (0, 0.05),
            (4, 0.3),
            (8, 0.6),
            (9, 0.6422222222222222),
            (13, 0.9),
            (14, 0.98),
        ];
        for (b, c) in expect_conf {
            assert!(close(bins[b].confidence, c, 1e-12), "bin {b}");
        }
        let expect_acc = [
            (0, 0.0),
            (4, 0.0),
            (8, 1.0),
            (9, 2.0 / 3.0),
            (13, 1.0),
            (14, 2.0 / 3.0),
        ];
        for (b, a) in expect_acc {
            assert!(close(bins[b].accuracy, a, 1e-12), "bin {b}");
        }
        assert_eq!(bins[0].lo, 0.0);
        assert_eq!(bins[14].hi, 1.0);
        assert_eq!(bins[8].hi, bins[9].lo);
    }

    /// Edges where NumPy's `linspace` (i·step) and i/n differ in the last bit:
    /// ```python
    /// np.linspace(0, 1, 8)[5]   # 0.7142857142857142 (5/7 = 0.7142857142857143)
    /// np.digitize([5/7], np.linspace(0, 1, 8), right=True)      # [6]: bin 5
    /// np.digitize([5/7], np.arange(8) / 7, right=True)          # [5]: bin 4 (wrong)
    /// c = np.array([5/7, 0.2, 0.9]); k = np.array([1, 0, 0])
    /// calibration(k, np.ones(3, int), c, 7)
    /// # counts [0, 1, 0, 0, 0, 1, 1], ece 0.4619047619047619, mce 0.9
    /// c = np.array([0.6000000000000001, 0.30000000000000004, 0.6, 0.05])
    /// k = np.array([1, 0, 0, 1])
    /// calibration(k, np.ones(4, int), c, 10)
    /// # counts [1, 0, 1, 0, 0, 2, 0, 0, 0, 0], ece 0.36250000000000004, mce 0.95
    /// ```
    #[test]
    fn calibration_edges_follow_numpy_linspace() {
        let (ece, mce, bins) = calibration(&[5.0 / 7.0, 0.2, 0.9], &[true, false, false], 7);
        let counts: Vec<usize> = bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [0, 1, 0, 0, 0, 1, 1]);
        assert_eq!(bins[5].lo, 0.7142857142857142);
        assert!(close(ece, 0.4619047619047619, 1e-12), "{ece}");
        assert!(close(mce, 0.9, 1e-12), "{mce}");

        let conf = [0.6000000000000001, 0.30000000000000004, 0.6, 0.05];
        let (ece, mce, bins) = calibration(&conf, &[true, false, false, true], 10);
        let counts: Vec<usize> = bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [1, 0, 1, 0, 0, 2, 0, 0, 0, 0]);
        assert_eq!(bins[5].hi, 0.6000000000000001);
        assert!(close(ece, 0.36250000000000004, 1e-12), "{ece}");
        assert!(close(mce, 0.95, 1e-12), "{mce}");
    }

    /// The constant-cost bin equals NumPy's `digitize(right=True) − 1` (a binary search over
    /// the edges) on edges, their neighbours and a dense grid.
    #[test]
    fn reliability_bin_is_the_binary_search() {
        for n in [1, 7, 10, 15, 16] {
            let edges = linspace_edges(n);
            let mut cs: Vec<f64> = (0..=10_000).map(|i| i as f64 / 10_000.0).collect();
            for &e in &edges {
                cs.extend([e, e.next_up(), e.next_down()]);
            }
            cs.extend([-0.5, 1.5, f64::NAN]);
            for c in cs {
                let idx = edges.partition_point(|&e| e < c);
                let want = (c > 0.0 && (1..=n).contains(&idx)).then(|| idx - 1);
                assert_eq!(reliability_bin(&edges, c), want, "n {n} c {c}");
            }
        }
    }

    #[test]
    fn calibration_without_binned_samples_is_zero() {
        let (ece, mce, bins) = calibration(&[0.0, 0.0], &[true, false], NUM_BINS);
        assert_eq!((ece, mce), (0.0, 0.0));
        assert_eq!(bins.len(), NUM_BINS);
        assert!(bins.iter().all(|b| b.count == 0));
    }

    /// Expected figures from PyTorch 2.11 / NumPy 2.4 on the same logits, in float32 as the
    /// reference's `validate`:
    /// ```python
    /// prob = torch.softmax(logits, 1); conf, pred = prob.max(1)
    /// top5 = (logits.topk(5, 1, True, True)[1] == labels[:, None]).any(1)
    /// F.cross_entropy(logits, labels)                     # 1.4850382804870605
    /// # pred [0, 1, 1, 0, 2, 0, 3, 5, 4, 0]; top1 60 %, top5 90 % (sample 3: label logit lowest)
    /// # per class (nan -> 0): [200/3, 50, 50, 100, 50, 0]
    /// calibration(labels.numpy(), pred.numpy(), conf.numpy().astype(np.float64))
    /// # ece 30.333566665649414 %, mce 69.75193619728088 %,
    /// # counts [0, 0, 0, 0, 3, 2, 0, 1, 0, 0, 1, 1, 0, 1, 1]
    /// # bin 4 conf 0.2774890462557475 acc 1/3; bin 5 conf 0.34989553689956665 acc 1
    /// ```
    #[test]
    fn accumulator_matches_pytorch_reference() {
        let rows: [[f32; 6]; 10] = [
            [3.0, 1.0, 0.5, 0.0, -1.0, -2.0],
            [0.2, 2.5, 0.1, 0.0, -0.5, 0.3],
            [0.1, 1.5, 1.4, -0.3, 0.0, 0.2],
            [2.0, -3.0, 1.0, 0.5, 0.3, 0.1],
            [0.0, 0.0, 4.0, 0.0, 0.0, 0.0],
            [1.0, 0.5, 0.9, 0.2, 0.1, 0.0],
            [0.5, 0.2, 0.1, 1.2, 0.3, 0.0],
            [0.3, 0.1, 0.0, 0.2, 0.9, 1.0],
            [0.0, 0.1, 0.2, 0.3, 5.0, 0.4],
            [1.1, 0.0, 0.1, 0.2, 0.3, 1.0],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let logits = Tensor::from_slice(&flat).view([10, 6]);
        let labels = Tensor::from_slice(&[0i64, 0, 1, 1, 2, 2, 3, 4, 4, 0]);
        let mut acc = EvalAccumulator::new(6);
        // Two batches: the report must not depend on the split.
        acc.add(&logits.narrow(0, 0, 4), &labels.narrow(0, 0, 4));
        acc.add(&logits.narrow(0, 4, 6), &labels.narrow(0, 4, 6));
        assert_eq!(acc.len(), 10);
        let r = acc.finish(&[500, 150, 101, 100, 20, 19], [0, 2], [2, 4], [4, 6]);
        assert_eq!(r.samples, 10);
        assert!(close(r.top1, 60.0, 1e-9));
        assert!(close(r.top5, 90.0, 1e-9));
        let per_class = [200.0 / 3.0, 50.0, 50.0, 100.0, 50.0, 0.0];
        for (got, want) in r.per_class.iter().zip(per_class) {
            assert!(close(*got, want, 1e-9), "{:?}", r.per_class);
        }
        assert!(close(r.head, (200.0 / 3.0 + 50.0) / 2.0, 1e-9));
        assert!(close(r.medium, 75.0, 1e-9));
        // Class 5 has no test sample: it counts as 0 in the tail band and the few-shot split.
        assert!(close(r.tail, 25.0, 1e-9));
        // 500, 150, 101 > 100 are many-shot; 100 and 20 medium; 19 few.
        assert!(close(
            r.many_shot.unwrap(),
            (200.0 / 3.0 + 100.0) / 3.0,
            1e-9
        ));
        assert!(close(r.medium_shot.unwrap(), 75.0, 1e-9));
        assert!(close(r.few_shot.unwrap(), 0.0, 1e-9));
        assert!(close(r.nll, 1.4850382804870605, 1e-6), "{}", r.nll);
        assert!(close(r.ece, 30.333566665649414, 1e-5), "{}", r.ece);
        assert!(close(r.mce, 69.75193619728088, 1e-5), "{}", r.mce);
        let counts: Vec<usize> = r.bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [0, 0, 0, 0, 3, 2, 0, 1, 0, 0, 1, 1, 0, 1, 1]);
        assert!(close(r.bins[4].confidence, 0.2774890462557475, 1e-7));
        assert!(close(r.bins[4].accuracy, 1.0 / 3.0, 1e-12));
        assert!(close(r.bins[5].confidence, 0.34989553689956665, 1e-7));
        assert!(close(r.bins[5].accuracy, 1.0, 1e-12));
    }

    /// K = 3 < 5 (top-5 is top-3), float64 logits, shot splits with no class:
    /// ```python
    /// logits = torch.tensor([[2., 1., 0.], [0., 3., 1.], [1., .5, .25], [0., 0., 2.]],
    ///                       dtype=torch.float64)
    /// labels = torch.tensor([0, 2, 1, 2])
    /// # pred [0, 1, 0, 2]; F.cross_entropy(logits, labels) = 1.0122085792542377
    /// # calibration: ece 46.81479999495723 %, mce 84.37947344813395 %
    /// ```
    #[test]
    fn accumulator_small_k_and_double_logits() {
        let logits = Tensor::from_slice(&[
            2.0f64, 1.0, 0.0, 0.0, 3.0, 1.0, 1.0, 0.5, 0.25, 0.0, 0.0, 2.0,
        ])
        .view([4, 3]);
        let labels = Tensor::from_slice(&[0i64, 2, 1, 2]);
        let mut acc = EvalAccumulator::new(3);
        acc.add(&logits, &labels);
        let r = acc.finish(&[50, 30, 25], [0, 1], [1, 2], [2, 5]);
        assert!(close(r.top1, 50.0, 1e-12));
        assert!(close(r.top5, 100.0, 1e-12));
        assert_eq!(r.per_class, [100.0, 0.0, 50.0]);
        assert_eq!((r.head, r.medium, r.tail), (100.0, 0.0, 50.0));
        assert_eq!(r.many_shot, None);
        assert!(close(r.medium_shot.unwrap(), 50.0, 1e-12));
        assert_eq!(r.few_shot, None);
        assert!(close(r.nll, 1.0122085792542377, 1e-12));
        assert!(close(r.ece, 46.81479999495723, 1e-10));
        assert!(close(r.mce, 84.37947344813395, 1e-10));
    }

    #[test]
    #[should_panic(expected = "label 3 outside 0..3")]
    fn accumulator_rejects_out_of_range_labels() {
        let logits = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        EvalAccumulator::new(3).add(&logits, &Tensor::from_slice(&[0i64, 3]));
    }

    #[test]
    #[should_panic(expected = "expected logits [B, 3]")]
    fn accumulator_rejects_wrong_class_count() {
        let logits = Tensor::zeros([2, 4], (Kind::Float, Device::Cpu));
        EvalAccumulator::new(3).add(&logits, &Tensor::from_slice(&[0i64, 1]));
    }

    #[test]
    fn empty_accumulator_reports_zeros() {
        let acc = EvalAccumulator::new(3);
        assert!(acc.is_empty());
        let r = acc.finish(&[1, 1, 1], [0, 1], [1, 2], [2, 3]);
        assert_eq!((r.samples, r.top1, r.nll, r.ece), (0, 0.0, 0.0, 0.0));
        assert_eq!(r.per_class, [0.0; 3]);
    }
}
