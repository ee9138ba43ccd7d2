//! Per-image augmentation and normalisation, `u8` CHW in, normalised `f32` CHW out.
//!
//! Training follows the reference's CIFAR transform (`datasets/cifar10.py`):
//! `RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(mean, std)`;
//! evaluation is `ToTensor()`, `Normalize(mean, std)`. Fashion-MNIST uses the same recipe at
//! 28×28. The random draws come from mislas's own streams (see [`super::loader`]), not
//! PyTorch's.
use super::Normalization;
use crate::config::DatasetName;
use rand_mt::Mt;

/// Zero padding of the random crop on each side, in pixels (`RandomCrop(size, padding=4)`).
pub const CROP_PADDING: usize = 4;

impl Normalization {
    /// The normalisation of a data set: its row of the data-set table
    /// ([`crate::config::DatasetSpec::normalization`]; the reference's `transforms.Normalize`
    /// values).
    pub fn of(dataset: DatasetName) -> Self {
        let stats = dataset.spec().normalization;
        Normalization {
            mean: stats.mean.to_vec(),
            std: stats.std.to_vec(),
        }
    }

    /// (x/255 − mean_c)/std_c in `f32`, in torchvision's order of operations (`ToTensor`
    /// divides by 255, `Normalize` subtracts then divides).
    #[inline]
    pub fn apply(&self, channel: usize, x: u8) -> f32 {
        (f32::from(x) / 255.0 - self.mean[channel]) / self.std[channel]
    }
}

/// Shape of one image: channels, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Channels C.
    pub channels: usize,
    /// Height H in pixels.
    pub height: usize,
    /// Width W in pixels.
    pub width: usize,
}

/// One draw of the training augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropFlip {
    /// Top of the crop window in the padded image, `0..=2·CROP_PADDING` (4 = no shift).
    pub top: usize,
    /// Left of the crop window in the padded image, `0..=2·CROP_PADDING`.
    pub left: usize,
    /// Mirror the crop left–right (p = 0.5).
    pub flip: bool,
}

impl CropFlip {
    /// Draws top, left (each uniform in `0..=2·CROP_PADDING`, as `RandomCrop.get_params`)
    /// then the flip (one bit), in that order, from `rng`.
    pub(crate) fn draw(rng: &mut Mt) -> Self {
        let top = super::rng::random_interval(rng, 2 * CROP_PADDING);
        let left = super::rng::random_interval(rng, 2 * CROP_PADDING);
        let flip = rng.next_u32() & 1 == 1;
        CropFlip { top, left, flip }
    }
}

/// Training transform of one image: pads it with [`CROP_PADDING`] zero pixels on each side,
/// takes the H×W window at (`top`, `left`) of the padded image, mirrors it when `flip`, and
/// normalises (padding pixels are 0 before normalisation, so −mean/std after, as torchvision
/// pads the PIL image with fill 0).
///
/// `img` and `out` are `[C, H, W]`: out[c][y][x] = norm(img[c][y + top − 4][x' + left − 4])
/// with x' = W − 1 − x when flipped, else x; 0 outside the image.
///
/// # Panics
/// If `img` or `out` is not C·H·W long, or `norm` has fewer than C channels.
pub fn crop_flip_normalize(
    img: &[u8],
    shape: Shape,
    cf: CropFlip,
    norm: &Normalization,
    out: &mut [f32],
) {
    let Shape {
        channels,
        height,
        width,
    } = shape;
    assert_eq!(img.len(), channels * height * width);
    assert_eq!(out.len(), img.len());
    for c in 0..channels {
        let zero = norm.apply(c, 0);
        let plane = &img[c * height * width..(c + 1) * height * width];
        for y in 0..height {
            let row = &mut out[(c * height + y) * width..(c * height + y + 1) * width];
            // Source row in the unpadded image, if inside it.
            let sy = (y + cf.top)
                .checked_sub(CROP_PADDING)
                .filter(|&sy| sy < height);
            for (x, o) in row.iter_mut().enumerate() {
                let cx = if cf.flip { width - 1 - x } else { x };
                let sx = (cx + cf.left)
                    .checked_sub(CROP_PADDING)
                    .filter(|&sx| sx < width);
                *o = match (sy, sx) {
                    (Some(sy), Some(sx)) => norm.apply(c, plane[sy * width + sx]),
                    _ => zero,
                };
            }
        }
    }
}

