//! Shifted test priors (the test-agnostic protocol of LADE, Hong et al. CVPR 2021, and SADE,
//! Zhang et al. NeurIPS 2022): subsets of the scored images whose class prior is long-tailed
//! like training (forward), uniform, or reversed (backward).
//!
//! For imbalance ρ and K classes ranked r = 0 … K−1 by descending training count (ties by class
//! index), class c keeps n_c = ⌊n_max·ρ^{−r/(K−1)}⌋ images (forward) or
//! ⌊n_max·ρ^{−(K−1−r)/(K−1)}⌋ (backward), n_max the smallest per-class count of the scored set
//! (so every class can give its share; on a class-balanced scored set, its per-class count).
//! Uniform keeps n_max of each class. Which images a class keeps: its scored images in order,
//! shuffled by a [`rand::rngs::StdRng`] seeded with `seed + class`, the first n_c of them;
//! the kept indices are sorted, so uniform on a balanced scored set is the whole set in order.
use super::split::indices_digest;
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// The imbalances of the protocol's forward and backward sets (SADE, Table 4).
pub const IMBALANCES: [u32; 5] = [50, 25, 10, 5, 2];

/// The test priors scored when `--test-priors` is not given.
pub const DEFAULT_PRIORS: &str = "forward50,uniform,backward50";

/// A test class prior.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestPrior {
    /// Long-tailed like training: the most frequent training class keeps the most images,
    /// imbalance ρ.
    Forward(u32),
    /// Every class n_max images.
    Uniform,
    /// Reversed: the most frequent training class keeps the fewest images, imbalance ρ.
    Backward(u32),
}

impl TestPrior {
    /// The eleven priors of the protocol in the order of the figures' x axis: forward 50 …
    /// forward 2, uniform, backward 2 … backward 50.
    pub fn all() -> Vec<TestPrior> {
        let mut v: Vec<TestPrior> = IMBALANCES.iter().map(|&r| TestPrior::Forward(r)).collect();
        v.push(TestPrior::Uniform);
        v.extend(IMBALANCES.iter().rev().map(|&r| TestPrior::Backward(r)));
        v
    }

    /// Every prior `--test-priors` accepts: the eleven of [`TestPrior::all`], then `forward3`
    /// and `backward3` (SADE's iNaturalist 2018 sets; drawn like the others where no list
    /// file is found).
    pub fn known() -> Vec<TestPrior> {
        let mut v = TestPrior::all();
        v.extend([TestPrior::Forward(3), TestPrior::Backward(3)]);
        v
    }

    /// The name: `forward50`, `uniform`, `backward2`.
    pub fn name(self) -> String {
        match self {
            TestPrior::Forward(r) => format!("forward{r}"),
            TestPrior::Uniform => "uniform".into(),
            TestPrior::Backward(r) => format!("backward{r}"),
        }
    }

    /// Position on the figures' axis: −ln ρ forward, 0 uniform, +ln ρ backward.
    pub fn axis(self) -> f64 {
        match self {
            TestPrior::Forward(r) => -f64::from(r).ln(),
            TestPrior::Uniform => 0.0,
            TestPrior::Backward(r) => f64::from(r).ln(),
        }
    }

