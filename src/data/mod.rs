//! Data: readers for the on-disk formats, the long-tailed training subset of the reference, the
//! augmentation, the samplers and the multi-threaded batch loader.
//!
//! The small sets (Fashion-MNIST, CIFAR) stay `u8` in memory, CHW per image (the layout of
//! CIFAR's files and of a 1-channel IDX image); the list-file sets (ImageNet-LT, iNaturalist
//! 2018, Places-LT) stay on disk and are decoded by the loader threads. Either is an
//! [`ImageSource`]; conversion to normalised `f32` happens per batch in [`loader`].
pub mod augment;
pub mod cifar;
pub mod files;
pub mod idx;
pub mod jpeg;
pub mod list_file;
pub mod loader;
pub mod long_tail;
mod rng;
pub mod sampler;
pub mod transforms;

use crate::config::{Config, DatasetName};
use anyhow::{bail, ensure};
use files::ListedImages;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the images of a set come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Decoded `u8` images in memory (Fashion-MNIST, CIFAR): the fast path.
    Memory(ImageSet),
    /// Image files named by a list file, decoded on demand (ImageNet-LT, iNaturalist 2018,
    /// Places-LT).
    Files(ListedImages),
}

impl From<ImageSet> for ImageSource {
    fn from(set: ImageSet) -> Self {
        ImageSource::Memory(set)
    }
}

impl ImageSource {
    /// Number of images N.
    pub fn len(&self) -> usize {
        self.labels().len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels().is_empty()
    }

    /// Class index of each image, `[N]`.
    pub fn labels(&self) -> &[i64] {
        match self {
            ImageSource::Memory(s) => &s.labels,
            ImageSource::Files(f) => &f.labels,
        }
    }

    /// Number of classes K.
    pub fn num_classes(&self) -> usize {
        match self {
            ImageSource::Memory(s) => s.num_classes,
            ImageSource::Files(f) => f.num_classes,
        }
    }

    /// Channels C of a sample as the network sees it (3 for files, decoded as RGB).
    pub fn channels(&self) -> usize {
        match self {
            ImageSource::Memory(s) => s.channels,
            ImageSource::Files(_) => 3,
        }
    }

    /// Height and width of a sample as the network sees it, pixels (the stored size in memory;
    /// `image_size` for files).
    pub fn sample_size(&self) -> (usize, usize) {
        match self {
            ImageSource::Memory(s) => (s.height, s.width),
            ImageSource::Files(f) => (f.image_size, f.image_size),
        }
    }

    /// Floats per sample, C·H·W.
    pub fn sample_len(&self) -> usize {
        let (h, w) = self.sample_size();
        self.channels() * h * w
    }

    /// Number of images of each class, `[K]`.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in self.labels() {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The in-memory set, when the images are in memory.
    pub fn in_memory(&self) -> Option<&ImageSet> {
        match self {
            ImageSource::Memory(s) => Some(s),
            ImageSource::Files(_) => None,
        }
    }
}

/// In-memory image set: uint8 pixels, each image CHW-contiguous, images back to back.
///
/// Image `i` occupies `pixels[i·C·H·W .. (i+1)·C·H·W]`; its label is `labels[i]`, in
/// `0..num_classes`. The readers guarantee `pixels.len() == labels.len()·C·H·W` and that every
/// label is in range.
#[derive(Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// Pixel values 0–255, `[N, C, H, W]` row-major.
    pub pixels: Vec<u8>,
    /// Class index of each image, `[N]`.
    pub labels: Vec<i64>,
    /// Channels C (1 for Fashion-MNIST, 3 for CIFAR, in R, G, B order).
    pub channels: usize,
    /// Height H in pixels.
    pub height: usize,
    /// Width W in pixels.
    pub width: usize,
    /// Number of classes K of the data set (not only of the classes present).
    pub num_classes: usize,
}

impl ImageSet {
    /// Number of images N.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image, C·H·W.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The `C·H·W` pixels of image `i`, CHW order.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Number of images of each class, `[K]`.
    ///
    /// # Panics
    /// If a label is outside `0..num_classes` (the readers never produce one).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// A new set holding images `indices[0], indices[1], …` in that order (copied).
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            num_classes: self.num_classes,
        }
    }
}

impl std::fmt::Debug for ImageSet {
    /// The shape only: the pixels would fill pages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSet")
            .field("len", &self.len())
            .field("channels", &self.channels)
            .field("height", &self.height)
            .field("width", &self.width)
            .field("num_classes", &self.num_classes)
            .finish_non_exhaustive()
    }
}

