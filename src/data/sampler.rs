//! Sample orders of one epoch: instance-balanced (stage 1) and class-aware (stage 2).
//!
//! Every order is a pure function of (seed, epoch), so an interrupted run resumed at epoch e
//! sees exactly the orders it would have seen. The shuffles are NumPy's legacy Fisher–Yates on
//! an MT19937 keyed by (seed, purpose, epoch) (see the `rng` module), not PyTorch's or Python's
//! generators.
use super::rng::{self, Purpose};

/// Samples drawn in a row from one class at each class visit: the reference's
/// `ClassAwareSampler(num_samples_cls=4)` of stage 2.
pub const SAMPLES_PER_CLASS: usize = 4;

/// A permutation of `0..n`, reshuffled each epoch: the reference's `DataLoader(shuffle=True)`
/// in stage 1.
pub fn instance_balanced_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut mt = rng::stream(seed, Purpose::InstanceBalanced, epoch, 0);
    rng::legacy_shuffle(&mut mt, &mut order);
    order
}

/// Length of the reference's class-aware epoch, `num_samples = max(n_c) · K`
/// (`ClassAwareSampler.__len__`).
pub fn class_aware_epoch_len(class_counts: &[usize]) -> usize {
    class_counts.iter().copied().max().unwrap_or(0) * class_counts.len()
}

/// Batches a stage-2 epoch trains on: ⌈N/B⌉ + 1.
///
/// The reference's `train_stage2.py` sets `end_steps = int(np.ceil(len(train_loader.dataset) /
/// float(train_loader.batch_size)))` with N the size of the (long-tailed) training set, not the
/// sampler's length, and breaks out of `for i, (images, target) in enumerate(train_loader)`
/// when `i > end_steps`, so batches 0..=end_steps are trained on. The class-aware sampler
/// (`max(n_c)·K` samples) is longer, so the loop always ends on that break; the order to build
/// is therefore `stage2_batches_per_epoch(N, B) · B` samples long.
///
/// # Panics
/// If `batch` is 0.
pub fn stage2_batches_per_epoch(n_train: usize, batch: usize) -> usize {
    n_train.div_ceil(batch) + 1
}

/// The reference's `RandomCycleIter`: cycles over `items`, reshuffling at each wrap, including
/// before the first item (`self.i` starts at `length − 1`).
struct RandomCycle {
    items: Vec<usize>,
    next: usize,
}

impl RandomCycle {
    fn new(items: Vec<usize>) -> Self {
        let next = items.len();
        RandomCycle { items, next }
    }

    /// The next item; `items` must not be empty.
    fn next(&mut self, mt: &mut rand_mt::Mt) -> usize {
        if self.next == self.items.len() {
            self.next = 0;
            rng::legacy_shuffle(mt, &mut self.items);
        }
        self.next += 1;
        self.items[self.next - 1]
    }
}

