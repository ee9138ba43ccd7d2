//! The imbalance profile of a long-tailed subset: how many training images each class keeps.
use super::ImbalanceType;

/// Training images kept per class, `[K]`, head (class 0) first — the reference's
/// `get_img_num_per_cls`.
///
/// * `n_max`: images per class of the full set, the reference's `img_max = len(self.data) /
///   cls_num` (a float: Python 3 division).
/// * [`ImbalanceType::Exp`]: n_c = `int(img_max * (imb_factor**(cls_idx / (cls_num - 1.0))))`
///   in `f64` (Cao et al., 2019); K = 1 keeps `int(n_max)`.
/// * [`ImbalanceType::Step`]: the first ⌊K/2⌋ classes keep `int(n_max)`, the others
///   `int(n_max · imb_factor)`. (For an odd K the reference lists only 2·⌊K/2⌋ counts and its
///   `zip` drops the last class; every data set here has an even K.)
///
/// `int()` truncates toward zero, as `as usize` does for these non-negative values.
pub fn img_num_per_cls(
    n_max: f64,
    num_classes: usize,
    imb_type: ImbalanceType,
    imb_factor: f64,
) -> Vec<usize> {
    match imb_type {
        ImbalanceType::Exp if num_classes == 1 => vec![n_max as usize],
        ImbalanceType::Exp => (0..num_classes)
            .map(|c| (n_max * imb_factor.powf(c as f64 / (num_classes as f64 - 1.0))) as usize)
            .collect(),
        ImbalanceType::Step => {
            let head = num_classes / 2;
            (0..num_classes)
                .map(|c| {
                    if c < head {
                        n_max as usize
                    } else {
                        (n_max * imb_factor) as usize
                    }
                })
                .collect()
        }
    }
}