/// Per-channel normalisation (x/255 − mean)/std, computed in `f32` as torchvision's
/// `ToTensor()` followed by `Normalize(mean, std)`.
///
/// The values of each data set are its row's of the data-set table ([`Normalization::of`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Mean of each channel on the 0–1 scale, `[C]`.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel on the 0–1 scale, `[C]`.
    pub std: Vec<f32>,
}

/// A data set ready for training: the long-tailed training subset, the full test set, and how
/// the subset was drawn.
#[derive(Debug, Clone)]
pub struct LongTailData {
    /// The long-tailed training subset, images in the order of `kept_indices`.
    pub train: Arc<ImageSource>,
    /// The full test set (never subsampled), in file order.
    pub test: Arc<ImageSource>,
    /// Indices into the full training set of the kept images, in class order then shuffle
    /// order, exactly the reference's `gen_imbalanced_data` (see [`long_tail`]); for the
    /// list-file sets, every line of the training list in file order.
    pub kept_indices: Vec<usize>,
    /// Training images per class after subsampling, `[K]`, head first.
    pub class_counts: Vec<usize>,
    /// Normalisation of the data set.
    pub norm: Normalization,
}

/// Loads the data set a config names and makes its long-tailed training subset.
///
/// Reads `cfg.data_path` (see [`idx::read_fashion_mnist`] and [`cifar::read_cifar`] for the
/// accepted layouts), computes the per-class counts with [`crate::config::img_num_per_cls`] from
/// `cfg.imb_type` and `cfg.imb_factor` with n_max = N/K, and keeps the images
/// [`long_tail::long_tail_indices`] selects with the reference's seed 0
/// (`IMBALANCECIFAR10(rand_number=0)`).
///
/// The list-file sets (ImageNet-LT, iNaturalist 2018, Places-LT) are naturally long-tailed:
/// see [`load_list_files`].
///
/// # Errors
/// `cfg.num_classes` differs from the data set's; `cfg.imb_factor` is missing or outside
/// (0, 1]; a file is missing or malformed (the message names it).
pub fn load(cfg: &Config) -> anyhow::Result<LongTailData> {
    if cfg.dataset.is_large_scale() {
        return load_list_files(cfg);
    }
    let (train, test, norm) = match cfg.dataset {
        DatasetName::FashionMnist => {
            let (train, test) = idx::read_fashion_mnist(cfg.data_path.as_ref())?;
            (train, test, Normalization::of(cfg.dataset))
        }
        DatasetName::Cifar10 | DatasetName::Cifar100 => {
            let (train, test) = cifar::read_cifar(cfg.dataset, cfg.data_path.as_ref())?;
            (train, test, Normalization::of(cfg.dataset))
        }
        DatasetName::Imagenet | DatasetName::Ina2018 | DatasetName::Places => {
            unreachable!("list-file sets are loaded by load_list_files")
        }
    };
    ensure!(
        cfg.num_classes == train.num_classes,
        "num_classes is {} but {} has {} classes",
        cfg.num_classes,
        cfg.dataset.display_name(),
        train.num_classes
    );
    let Some(imb_factor) = cfg.imb_factor else {
        bail!(
            "imb_factor is null: {} needs an imbalance factor in (0, 1] (0.01 in the reference)",
            cfg.dataset.display_name()
        );
    };
    ensure!(
        imb_factor > 0.0 && imb_factor <= 1.0,
        "imb_factor must be in (0, 1], found {imb_factor}"
    );
    let k = train.num_classes;
    let n_max = train.len() as f64 / k as f64;
    let counts = crate::config::img_num_per_cls(n_max, k, cfg.imb_type, imb_factor);
    let kept_indices =
        long_tail::long_tail_indices(&train.labels, &counts, long_tail::REFERENCE_SEED);
    let subset = train.subset(&kept_indices);
    let class_counts = subset.class_counts();
    Ok(LongTailData {
        train: Arc::new(subset.into()),
        test: Arc::new(test.into()),
        kept_indices,
        class_counts,
        norm,
    })
}

