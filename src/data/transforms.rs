//! The ImageNet-style transforms of the list-file data sets, on 8-bit RGB images, computed as
//! torchvision computes them on PIL images (the reference's `datasets/imagenet.py`,
//! `ina2018.py`, `places.py`):
//!
//! * training: `RandomResizedCrop(224)` (scale 0.08–1, ratio 3/4–4/3, 10 tries then a centre
//!   crop), `RandomHorizontalFlip()`, `ColorJitter(brightness=0.4, contrast=0.4,
//!   saturation=0.4, hue=0)`, `ToTensor()`, `Normalize(mean, std)`;
//! * evaluation: `Resize(256)`, `CenterCrop(224)`, `ToTensor()`, `Normalize(mean, std)`.
//!
//! Resizing is Pillow's `Image.resize(size, Image.BILINEAR)` (`libImaging/Resample.c`): a
//! separable triangle filter whose support grows with the reduction factor (antialiasing),
//! coefficients rounded to 22-bit fixed point, horizontal pass first, each pass rounded to
//! 8 bits. The colour operations are Pillow's `ImageEnhance` (`Image.blend` in `float`,
//! truncated to 8 bits), with grey levels `L = (19595·R + 38470·G + 7471·B + 2^15) >> 16`
//! (`libImaging/Convert.c`). So, for the same crop box, flip and factors, the output is
//! bit-identical to torchvision's on the same decoded pixels (the tests check it against the
//! venv's PIL and torchvision). The random draws come from mislas's streams, not torch's.
use super::rng;
use super::Normalization;
use rand_mt::Mt;

/// An 8-bit RGB image, rows top to bottom, pixels `R, G, B` interleaved (`[H, W, 3]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width W in pixels.
    pub width: usize,
    /// Height H in pixels.
    pub height: usize,
    /// `W·H·3` bytes, `[H, W, 3]` row-major.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A black image of `width × height`.
    pub fn new(width: usize, height: usize) -> Self {
        RgbImage {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }
}

/// A pixel rectangle: left `x`, top `y`, width `w`, height `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
}

/// Fixed-point precision of Pillow's 8-bit resampling (`PRECISION_BITS = 32 − 8 − 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow's resampling coefficients for one axis (`precompute_coeffs` and
/// `normalize_coeffs_8bpc`, bilinear filter of support 1): for each output index, the first
/// input index, the number of taps, and the taps' 22-bit weights (`ksize` per output index).
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    ksize: usize,
}

fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0 × filterscale
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    let ss = 1.0 / filterscale;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let t = t.abs();
            *kx = if t < 1.0 { 1.0 - t } else { 0.0 };
            ww += *kx;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for x in 0..n {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            let f = v * f64::from(1u32 << PRECISION_BITS);
            row[x] = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        bounds,
        weights,
        ksize,
    }
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `img.crop(region).resize((out_w, out_h), Image.BILINEAR)`, of which only the
/// `window` of the resized image is computed and returned (`window.w × window.h`).
///
/// Computing a window gives the same pixels as resizing everything and cropping afterwards
/// (each output pixel depends only on its own taps), so `Resize(256)` + `CenterCrop(224)` is
/// one call.
///
/// # Panics
/// If `region` is empty or reaches outside `src`, or `window` reaches outside
/// `out_w × out_h`.
pub fn resize_bilinear(
    src: &RgbImage,
    region: Rect,
    out_w: usize,
    out_h: usize,
    window: Rect,
) -> RgbImage {
    assert!(region.w > 0 && region.h > 0, "empty region");
    assert!(region.x + region.w <= src.width && region.y + region.h <= src.height);
    assert!(window.x + window.w <= out_w && window.y + window.h <= out_h);
    let mut out = RgbImage::new(window.w, window.h);
    if window.w == 0 || window.h == 0 {
        return out;
    }
    let need_h = region.w != out_w;
    let need_v = region.h != out_h;
    let vc = coeffs(region.h, out_h);
    // Rows of the region that the vertical pass reads.
    let (y_first, y_last) = if need_v {
        let first = vc.bounds[window.y].0;
        let (b, n) = vc.bounds[window.y + window.h - 1];
        (first, b + n)
    } else {
        (window.y, window.y + window.h)
    };
    let rows = y_last - y_first;
    // Horizontal pass: rows y_first..y_last of the region, output columns of the window.
    let mut tmp = vec![0u8; rows * window.w * 3];
    if need_h {
        let hc = coeffs(region.w, out_w);
        for r in 0..rows {
            let src_row = &src.data[((region.y + y_first + r) * src.width + region.x) * 3..];
            let dst_row = &mut tmp[r * window.w * 3..(r + 1) * window.w * 3];
            for (ox, px) in dst_row.chunks_exact_mut(3).enumerate() {
                let xx = window.x + ox;
                let (xmin, n) = hc.bounds[xx];
                let k = &hc.weights[xx * hc.ksize..xx * hc.ksize + n];
                let half = 1i32 << (PRECISION_BITS - 1);
                let (mut s0, mut s1, mut s2) = (half, half, half);
                let taps = &src_row[xmin * 3..(xmin + n) * 3];
                for (w, p) in k.iter().zip(taps.chunks_exact(3)) {
                    s0 += i32::from(p[0]) * w;
                    s1 += i32::from(p[1]) * w;
                    s2 += i32::from(p[2]) * w;
                }
                px[0] = clip8(s0);
                px[1] = clip8(s1);
                px[2] = clip8(s2);
            }
        }
    } else {
        for r in 0..rows {
            let start = ((region.y + y_first + r) * src.width + region.x + window.x) * 3;
            tmp[r * window.w * 3..(r + 1) * window.w * 3]
                .copy_from_slice(&src.data[start..start + window.w * 3]);
        }
    }
    if !need_v {
        out.data.copy_from_slice(&tmp);
        return out;
    }
    // Vertical pass.
    let stride = window.w * 3;
    for oy in 0..window.h {
        let yy = window.y + oy;
        let (ymin, n) = vc.bounds[yy];
        let k = &vc.weights[yy * vc.ksize..yy * vc.ksize + n];
        let dst = &mut out.data[oy * stride..(oy + 1) * stride];
        let half = 1i32 << (PRECISION_BITS - 1);
        let mut acc = vec![half; stride];
        for (t, &w) in k.iter().enumerate() {
            let row = &tmp[(ymin + t - y_first) * stride..(ymin + t - y_first + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * w;
            }
        }
        for (d, a) in dst.iter_mut().zip(acc) {
            *d = clip8(a);
        }
    }
    out
}

/// Python 3's `round()` of a non-negative float to an integer: halves go to the even neighbour.
fn round_half_even(v: f64) -> i64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        let f = v.floor();
        if (f as i64) % 2 == 0 {
            f as i64
        } else {
            f as i64 + 1
        }
    } else {
        r as i64
    }
}

/// Scale range of `RandomResizedCrop`: the crop's area as a fraction of the image's.
pub const RRC_SCALE: (f64, f64) = (0.08, 1.0);
/// Aspect-ratio range (width/height) of `RandomResizedCrop`.
pub const RRC_RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
/// Tries before `RandomResizedCrop` falls back to a centre crop.
pub const RRC_TRIES: usize = 10;

