//! The long-tailed training subset, exactly as the reference draws it.
//!
//! MiSLAS's `datasets/cifar10.py` (`IMBALANCECIFAR10`, after Cao et al.'s LDAM code) does, in
//! its constructor:
//!
//! ```python
//! np.random.seed(rand_number)                      # rand_number = 0
//! img_num_list = self.get_img_num_per_cls(self.cls_num, imb_type, imb_factor)
//! # gen_imbalanced_data:
//! for the_class, the_img_num in zip(np.unique(targets_np), img_num_per_cls):
//!     idx = np.where(targets_np == the_class)[0]
//!     np.random.shuffle(idx)
//!     selec_idx = idx[:the_img_num]
//! ```
//!
//! [`img_num_per_cls`] and [`long_tail_indices`] reproduce the two halves bit for bit (the
//! equality with NumPy is a test of this module).
use super::rng;

/// The reference's `rand_number`: `np.random.seed(0)` before drawing the subset.
pub const REFERENCE_SEED: u32 = 0;

/// Indices (into `labels`) of the kept images: for each class c in order, the indices of its
/// images in ascending order (`np.where`), shuffled by NumPy's legacy `np.random.shuffle`
/// from one generator seeded once with `np.random.seed(seed)`, truncated to `counts[c]`
/// (`idx[:n]`, so a class with fewer images keeps them all).
///
/// Labels outside `0..counts.len()` are never kept. (The reference zips the counts with the
/// classes present, `np.unique(targets)`; the two agree whenever every class has an image.)
pub fn long_tail_indices(labels: &[i64], counts: &[usize], seed: u32) -> Vec<usize> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); counts.len()];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(class) = usize::try_from(l).ok().and_then(|c| by_class.get_mut(c)) {
            class.push(i);
        }
    }
    let mut mt = rng::numpy_legacy(seed);
    let mut kept = Vec::with_capacity(counts.iter().sum());
    for (mut idx, &n) in by_class.into_iter().zip(counts) {
        rng::legacy_shuffle(&mut mt, &mut idx);
        idx.truncate(n);
        kept.extend(idx);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{img_num_per_cls, ImbalanceType};
    use std::io::Write;
    use std::process::{Command, Stdio};

    const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");

    /// Runs `script` in the venv's Python with `input` on stdin; returns stdout's lines.
    fn python(script: &str, input: &str) -> Vec<String> {
        let mut child = Command::new(PYTHON)
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the venv's python runs");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("python reads stdin");
        let out = child.wait_with_output().expect("python finishes");
        assert!(out.status.success(), "python failed");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn numbers(line: &str) -> Vec<usize> {
        line.split_whitespace()
            .map(|x| x.parse().expect("a number"))
            .collect()
    }

    #[test]
    fn cifar10_and_fashion_mnist_counts() {
        // Python: [int(5000 * (0.01 ** (i / 9.0))) for i in range(10)]
        let cifar10 = img_num_per_cls(50000.0 / 10.0, 10, ImbalanceType::Exp, 0.01);
        assert_eq!(
            cifar10,
            [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
        );
        assert_eq!(cifar10.iter().sum::<usize>(), 12_406);
        // Python: [int(6000 * (0.01 ** (i / 9.0))) for i in range(10)]
        assert_eq!(
            img_num_per_cls(60000.0 / 10.0, 10, ImbalanceType::Exp, 0.01),
            [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
        );
        // By hand: 5 classes at 500, 5 at int(500 · 0.1) = 50.
        assert_eq!(
            img_num_per_cls(500.0, 10, ImbalanceType::Step, 0.1),
            [500, 500, 500, 500, 500, 50, 50, 50, 50, 50]
        );
    }

    #[test]
    fn counts_equal_python_formula() {
        // The reference's get_img_num_per_cls, run by Python, for several (N, K, IF, type).
        let script = r#"
import sys
for line in sys.stdin:
    n, k, f, t = line.split()
    n, k, f = int(n), int(k), float(f)
    img_max = n / k
    if t == 'exp':
        c = [int(img_max * (f ** (i / (k - 1.0)))) for i in range(k)]
    else:
        c = [int(img_max)] * (k // 2) + [int(img_max * f)] * (k // 2)
    print(' '.join(map(str, c)))
"#;
        let cases = [
            (50000, 100, 0.01, ImbalanceType::Exp),
            (50000, 100, 0.02, ImbalanceType::Exp),
            (50000, 10, 0.1, ImbalanceType::Exp),
            (60000, 10, 0.005, ImbalanceType::Exp),
            (50000, 100, 0.01, ImbalanceType::Step),
            (60000, 10, 0.02, ImbalanceType::Step),
        ];
        let input: String = cases
            .iter()
            .map(|(n, k, f, t)| {
                let t = if *t == ImbalanceType::Exp {
                    "exp"
                } else {
                    "step"
                };
                format!("{n} {k} {f} {t}\n")
            })
            .collect();
        let lines = python(script, &input);
        assert_eq!(lines.len(), cases.len());
        for ((n, k, f, t), line) in cases.iter().zip(&lines) {
            let ours = img_num_per_cls(*n as f64 / *k as f64, *k, *t, *f);
            assert_eq!(ours, numbers(line), "N={n} K={k} IF={f} {t:?}");
        }
    }

    #[test]
    fn kept_indices_equal_numpy() {
        // 5000 labels over 10 classes, uniformly random (so some classes hold fewer images than
        // the head count 500 and are kept whole), from an MT19937 unrelated to seed 0.
        let mut gen = rng::numpy_legacy(12345);
        let labels: Vec<i64> = (0..5000)
            .map(|_| rng::random_interval(&mut gen, 9) as i64)
            .collect();
        let counts = img_num_per_cls(500.0, 10, ImbalanceType::Exp, 0.01);
        let script = r#"
import sys
import numpy as np
targets_np = np.array(sys.stdin.read().split(), dtype=np.int64)
cls_num = 10
img_max = len(targets_np) / cls_num
img_num_per_cls = [int(img_max * (0.01 ** (i / (cls_num - 1.0)))) for i in range(cls_num)]
np.random.seed(0)
kept = []
for the_class, the_img_num in zip(np.unique(targets_np), img_num_per_cls):
    idx = np.where(targets_np == the_class)[0]
    np.random.shuffle(idx)
    kept.extend(idx[:the_img_num].tolist())
print(' '.join(map(str, img_num_per_cls)))
print(' '.join(map(str, kept)))
"#;
        let input: Vec<String> = labels.iter().map(i64::to_string).collect();
        let lines = python(script, &input.join(" "));
        assert_eq!(numbers(&lines[0]), counts);
        let expected = numbers(&lines[1]);
        let ours = long_tail_indices(&labels, &counts, REFERENCE_SEED);
        assert_eq!(ours.len(), expected.len());
        assert_eq!(ours, expected);
    }

    #[test]
    fn out_of_range_labels_are_never_kept() {
        let kept = long_tail_indices(&[0, -1, 5, 1, 0], &[2, 1], 0);
        let mut sorted = kept.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 3, 4]);
    }
}