/// Loads a list-file data set: the training and test lists of [`list_file::list_paths`], the
/// classes re-indexed by descending training count ([`list_file::class_map_by_count`]) in both
/// lists, the images left on disk for the loader threads, with `image_size` and the evaluation
/// resize of `cfg` and the data set's normalisation ([`Normalization::of`]).
///
/// # Errors
/// A list file is missing or malformed (the message names the file and line),
/// `cfg.image_size` exceeds the evaluation resize, or, with `on_bad_image: fail`, a listed image
/// file does not exist (every path is checked here, before training; the message names the list,
/// the count and the first paths). Damaged images are found when the loader decodes them.
pub fn load_list_files(cfg: &Config) -> anyhow::Result<LongTailData> {
    let (train_path, test_path) = list_file::list_paths(cfg)?;
    let k = cfg.num_classes;
    let train = list_file::read_list(&train_path, k)?;
    let test = list_file::read_list(&test_path, k)?;
    let map = list_file::class_map_by_count(&train.labels, k);
    let resize = cfg.effective_eval_resize();
    ensure!(
        resize >= cfg.image_size,
        "eval_resize ({resize}) must be at least image_size ({})",
        cfg.image_size
    );
    let root = PathBuf::from(&cfg.data_path);
    let set = |e: list_file::ListEntries| ListedImages {
        root: root.clone(),
        labels: e.labels.iter().map(|&l| map[l as usize]).collect(),
        paths: e.paths,
        num_classes: k,
        image_size: cfg.image_size,
        eval_resize: resize,
    };
    let (train, test) = (set(train), set(test));
    if cfg.on_bad_image == crate::config::BadImagePolicy::Fail {
        // A missing file would otherwise stop the run only when it is reached, hours in.
        for (list, images) in [(&train_path, &train), (&test_path, &test)] {
            let missing: Vec<PathBuf> = (0..images.paths.len())
                .map(|i| images.path(i))
                .filter(|p| !p.is_file())
                .collect();
            if let Some(first) = missing.first() {
                bail!(
                    "{}: {} of its {} images are missing, e.g. {}{}; fix data_path or the list, \
                     or set on_bad_image: skip to leave them out",
                    list.display(),
                    missing.len(),
                    images.paths.len(),
                    first.display(),
                    missing
                        .get(1)
                        .map(|p| format!(" and {}", p.display()))
                        .unwrap_or_default()
                );
            }
        }
    }
    let train = ImageSource::Files(train);
    let test = ImageSource::Files(test);
    let class_counts = train.class_counts();
    let norm = Normalization::of(cfg.dataset);
    Ok(LongTailData {
        kept_indices: (0..train.len()).collect(),
        train: Arc::new(train),
        test: Arc::new(test),
        class_counts,
        norm,
    })
}

/// SHA-256 (lowercase hex) of the kept indices written as decimal numbers joined by '\n' (no
/// trailing newline), in class order: a fingerprint of the long-tailed subset to compare with
/// the reference's `np.where`/`np.random.shuffle` selection.
pub fn subset_sha256(indices: &[usize]) -> String {
    let mut hasher = Sha256::new();
    for (k, i) in indices.iter().enumerate() {
        if k > 0 {
            hasher.update(b"\n");
        }
        hasher.update(i.to_string().as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageSet {
        // 3 images of 1×1×2 pixels.
        ImageSet {
            pixels: vec![1, 2, 3, 4, 5, 6],
            labels: vec![0, 2, 0],
            channels: 1,
            height: 1,
            width: 2,
            num_classes: 3,
        }
    }

    #[test]
    fn image_set_accessors() {
        let s = tiny();
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert_eq!(s.image(1), &[3, 4]);
        assert_eq!(s.class_counts(), vec![2, 0, 1]);
        let sub = s.subset(&[2, 0]);
        assert_eq!(sub.pixels, vec![5, 6, 1, 2]);
        assert_eq!(sub.labels, vec![0, 0]);
        assert_eq!(sub.num_classes, 3);
    }

    #[test]
    fn sha256_of_known_text() {
        // printf '0\n1\n2' | sha256sum
        assert_eq!(
            subset_sha256(&[0, 1, 2]),
            "c4276dce1d5952cafea6aebd872c389f0945e4a2400859fa3998138d2e006f34"
        );
    }

    #[test]
    fn missing_list_file_is_named() {
        let cfg = Config {
            dataset: DatasetName::Imagenet,
            data_path: "/nonexistent/imagenet".into(),
            num_classes: 1000,
            ..Config::default()
        };
        let err = format!("{:#}", load(&cfg).unwrap_err());
        assert!(
            err.contains("/nonexistent/imagenet/ImageNet_LT_train.txt"),
            "{err}"
        );
    }
}