/// torchvision's `RandomResizedCrop.get_params(img, scale, ratio)`: the crop box of an image
/// of `width × height`.
///
/// Up to 10 tries: area fraction s = `uniform(scale)`, aspect r = exp(`uniform(ln ratio)`),
/// w = round(√(A·s·r)), h = round(√(A·s/r)) (Python's `round`, halves to even); the first
/// with 0 < w ≤ W and 0 < h ≤ H is placed at top `randint(0, H − h + 1)`, left
/// `randint(0, W − w + 1)`. Otherwise the fallback centre crop: the whole image when its aspect
/// is inside `ratio`, else the largest box of the nearest allowed aspect, centred
/// (`(H − h) // 2`, `(W − w) // 2`).
///
/// `uniform(lo, hi)` and `randint(lo, hi)` (hi exclusive) are the random sources, called in
/// torchvision's order.
pub fn rrc_params(
    width: usize,
    height: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    uniform: &mut dyn FnMut(f64, f64) -> f64,
    randint: &mut dyn FnMut(usize, usize) -> usize,
) -> Rect {
    let area = (width * height) as f64;
    let log_ratio = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..RRC_TRIES {
        let target_area = area * uniform(scale.0, scale.1);
        let aspect = uniform(log_ratio.0, log_ratio.1).exp();
        let w = round_half_even((target_area * aspect).sqrt());
        let h = round_half_even((target_area / aspect).sqrt());
        if 0 < w && w as usize <= width && 0 < h && h as usize <= height {
            let (w, h) = (w as usize, h as usize);
            let y = randint(0, height - h + 1);
            let x = randint(0, width - w + 1);
            return Rect { x, y, w, h };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (
            width,
            round_half_even(width as f64 / ratio.0.min(ratio.1)) as usize,
        )
    } else if in_ratio > ratio.0.max(ratio.1) {
        (
            round_half_even(height as f64 * ratio.0.max(ratio.1)) as usize,
            height,
        )
    } else {
        (width, height)
    };
    Rect {
        x: (width - w) / 2,
        y: (height - h) / 2,
        w,
        h,
    }
}

/// Strength of `ColorJitter`'s brightness, contrast and saturation in the reference (0.4: each
/// factor uniform in [0.6, 1.4]).
pub const JITTER: f64 = 0.4;

/// One draw of `ColorJitter(b, c, s, hue=0)`: the order of the operations and their factors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    /// torchvision's `fn_idx = torch.randperm(4)`: 0 brightness, 1 contrast, 2 saturation,
    /// 3 hue (a no-op at hue 0).
    pub order: [u8; 4],
    /// Brightness factor.
    pub brightness: f64,
    /// Contrast factor.
    pub contrast: f64,
    /// Saturation factor.
    pub saturation: f64,
}

impl Jitter {
    /// Draws a permutation of the four operations, then the factors of brightness, contrast
    /// and saturation, each uniform in [1 − `strength`, 1 + `strength`], in torchvision's order.
    pub(crate) fn draw(mt: &mut Mt, strength: f64) -> Self {
        let mut order = [0u8, 1, 2, 3];
        rng::legacy_shuffle(mt, &mut order);
        let lo = (1.0 - strength).max(0.0);
        let hi = 1.0 + strength;
        let mut u = || lo + (hi - lo) * rng::uniform01(mt);
        let brightness = u();
        let contrast = u();
        let saturation = u();
        Jitter {
            order,
            brightness,
            contrast,
            saturation,
        }
    }

    /// Applies the operations in `order` to `img` in place (see [`adjust_brightness`],
    /// [`adjust_contrast`], [`adjust_saturation`]).
    pub fn apply(&self, img: &mut RgbImage) {
        for op in self.order {
            match op {
                0 => adjust_brightness(img, self.brightness),
                1 => adjust_contrast(img, self.contrast),
                2 => adjust_saturation(img, self.saturation),
                _ => {}
            }
        }
    }
}

/// Pillow's `Image.blend(degenerate, image, alpha)` of one value (`libImaging/Blend.c`):
/// `d + α·(x − d)` in `float`, truncated, clipped to 0–255 when α is outside [0, 1].
#[inline]
fn blend(d: u8, x: u8, alpha: f32) -> u8 {
    let t = f32::from(d) + alpha * (f32::from(x) - f32::from(d));
    if (0.0..=1.0).contains(&alpha) {
        t as u8
    } else if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

/// Pillow's grey level of an RGB pixel (`convert("L")`):
/// `(19595·R + 38470·G + 7471·B + 0x8000) >> 16` (ITU-R 601-2 luma, 16-bit fixed point).
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// torchvision's `adjust_brightness` on PIL: `ImageEnhance.Brightness(img).enhance(f)`, a blend
/// with black.
pub fn adjust_brightness(img: &mut RgbImage, factor: f64) {
    let a = factor as f32;
    for v in &mut img.data {
        *v = blend(0, *v, a);
    }
}

/// torchvision's `adjust_contrast` on PIL: `ImageEnhance.Contrast(img).enhance(f)`, a blend
/// with a grey image at `int(mean(L) + 0.5)`, the mean grey level of the image.
pub fn adjust_contrast(img: &mut RgbImage, factor: f64) {
    let a = factor as f32;
    let n = (img.width * img.height).max(1);
    let sum: u64 = img
        .data
        .chunks_exact(3)
        .map(|p| u64::from(luma(p[0], p[1], p[2])))
        .sum();
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    for v in &mut img.data {
        *v = blend(mean, *v, a);
    }
}

/// torchvision's `adjust_saturation` on PIL: `ImageEnhance.Color(img).enhance(f)`, a blend
/// of each pixel with its own grey level.
pub fn adjust_saturation(img: &mut RgbImage, factor: f64) {
    let a = factor as f32;
    for p in img.data.chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        for v in p {
            *v = blend(l, *v, a);
        }
    }
}

