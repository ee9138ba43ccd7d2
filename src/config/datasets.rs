//! The data-set table: what one data set is, in one row — its display name, the size of its full
//! training set, its normalisation, its files (layout, reference list files, validation list for
//! `mislas compare`), what shows that a folder holds it, its place on the Presets screen and
//! its model quirk (Places-LT's extra block).
//!
//! [`DatasetName::spec`] is an exhaustive `match` over rows whose every field is required, so a
//! new data set without a row, or a row without a fact, does not compile; the tests below check
//! what the compiler cannot (screen order, list files of list-file sets).
use super::DatasetName;

/// How a data set's files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilesLayout {
    /// Fashion-MNIST's IDX files (`train-images-idx3-ubyte[.gz]`, …).
    Idx,
    /// A CIFAR release (python pickles or binary batches).
    Cifar,
    /// Training and test list files of `path label` lines naming JPEGs under `data_path`.
    ListFiles {
        /// The reference's training list.
        train: &'static str,
        /// The reference's test list (iNaturalist 2018: its validation list, which the
        /// reference evaluates on).
        test: &'static str,
    },
}

/// What shows that `data_path` holds a data set (the Presets screen's "data found" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// One of these files in `data_path`.
    FileIn(&'static [&'static str]),
    /// One of these folders in `data_path`, or `data_path` being one of them.
    FolderInOrAt(&'static [&'static str]),
}

/// Per-channel mean and standard deviation of the input normalisation (R, G, B or grey), on
/// pixel values in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalizationStats {
    /// Mean of each channel.
    pub mean: &'static [f32],
    /// Standard deviation of each channel.
    pub std: &'static [f32],
}

/// One row of the data-set table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatasetSpec {
    /// The name a researcher reads: "CIFAR-10-LT", "ImageNet-LT", ….
    pub display_name: &'static str,
    /// The full training set of the sets whose files have a fixed size: `(images, classes)`;
    /// `None` for the list-file sets, whose size is their training list's.
    pub full_train_set: Option<(usize, usize)>,
    /// The input normalisation the reference uses for it.
    pub normalization: NormalizationStats,
    /// How its files are read.
    pub layout: FilesLayout,
    /// The list `mislas compare` fits post-hoc methods on, when the data set has one (else a
    /// seeded stratified half of the test set).
    pub validation_list: Option<&'static str>,
    /// What shows that `data_path` holds it.
    pub marker: Marker,
    /// Its group's place on the Presets screen (0 first).
    pub screen_order: usize,
    /// The backbone gets the reference's extra block (Places-LT: an ImageNet-pretrained
    /// ResNet-152 with a trainable last block).
    pub extra_block: bool,
}

/// The reference's CIFAR normalisation (`transforms.Normalize` of `datasets/cifar10.py`).
const CIFAR_NORM: NormalizationStats = NormalizationStats {
    mean: &[0.4914, 0.4822, 0.4465],
    std: &[0.2023, 0.1994, 0.2010],
};

/// torchvision's ImageNet normalisation (the reference's ImageNet-LT and Places-LT loaders).
const IMAGENET_NORM: NormalizationStats = NormalizationStats {
    mean: &[0.485, 0.456, 0.406],
    std: &[0.229, 0.224, 0.225],
};

const CIFAR10: DatasetSpec = DatasetSpec {
    display_name: "CIFAR-10-LT",
    full_train_set: Some((50_000, 10)),
    normalization: CIFAR_NORM,
    layout: FilesLayout::Cifar,
    validation_list: None,
    marker: Marker::FolderInOrAt(&["cifar-10-batches-py", "cifar-10-batches-bin"]),
    screen_order: 0,
    extra_block: false,
};

const CIFAR100: DatasetSpec = DatasetSpec {
    display_name: "CIFAR-100-LT",
    full_train_set: Some((50_000, 100)),
    normalization: CIFAR_NORM,
    layout: FilesLayout::Cifar,
    validation_list: None,
    marker: Marker::FolderInOrAt(&["cifar-100-python", "cifar-100-binary"]),
    screen_order: 1,
    extra_block: false,
};

const FASHION_MNIST: DatasetSpec = DatasetSpec {
    display_name: "Fashion-MNIST-LT",
    full_train_set: Some((60_000, 10)),
    // The training images' mean and standard deviation (Xiao et al., 2017 data).
    normalization: NormalizationStats {
        mean: &[0.2860],
        std: &[0.3530],
    },
    layout: FilesLayout::Idx,
    validation_list: None,
    marker: Marker::FileIn(&["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"]),
    screen_order: 5,
    extra_block: false,
};