/// `len` sample indices (into `labels`) of a class-aware epoch: the reference's
/// `ClassAwareSampler` (Shen et al., 2016, "Relay backpropagation"; `datasets/sampler.py` of
/// the decoupling and MiSLAS code).
///
/// A cycle over the classes, reshuffled at each wrap, picks a class; that class's own cycle
/// over its sample indices (reshuffled at each wrap) yields `samples_per_class` consecutive
/// samples (`zip(*[data_iter_list[next(cls_iter)]] * num_samples_cls)`). So positions
/// `[g·s, (g+1)·s)` of the order all come from one class, every class is visited once per
/// K visits, and a class's samples all appear before any of them repeats.
///
/// The reference keeps its cycles (and Python's global `random` state) alive from one epoch to
/// the next; here the sampler is re-created each epoch from (seed, epoch), which forgoes only
/// the carry-over of a partially consumed cycle and makes a resumed run exactly the run that
/// was interrupted. Classes without samples are left out of the class cycle (the reference
/// would fail on them); with no sample at all the order is empty.
///
/// # Panics
/// If a label is outside `0..num_classes`, or `samples_per_class` is 0 while `len` > 0.
pub fn class_aware_order(
    labels: &[i64],
    num_classes: usize,
    samples_per_class: usize,
    len: usize,
    seed: u64,
    epoch: usize,
) -> Vec<usize> {
    let mut by_class = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[usize::try_from(l).expect("a label is not negative")].push(i);
    }
    let classes: Vec<usize> = (0..num_classes)
        .filter(|&c| !by_class[c].is_empty())
        .collect();
    if classes.is_empty() {
        return Vec::new();
    }
    assert!(samples_per_class > 0 || len == 0, "samples_per_class is 0");
    let mut mt = rng::stream(seed, Purpose::ClassAware, epoch, 0);
    let mut class_cycle = RandomCycle::new(classes);
    let mut sample_cycles: Vec<RandomCycle> = by_class.into_iter().map(RandomCycle::new).collect();
    let mut order = Vec::with_capacity(len);
    while order.len() < len {
        let cycle = &mut sample_cycles[class_cycle.next(&mut mt)];
        for _ in 0..samples_per_class.min(len - order.len()) {
            order.push(cycle.next(&mut mt));
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 classes of 7, 3 and 1 samples, labels interleaved.
    fn labels() -> Vec<i64> {
        vec![0, 1, 0, 2, 0, 1, 0, 0, 1, 0, 0]
    }

    #[test]
    fn instance_balanced_is_a_deterministic_permutation() {
        let a = instance_balanced_order(1000, 3, 5);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_eq!(a, instance_balanced_order(1000, 3, 5));
        assert_ne!(a, instance_balanced_order(1000, 3, 6));
        assert_ne!(a, instance_balanced_order(1000, 4, 5));
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn class_aware_balances_classes() {
        let labels = labels();
        let k = 3;
        for len in [4 * k * 10, 4 * k * 10 + 5, 37] {
            let order = class_aware_order(&labels, k, 4, len, 0, 0);
            assert_eq!(order.len(), len);
            let mut counts = [0usize; 3];
            for &i in &order {
                counts[labels[i] as usize] += 1;
            }
            let (min, max) = (counts.iter().min(), counts.iter().max());
            assert!(max.unwrap() - min.unwrap() <= 4, "{counts:?} for len {len}");
            if len % (4 * k) == 0 {
                assert_eq!(counts, [len / k; 3]);
            }
        }
    }

    #[test]
    fn class_aware_draws_four_in_a_row() {
        let labels = labels();
        let order = class_aware_order(&labels, 3, 4, 120, 9, 2);
        for group in order.chunks(4) {
            assert!(group.iter().all(|&i| labels[i] == labels[group[0]]));
        }
        // And every window of K groups visits each class once.
        for visits in order.chunks(12) {
            let mut classes: Vec<i64> = visits.chunks(4).map(|g| labels[g[0]]).collect();
            classes.sort_unstable();
            assert_eq!(classes, [0, 1, 2]);
        }
    }

    #[test]
    fn class_aware_cycles_through_each_class() {
        let labels = labels();
        let order = class_aware_order(&labels, 3, 4, 240, 1, 0);
        for c in 0..3 {
            let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
            let seen: Vec<usize> = order.iter().copied().filter(|&i| labels[i] == c).collect();
            // Each full pass over the class is a permutation of its members.
            for pass in seen.chunks_exact(members.len()) {
                let mut pass = pass.to_vec();
                pass.sort_unstable();
                assert_eq!(pass, members, "class {c}");
            }
        }
    }

    #[test]
    fn class_aware_is_deterministic_per_seed_and_epoch() {
        let labels = labels();
        let a = class_aware_order(&labels, 3, 4, 100, 0, 0);
        assert_eq!(a, class_aware_order(&labels, 3, 4, 100, 0, 0));
        assert_ne!(a, class_aware_order(&labels, 3, 4, 100, 0, 1));
        assert_ne!(a, class_aware_order(&labels, 3, 4, 100, 1, 0));
        // A shorter order is a prefix of a longer one.
        assert_eq!(a[..50], class_aware_order(&labels, 3, 4, 50, 0, 0)[..]);
    }

    #[test]
    fn class_aware_skips_empty_classes() {
        let order = class_aware_order(&[0, 0, 2], 4, 4, 16, 0, 0);
        assert_eq!(order.len(), 16);
        assert!(order.iter().all(|&i| i < 3));
        assert!(class_aware_order(&[], 4, 4, 16, 0, 0).is_empty());
    }

    #[test]
    fn epoch_lengths() {
        assert_eq!(class_aware_epoch_len(&[5000, 50, 7]), 15000);
        // CIFAR-10-LT (12,406 images), batch 128: ⌈12406/128⌉ = 97, plus the reference's
        // extra step.
        assert_eq!(stage2_batches_per_epoch(12_406, 128), 98);
        assert_eq!(stage2_batches_per_epoch(256, 128), 3);
    }
}