/// Mirrors `img` left–right in place (`RandomHorizontalFlip` when it fires).
pub fn flip_horizontal(img: &mut RgbImage) {
    let w = img.width;
    for row in img.data.chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (w - 1 - x) * 3 + c);
            }
        }
    }
}

/// The size torchvision's `Resize(size)` gives an image of `width × height`: the shorter side
/// becomes `size`, the longer `int(size · long / short)` (`_compute_resized_output_size`).
pub fn resize_shorter_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    if width <= height {
        (size, size * height / width)
    } else {
        (size * width / height, size)
    }
}

/// Evaluation transform: `Resize(resize)` then `CenterCrop(crop)`, as one resampling of the
/// crop window. The window's top-left is `int(round((H' − crop)/2))`,
/// `int(round((W' − crop)/2))` of the resized `W' × H'` (Python's `round`).
///
/// # Panics
/// If `crop > resize` or the image is empty.
pub fn resize_center_crop(src: &RgbImage, resize: usize, crop: usize) -> RgbImage {
    assert!(crop <= resize, "crop larger than the resized image");
    let (w, h) = resize_shorter_size(src.width, src.height, resize);
    let top = round_half_even((h - crop) as f64 / 2.0) as usize;
    let left = round_half_even((w - crop) as f64 / 2.0) as usize;
    let full = Rect {
        x: 0,
        y: 0,
        w: src.width,
        h: src.height,
    };
    let window = Rect {
        x: left,
        y: top,
        w: crop,
        h: crop,
    };
    resize_bilinear(src, full, w, h, window)
}

/// One draw of the training transform of an image of `width × height`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainDraw {
    /// `RandomResizedCrop`'s box in the decoded image.
    pub crop: Rect,
    /// `RandomHorizontalFlip` fired (p = 0.5).
    pub flip: bool,
    /// `ColorJitter`'s order and factors.
    pub jitter: Jitter,
}

impl TrainDraw {
    /// Draws the crop box ([`rrc_params`] with [`RRC_SCALE`], [`RRC_RATIO`]), the flip (one
    /// bit), then the jitter ([`JITTER`]), in that order, from `mt`.
    pub(crate) fn draw(mt: &mut Mt, width: usize, height: usize) -> Self {
        let crop = {
            let cell = std::cell::RefCell::new(&mut *mt);
            rrc_params(
                width,
                height,
                RRC_SCALE,
                RRC_RATIO,
                &mut |lo, hi| lo + (hi - lo) * rng::uniform01(&mut cell.borrow_mut()),
                &mut |lo, hi| lo + rng::random_interval(&mut cell.borrow_mut(), hi - lo - 1),
            )
        };
        let flip = mt.next_u32() & 1 == 1;
        let jitter = Jitter::draw(mt, JITTER);
        TrainDraw { crop, flip, jitter }
    }

    /// Applies the draw: crop + resize to `size × size`, flip, jitter.
    pub fn apply(&self, src: &RgbImage, size: usize) -> RgbImage {
        let window = Rect {
            x: 0,
            y: 0,
            w: size,
            h: size,
        };
        let mut out = resize_bilinear(src, self.crop, size, size, window);
        if self.flip {
            flip_horizontal(&mut out);
        }
        self.jitter.apply(&mut out);
        out
    }
}