    /// Parses a comma-separated list of names (`forward50,uniform,backward50`), `all` for the
    /// eleven, `none` (or an empty list) for none. Duplicates are dropped; the order is kept.
    ///
    /// # Errors
    /// A name that is not one of the protocol's (the message lists them).
    pub fn parse_list(text: &str) -> Result<Vec<TestPrior>> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let found: Vec<TestPrior> = match word {
                "none" => Vec::new(),
                "all" => TestPrior::all(),
                w => match TestPrior::known().into_iter().find(|p| p.name() == w) {
                    Some(p) => vec![p],
                    None => bail!(
                        "--test-priors: unknown test prior '{w}'; known: {}, all, none",
                        TestPrior::known()
                            .iter()
                            .map(|p| p.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
            };
            for p in found {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// Per-class counts n_c (see the module documentation) for `train_class_counts` and
    /// `n_max`; the exponent is computed in f64 and floored after adding 1e-9, so that a
    /// product that is an integer in exact arithmetic (n_max/ρ) is not lost to rounding.
    pub fn counts(self, train_class_counts: &[usize], n_max: usize) -> Vec<usize> {
        let k = train_class_counts.len();
        let rank = training_rank(train_class_counts);
        let span = (k.max(2) - 1) as f64;
        (0..k)
            .map(|c| {
                let r = rank[c] as f64;
                let e = match self {
                    TestPrior::Uniform => return n_max,
                    TestPrior::Forward(_) => r / span,
                    TestPrior::Backward(_) => (span - r) / span,
                };
                let rho = match self {
                    TestPrior::Forward(x) | TestPrior::Backward(x) => f64::from(x),
                    TestPrior::Uniform => 1.0,
                };
                (n_max as f64 * rho.powf(-e) + 1e-9).floor() as usize
            })
            .collect()
    }
}

/// Each class's rank by descending training count, ties broken by class index (rank 0: the
/// most frequent class).
pub fn training_rank(train_class_counts: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..train_class_counts.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(train_class_counts[c]));
    let mut rank = vec![0; order.len()];
    for (r, &c) in order.iter().enumerate() {
        rank[c] = r;
    }
    rank
}

/// One shifted test set: positions into the scored split and what it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShiftedSet {
    /// `forward50`, `uniform`, ….
    pub name: String,
    /// The prior.
    pub prior: TestPrior,
    /// Images per class.
    pub class_counts: Vec<usize>,
    /// Sorted positions into the scored split.
    pub indices: Vec<usize>,
    /// SHA-256 of the indices ([`indices_digest`]).
    pub sha256: String,
    /// SADE's list file the set was read from ([`super::sade_lists`]); `None`: drawn here.
    #[serde(default)]
    pub source: Option<String>,
}

impl ShiftedSet {
    /// The set's true class prior, n_c / Σ n.
    pub fn true_prior(&self) -> Vec<f64> {
        let n: usize = self.class_counts.iter().sum();
        self.class_counts
            .iter()
            .map(|&c| c as f64 / n.max(1) as f64)
            .collect()
    }
}

/// The subset of the scored split (`labels`, `[N]` in `0..K`) with `prior`'s per-class counts
/// ([`TestPrior::counts`]), seeded by `seed`. `Ok(None)` when ρ leaves some class with no
/// image (the caller says so and skips the set).
///
/// # Errors
/// A class with no scored image (no prior can be built), or `train_class_counts` not K long.
pub fn subsample(
    labels: &[i64],
    train_class_counts: &[usize],
    prior: TestPrior,
    seed: u64,
) -> Result<Option<ShiftedSet>> {
    let k = train_class_counts.len();
    let mut by_class = vec![Vec::new(); k];
    for (i, &y) in labels.iter().enumerate() {
        match by_class.get_mut(y as usize) {
            Some(v) => v.push(i),
            None => bail!("scored label {y} outside the {k} classes of the training counts"),
        }
    }
    let n_max = by_class.iter().map(Vec::len).min().unwrap_or(0);
    if n_max == 0 {
        bail!(
            "test prior {}: class {} has no scored image, so no shifted set can be drawn",
            prior.name(),
            by_class.iter().position(Vec::is_empty).unwrap_or(0)
        );
    }
    let counts = prior.counts(train_class_counts, n_max);
    if counts.contains(&0) {
        return Ok(None);
    }
    let mut indices = Vec::with_capacity(counts.iter().sum());
    for (c, mut idx) in by_class.into_iter().enumerate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(c as u64));
        idx.shuffle(&mut rng);
        indices.extend_from_slice(&idx[..counts[c]]);
    }
    indices.sort_unstable();
    Ok(Some(ShiftedSet {
        name: prior.name(),
        prior,
        sha256: indices_digest(&indices),
        class_counts: counts,
        indices,
        source: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 classes, 100 images each, training counts descending except for class 8 (the most
    /// frequent).
    fn case() -> (Vec<i64>, Vec<usize>) {
        let labels = (0..1000).map(|i| (i * 7 % 10) as i64).collect();
        let train = vec![500, 300, 200, 120, 80, 50, 30, 20, 600, 10];
        (labels, train)
    }

    #[test]
    fn counts_follow_the_formula_in_training_order() {
        let (labels, train) = case();
        let rank = training_rank(&train);
        assert_eq!(rank, vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 9]);
        for &rho in &IMBALANCES {
            for (prior, back) in [
                (TestPrior::Forward(rho), false),
                (TestPrior::Backward(rho), true),
            ] {
                let set = subsample(&labels, &train, prior, 3).unwrap().unwrap();
                for (c, &rk) in rank.iter().enumerate() {
                    let r = if back { 9 - rk } else { rk } as f64;
                    // By hand: 100·ρ^(−r/9), floored.
                    let want = (100.0 * (rho as f64).powf(-r / 9.0) + 1e-9).floor() as usize;
                    assert_eq!(set.class_counts[c], want, "{} class {c}", prior.name());
                    let got = set
                        .indices
                        .iter()
                        .filter(|&&i| labels[i] == c as i64)
                        .count();
                    assert_eq!(got, want);
                }
                // The most frequent training class (8) keeps 100 forward and 100/ρ backward.
                let top = if back { 100 / rho as usize } else { 100 };
                assert_eq!(set.class_counts[8], top);
            }
        }
        let f50 = TestPrior::Forward(50).counts(&train, 500);
        assert_eq!((f50[8], f50[9]), (500, 10));
    }

    #[test]
    fn same_seed_same_subsets_and_uniform_is_everything() {
        let (labels, train) = case();
        let a = subsample(&labels, &train, TestPrior::Forward(10), 5)
            .unwrap()
            .unwrap();
        let b = subsample(&labels, &train, TestPrior::Forward(10), 5)
            .unwrap()
            .unwrap();
        let c = subsample(&labels, &train, TestPrior::Forward(10), 6)
            .unwrap()
            .unwrap();
        assert_eq!((&a.indices, &a.sha256), (&b.indices, &b.sha256));
        assert_ne!(a.indices, c.indices);
        assert_eq!(a.sha256, indices_digest(&a.indices));
        let u = subsample(&labels, &train, TestPrior::Uniform, 5)
            .unwrap()
            .unwrap();
        assert_eq!(u.indices, (0..1000).collect::<Vec<_>>());
        assert!(u.true_prior().iter().all(|&p| (p - 0.1).abs() < 1e-12));
    }

    #[test]
    fn an_empty_class_is_reported_and_names_are_checked() {
        // 3 images per class: ⌊3/50⌋ = 0 for the rarest class.
        let labels: Vec<i64> = (0..30).map(|i| i % 10).collect();
        let train = vec![100, 90, 80, 70, 60, 50, 40, 30, 20, 10];
        assert!(subsample(&labels, &train, TestPrior::Forward(50), 0)
            .unwrap()
            .is_none());
        assert!(subsample(&labels, &train, TestPrior::Forward(2), 0)
            .unwrap()
            .is_some());
        let e = TestPrior::parse_list("forward50,sideways3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'sideways3'") && e.contains("backward25"), "{e}");
        assert_eq!(TestPrior::parse_list("all").unwrap().len(), 11);
        assert!(TestPrior::parse_list("none").unwrap().is_empty());
        assert_eq!(
            TestPrior::parse_list(DEFAULT_PRIORS).unwrap(),
            vec![
                TestPrior::Forward(50),
                TestPrior::Uniform,
                TestPrior::Backward(50)
            ]
        );
    }
}
