//! Never fit on what you score: where post-hoc parameters (τ, T) and choices are fitted, and
//! which images the figures are computed on.
//!
//! * ImageNet-LT and Places-LT have a validation list (`ImageNet_LT_val.txt`,
//!   `Places_LT_val.txt`, 20 images per class, from Liu et al. 2019, OLTR): fitting uses it and
//!   the whole test list is scored.
//! * iNaturalist 2018 has no separate validation list: the reference evaluates on
//!   `iNaturalist18_val.txt` (its test set). As for the sets below, its validation split is a
//!   seeded class-stratified half of that list, and the other half is scored.
//! * Fashion-MNIST-LT and CIFAR-10/100-LT have none (their head class keeps every training
//!   image): validation is a seeded, class-stratified half of the test set, the other half is
//!   scored.
//!
//! [`Protocol::Reference`] keeps the reference's protocol (everything fitted and scored on the
//! whole test set, as its best epoch is picked on the test set); it is labelled wherever shown.
use crate::config::DatasetName;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Where the validation images come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Validation {
    /// A list file under `data_path` (ImageNet-LT, Places-LT).
    List(String),
    /// A seeded class-stratified half of the test set.
    TestHalf {
        /// Seed of the per-class shuffles.
        seed: u64,
    },
}

/// How figures are fitted and scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// Fit on the validation split, score on images never fitted on (the default).
    Holdout,
    /// The reference's: fit and score on the whole test set (optimistic; labelled as such).
    Reference,
}

impl Protocol {
    /// The label shown next to every figure of this protocol.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Holdout => "held out: fitted on validation, scored on unseen images",
            Protocol::Reference => {
                "REFERENCE PROTOCOL: fitted and scored on the same test images (optimistic)"
            }
        }
    }
}

/// The validation source of a data set (see the module documentation).
pub fn validation_for(dataset: DatasetName, seed: u64) -> Validation {
    match dataset.spec().validation_list {
        Some(list) => Validation::List(list.into()),
        None => Validation::TestHalf { seed },
    }
}

/// Two disjoint halves of a labelled set, stratified by class: for each class, its indices in
/// file order are shuffled by a [`rand::rngs::StdRng`] seeded with `seed + class`, and the first
/// ⌊n_c / 2⌋ go to `first`, the rest to `second` (so an odd class gives the extra image to
/// `second`, the scored half). Both are sorted.
pub fn stratified_halves(
    labels: &[i64],
    num_classes: usize,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut by_class = vec![Vec::new(); num_classes];
    for (i, &y) in labels.iter().enumerate() {
        by_class[y as usize].push(i);
    }
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (c, mut idx) in by_class.into_iter().enumerate() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(c as u64));
        idx.shuffle(&mut rng);
        let half = idx.len() / 2;
        first.extend_from_slice(&idx[..half]);
        second.extend_from_slice(&idx[half..]);
    }
    first.sort_unstable();
    second.sort_unstable();
    (first, second)
}

/// SHA-256 of indices written one per line (`printf '%s\n'`), to name a half in output.
pub fn indices_digest(indices: &[usize]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for i in indices {
        h.update(format!("{i}\n").as_bytes());
    }
    format!("{:x}", h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_are_disjoint_stratified_and_seeded() {
        let labels: Vec<i64> = (0..1001).map(|i| (i % 10) as i64).collect();
        let (a, b) = stratified_halves(&labels, 10, 5);
        assert_eq!(a.len() + b.len(), 1001);
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1001).collect::<Vec<_>>());
        for c in 0..10 {
            let na = a.iter().filter(|&&i| labels[i] == c).count();
            let nb = b.iter().filter(|&&i| labels[i] == c).count();
            // Class 0 has 101 images: 50 to validation, 51 scored.
            assert_eq!((na, nb), if c == 0 { (50, 51) } else { (50, 50) });
        }
        assert_eq!(stratified_halves(&labels, 10, 5), (a.clone(), b));
        assert_ne!(stratified_halves(&labels, 10, 6).0, a);
        // Not simply the first half of each class in file order.
        assert_ne!(a, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn validation_sources() {
        assert_eq!(
            validation_for(DatasetName::Imagenet, 0),
            Validation::List("ImageNet_LT_val.txt".into())
        );
        assert_eq!(
            validation_for(DatasetName::Places, 0),
            Validation::List("Places_LT_val.txt".into())
        );
        assert_eq!(
            validation_for(DatasetName::Ina2018, 3),
            Validation::TestHalf { seed: 3 }
        );
        assert_eq!(
            validation_for(DatasetName::FashionMnist, 0),
            Validation::TestHalf { seed: 0 }
        );
    }

    #[test]
    fn digest_is_sha256_of_lines() {
        // printf '0\n1\n2\n' | sha256sum
        assert_eq!(
            indices_digest(&[0, 1, 2]),
            "b78a1987bcbdc0903ba6ba29ee3e1f4e7cc1ca868a60889beb141e26e06cb005"
        );
    }
}