/// `ToTensor()` + `Normalize(mean, std)`: `[H, W, 3]` u8 in, `[3, H, W]` f32 out.
///
/// # Panics
/// If `out` is not `3·H·W` long or `norm` has fewer than 3 channels.
pub fn to_chw_normalized(img: &RgbImage, norm: &Normalization, out: &mut [f32]) {
    let plane = img.width * img.height;
    assert_eq!(out.len(), 3 * plane);
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, p) in img.data.chunks_exact(3).enumerate() {
        r[i] = norm.apply(0, p[0]);
        g[i] = norm.apply(1, p[1]);
        b[i] = norm.apply(2, p[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(2.4999), 2);
        assert_eq!(round_half_even(3.7), 4);
    }

    #[test]
    fn rrc_falls_back_to_centre_crop_after_ten_tries() {
        // Every try asks for more than the image (scale 1 with the widest aspect) → fallback.
        let mut calls = 0;
        let mut uniform = |lo: f64, hi: f64| {
            calls += 1;
            hi.max(lo)
        };
        let mut randint = |_: usize, _: usize| -> usize { panic!("no placement expected") };
        // 100 × 10 image, aspect 10 > 4/3: h = 10, w = round(10 · 4/3) = round(13.33) = 13,
        // left = (100 − 13) // 2 = 43, top = 0.
        let r = rrc_params(100, 10, RRC_SCALE, RRC_RATIO, &mut uniform, &mut randint);
        assert_eq!(
            r,
            Rect {
                x: 43,
                y: 0,
                w: 13,
                h: 10
            }
        );
        assert_eq!(calls, 2 * RRC_TRIES);
        // 10 × 100, aspect 0.1 < 3/4: w = 10, h = round(10 / 0.75) = 13, top = 87 // 2 = 43.
        let mut uniform = |lo: f64, hi: f64| if lo < 0.0 { lo } else { hi };
        let r = rrc_params(10, 100, RRC_SCALE, RRC_RATIO, &mut uniform, &mut randint);
        assert_eq!(
            r,
            Rect {
                x: 0,
                y: 43,
                w: 10,
                h: 13
            }
        );
    }

    #[test]
    fn rrc_places_a_fitting_crop() {
        // scale 0.25, aspect 1 on 40 × 20: w = h = round(√200) = 14; top in 0..7, left in 0..27.
        let mut draws = vec![0.25, 0.0].into_iter();
        let mut uniform = |_: f64, _: f64| draws.next().unwrap();
        let mut seen = Vec::new();
        let mut randint = |lo: usize, hi: usize| {
            seen.push((lo, hi));
            hi - 1
        };
        let r = rrc_params(40, 20, RRC_SCALE, RRC_RATIO, &mut uniform, &mut randint);
        assert_eq!(
            r,
            Rect {
                x: 26,
                y: 6,
                w: 14,
                h: 14
            }
        );
        assert_eq!(seen, [(0, 7), (0, 27)]);
    }

    #[test]
    fn identity_resize_copies() {
        let img = RgbImage {
            width: 3,
            height: 2,
            data: (0..18).collect(),
        };
        let full = Rect {
            x: 0,
            y: 0,
            w: 3,
            h: 2,
        };
        assert_eq!(resize_bilinear(&img, full, 3, 2, full), img);
    }

    #[test]
    fn luma_and_blend_by_hand() {
        // (19595·255 + 0x8000) >> 16 = 5029493 >> 16 = 76.
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(255, 255, 255), 255);
        // Brightness 1.4 on 200: 280 → clipped 255; 0.5 on 201: 100.5 → 100.
        assert_eq!(blend(0, 200, 1.4), 255);
        assert_eq!(blend(0, 201, 0.5), 100);
        // Contrast towards 100 with 0.6 from 50: 100 + 0.6·(−50) = 70.
        assert_eq!(blend(100, 50, 0.6), 70);
    }

    #[test]
    fn flip_mirrors_rows() {
        let mut img = RgbImage {
            width: 3,
            height: 1,
            data: vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
        };
        flip_horizontal(&mut img);
        assert_eq!(img.data, [7, 8, 9, 4, 5, 6, 1, 2, 3]);
    }

    #[test]
    fn shorter_side_sizes() {
        assert_eq!(resize_shorter_size(500, 375, 256), (341, 256));
        assert_eq!(resize_shorter_size(375, 500, 256), (256, 341));
        assert_eq!(resize_shorter_size(64, 64, 73), (73, 73));
    }
}