/// Evaluation transform of one image: normalisation only, `[C, H, W]` in and out.
///
/// # Panics
/// If `out` is not as long as `img`, or `norm` has fewer channels than the image.
pub fn normalize(img: &[u8], channels: usize, norm: &Normalization, out: &mut [f32]) {
    assert_eq!(out.len(), img.len());
    let plane = img.len() / channels;
    for (c, (src, dst)) in img
        .chunks_exact(plane)
        .zip(out.chunks_exact_mut(plane))
        .enumerate()
    {
        for (&x, o) in src.iter().zip(dst) {
            *o = norm.apply(c, x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identity normalisation scaled so that out = x/255·255 = x (mean 0, std 1/255).
    fn raw() -> Normalization {
        Normalization {
            mean: vec![0.0, 0.0],
            std: vec![1.0 / 255.0, 1.0 / 255.0],
        }
    }

    fn rounded(v: &[f32]) -> Vec<i32> {
        v.iter().map(|x| x.round() as i32).collect()
    }

    #[test]
    fn crop_and_flip_by_hand() {
        // 1 channel, 2×3 image:
        //   1 2 3
        //   4 5 6
        let img = [1, 2, 3, 4, 5, 6];
        let shape = Shape {
            channels: 1,
            height: 2,
            width: 3,
        };
        let mut out = [0f32; 6];
        // No shift: the image itself.
        let centre = CropFlip {
            top: 4,
            left: 4,
            flip: false,
        };
        crop_flip_normalize(&img, shape, centre, &raw(), &mut out);
        assert_eq!(rounded(&out), [1, 2, 3, 4, 5, 6]);
        // Window one row up and two columns right: rows −1, 0; columns 2, 3, 4.
        //   0 0 0
        //   3 0 0
        let cf = CropFlip {
            top: 3,
            left: 6,
            flip: false,
        };
        crop_flip_normalize(&img, shape, cf, &raw(), &mut out);
        assert_eq!(rounded(&out), [0, 0, 0, 3, 0, 0]);
        // Window one row down and one column left: rows 1, 2; columns −1, 0, 1:
        //   0 4 5        flipped:  5 4 0
        //   0 0 0                  0 0 0
        let cf = CropFlip {
            top: 5,
            left: 3,
            flip: true,
        };
        crop_flip_normalize(&img, shape, cf, &raw(), &mut out);
        assert_eq!(rounded(&out), [5, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn crop_is_per_channel() {
        // 2 channels of 1×2: [10, 20] and [30, 40]; flip only.
        let img = [10, 20, 30, 40];
        let shape = Shape {
            channels: 2,
            height: 1,
            width: 2,
        };
        let mut out = [0f32; 4];
        let cf = CropFlip {
            top: 4,
            left: 4,
            flip: true,
        };
        crop_flip_normalize(&img, shape, cf, &raw(), &mut out);
        assert_eq!(rounded(&out), [20, 10, 40, 30]);
    }

    #[test]
    fn normalisation_values_by_hand() {
        let cifar = Normalization::of(DatasetName::Cifar10);
        let mut out = [0f32; 3];
        // (255/255 − 0.4914)/0.2023 = 0.5086/0.2023 = 2.51409…; (0 − 0.4822)/0.1994 = −2.41825…;
        // (51/255 − 0.4465)/0.2010 = (0.2 − 0.4465)/0.2010 = −1.22637…
        normalize(&[255, 0, 51], 3, &cifar, &mut out);
        let expected = [2.514_088, -2.418_254_8, -1.226_368_2];
        for (o, e) in out.iter().zip(expected) {
            assert!((o - e).abs() < 1e-5, "{o} vs {e}");
        }
        // Fashion-MNIST: (0 − 0.2860)/0.3530 = −0.81019…; (255/255 − 0.2860)/0.3530 = 2.02266…
        let fm = Normalization::of(DatasetName::FashionMnist);
        let mut out = [0f32; 2];
        normalize(&[0, 255], 1, &fm, &mut out);
        assert!((out[0] + 0.810_198_3).abs() < 1e-5, "{}", out[0]);
        assert!((out[1] - 2.022_662_9).abs() < 1e-5, "{}", out[1]);
    }

    #[test]
    fn padding_normalises_as_black() {
        let fm = Normalization::of(DatasetName::FashionMnist);
        let shape = Shape {
            channels: 1,
            height: 1,
            width: 1,
        };
        let mut out = [0f32; 1];
        let cf = CropFlip {
            top: 0,
            left: 0,
            flip: false,
        };
        crop_flip_normalize(&[200], shape, cf, &fm, &mut out);
        assert!((out[0] + 0.810_198_3).abs() < 1e-5);
    }

    #[test]
    fn draws_cover_every_offset_and_both_flips() {
        let mut rng = super::super::rng::numpy_legacy(7);
        let mut tops = [0usize; 9];
        let mut lefts = [0usize; 9];
        let mut flips = 0;
        for _ in 0..2000 {
            let cf = CropFlip::draw(&mut rng);
            tops[cf.top] += 1;
            lefts[cf.left] += 1;
            flips += usize::from(cf.flip);
        }
        assert!(tops.iter().chain(&lefts).all(|&n| n > 150));
        assert!((900..1100).contains(&flips), "{flips}");
    }
}