const IMAGENET: DatasetSpec = DatasetSpec {
    display_name: "ImageNet-LT",
    full_train_set: None,
    normalization: IMAGENET_NORM,
    layout: FilesLayout::ListFiles {
        train: "ImageNet_LT_train.txt",
        test: "ImageNet_LT_test.txt",
    },
    validation_list: Some("ImageNet_LT_val.txt"),
    marker: Marker::FileIn(&["ImageNet_LT_train.txt"]),
    screen_order: 2,
    extra_block: false,
};

const INA2018: DatasetSpec = DatasetSpec {
    display_name: "iNaturalist 2018",
    full_train_set: None,
    // The reference's iNaturalist statistics (`datasets/ina2018.py`).
    normalization: NormalizationStats {
        mean: &[0.466, 0.471, 0.380],
        std: &[0.195, 0.194, 0.192],
    },
    layout: FilesLayout::ListFiles {
        train: "iNaturalist18_train.txt",
        test: "iNaturalist18_val.txt",
    },
    validation_list: None,
    marker: Marker::FileIn(&["iNaturalist18_train.txt"]),
    screen_order: 3,
    extra_block: false,
};

const PLACES: DatasetSpec = DatasetSpec {
    display_name: "Places-LT",
    full_train_set: None,
    normalization: IMAGENET_NORM,
    layout: FilesLayout::ListFiles {
        train: "Places_LT_train.txt",
        test: "Places_LT_test.txt",
    },
    validation_list: Some("Places_LT_val.txt"),
    marker: Marker::FileIn(&["Places_LT_train.txt"]),
    screen_order: 4,
    extra_block: true,
};

impl DatasetName {
    /// This data set's row of the table.
    pub const fn spec(self) -> &'static DatasetSpec {
        match self {
            DatasetName::Cifar10 => &CIFAR10,
            DatasetName::Cifar100 => &CIFAR100,
            DatasetName::FashionMnist => &FASHION_MNIST,
            DatasetName::Imagenet => &IMAGENET,
            DatasetName::Ina2018 => &INA2018,
            DatasetName::Places => &PLACES,
        }
    }

    /// The name a researcher reads: "CIFAR-10-LT", "ImageNet-LT", ….
    pub fn display_name(self) -> &'static str {
        self.spec().display_name
    }

    /// Whether this is one of the large-scale list-file data sets (ImageNet-LT, iNaturalist
    /// 2018, Places-LT): JPEG trees under `data_path` named by list files, no imbalance factor.
    pub fn is_large_scale(self) -> bool {
        matches!(self.spec().layout, FilesLayout::ListFiles { .. })
    }

    /// The full training set of the data sets whose files have a fixed size: `(images,
    /// classes)`, 60,000 and 10 for Fashion-MNIST, 50,000 and 10 for CIFAR-10, 50,000 and 100
    /// for CIFAR-100. `None` for the list-file sets, whose size is their training list's.
    pub fn full_train_set(self) -> Option<(usize, usize)> {
        self.spec().full_train_set
    }

    /// The reference's list-file names `(training list, test list)`; `None` for the sets that
    /// are not list-file sets.
    pub fn reference_lists(self) -> Option<(&'static str, &'static str)> {
        match self.spec().layout {
            FilesLayout::ListFiles { train, test } => Some((train, test)),
            FilesLayout::Idx | FilesLayout::Cifar => None,
        }
    }

    /// Every data set in the Presets screen's order.
    pub fn in_screen_order() -> Vec<DatasetName> {
        let mut all = DatasetName::ALL.to_vec();
        all.sort_by_key(|d| d.spec().screen_order);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_order_is_a_permutation() {
        let mut orders: Vec<usize> = DatasetName::ALL
            .iter()
            .map(|d| d.spec().screen_order)
            .collect();
        orders.sort_unstable();
        assert_eq!(orders, (0..DatasetName::ALL.len()).collect::<Vec<_>>());
        assert_eq!(
            DatasetName::in_screen_order().last(),
            Some(&DatasetName::FashionMnist)
        );
    }

    #[test]
    fn rows_are_consistent() {
        for &d in DatasetName::ALL {
            let s = d.spec();
            // A fixed-size set has no lists, a list-file set no fixed size.
            assert_eq!(s.full_train_set.is_none(), d.is_large_scale(), "{d}");
            // A validation list is a list of a list-file set.
            assert!(s.validation_list.is_none() || d.is_large_scale(), "{d}");
            assert_eq!(s.normalization.mean.len(), s.normalization.std.len(), "{d}");
            assert!(s.normalization.std.iter().all(|v| *v > 0.0), "{d}");
        }
        assert_eq!(
            DatasetName::Places.reference_lists(),
            Some(("Places_LT_train.txt", "Places_LT_test.txt"))
        );
        assert_eq!(DatasetName::Cifar10.reference_lists(), None);
    }
}
