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

#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's rounding offset, added to every accumulator before the taps (`1 << (PRECISION_BITS
/// − 1)`).
const HALF: i32 = 1 << (PRECISION_BITS - 1);

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
    assert!(region.x + region.w <= src.width && region.y + region.h <= src.height);
    resize_bilinear_part(src, (0, 0), region, out_w, out_h, window)
}

/// The pixels of `region` that [`resize_bilinear`]`(_, region, out_w, out_h, window)` reads,
/// in the same coordinates as `region`: the taps of the window's columns and rows (all of
/// `region` along an axis that keeps its size). Decoding only this box of an image is enough
/// for that resize ([`resize_bilinear_part`]). Empty when the window is.
///
/// # Panics
/// If `region` is empty or `window` reaches outside `out_w × out_h`.
pub fn resize_source_box(region: Rect, out_w: usize, out_h: usize, window: Rect) -> Rect {
    assert!(region.w > 0 && region.h > 0, "empty region");
    assert!(window.x + window.w <= out_w && window.y + window.h <= out_h);
    if window.w == 0 || window.h == 0 {
        return Rect {
            x: region.x,
            y: region.y,
            w: 0,
            h: 0,
        };
    }
    let span = |in_size: usize, out_size: usize, first: usize, n: usize| {
        if in_size == out_size {
            (first, first + n)
        } else {
            let c = coeffs(in_size, out_size);
            let lo = c.bounds[first].0;
            let (b, k) = c.bounds[first + n - 1];
            (lo, b + k)
        }
    };
    let (x0, x1) = span(region.w, out_w, window.x, window.w);
    let (y0, y1) = span(region.h, out_h, window.y, window.h);
    Rect {
        x: region.x + x0,
        y: region.y + y0,
        w: x1 - x0,
        h: y1 - y0,
    }
}

/// [`resize_bilinear`] of an image of which only a part is at hand: `part` holds the pixels of
/// the rectangle at `origin` (left, top) of size `part.width × part.height` of the full image;
/// `region` and `window` are as in [`resize_bilinear`], `region` in the full image's
/// coordinates. `part` must cover [`resize_source_box`]`(region, out_w, out_h, window)`; the
/// result is then that of [`resize_bilinear`] on the full image.
///
/// The passes are Pillow's `ImagingResampleHorizontal_8bpc` then
/// `ImagingResampleVertical_8bpc` (`libImaging/Resample.c`): i32 accumulators starting at
/// 2^21, each pass rounded with `>> 22` and clipped to 0–255.
///
/// # Panics
/// If `region` is empty, `window` reaches outside `out_w × out_h`, or `part` does not cover
/// the pixels the window needs.
pub fn resize_bilinear_part(
    part: &RgbImage,
    origin: (usize, usize),
    region: Rect,
    out_w: usize,
    out_h: usize,
    window: Rect,
) -> RgbImage {
    let need = resize_source_box(region, out_w, out_h, window);
    let mut out = RgbImage::new(window.w, window.h);
    if window.w == 0 || window.h == 0 {
        return out;
    }
    assert!(
        need.x >= origin.0
            && need.y >= origin.1
            && need.x + need.w <= origin.0 + part.width
            && need.y + need.h <= origin.1 + part.height,
        "the part {}×{} at {origin:?} does not cover {need:?}",
        part.width,
        part.height
    );
    let need_h = region.w != out_w;
    let need_v = region.h != out_h;
    // Rows of the region that the vertical pass reads: y_first..y_first + rows.
    let y_first = need.y - region.y;
    let rows = need.h;
    let stride = window.w * 3;
    // Horizontal pass: those rows, output columns of the window.
    let mut tmp = if need_v {
        vec![0u8; rows * stride]
    } else {
        Vec::new()
    };
    {
        let dst: &mut [u8] = if need_v { &mut tmp } else { &mut out.data };
        // Offset in `part`, in bytes, of the needed box's row r (region row y_first + r),
        // first needed column.
        let row_at = |r: usize| ((need.y + r - origin.1) * part.width + need.x - origin.0) * 3;
        if need_h {
            let hc = coeffs(region.w, out_w);
            let lo = need.x - region.x;
            let taps = TapTable::new(&hc, (lo, lo + need.w), window.x, window.w, 3);
            for r in 0..rows {
                let start = row_at(r);
                let src_row = &part.data[start..start + need.w * 3];
                horizontal_row(src_row, &taps, &mut dst[r * stride..(r + 1) * stride]);
            }
        } else {
            for r in 0..rows {
                let start = row_at(r);
                dst[r * stride..(r + 1) * stride]
                    .copy_from_slice(&part.data[start..start + stride]);
            }
        }
    }
    if need_v {
        let vc = coeffs(region.h, out_h);
        for oy in 0..window.h {
            let yy = window.y + oy;
            let (ymin, n) = vc.bounds[yy];
            let k = &vc.weights[yy * vc.ksize..yy * vc.ksize + n];
            let first = (ymin - y_first) * stride;
            let src = &tmp[first..first + n * stride];
            vertical_row(
                src,
                stride,
                k,
                &mut out.data[oy * stride..(oy + 1) * stride],
            );
        }
    }
    out
}

/// The taps of a window of output columns: for each, the byte offset of its first input pixel
/// from the first column at hand and its weights, padded with zeros to a common count `taps`
/// (zero taps add nothing, so the sums are Pillow's). A pixel whose padded taps would pass the
/// last column at hand starts earlier instead, its weights shifted right, so that every tap lies
/// in the columns at hand.
struct TapTable {
    /// Byte offset of each output pixel's first tap, `[window.w]`.
    start: Vec<usize>,
    /// Weights, `[window.w, taps]`.
    weights: Vec<i32>,
    /// Taps per output pixel (the largest count of the window).
    taps: usize,
}

impl TapTable {
    /// The taps of output columns `first..first + n` of coefficients `c`, when the columns
    /// `at.0..at.1` of the input (which must hold every tap of those outputs) are at hand.
    fn new(c: &Coeffs, at: (usize, usize), first: usize, n: usize, channels: usize) -> Self {
        let taps = c.bounds[first..first + n]
            .iter()
            .map(|b| b.1)
            .max()
            .unwrap_or(0);
        let mut start = Vec::with_capacity(n);
        let mut weights = vec![0i32; n * taps];
        for (o, xx) in (first..first + n).enumerate() {
            let (xmin, k) = c.bounds[xx];
            // Every output's taps lie in at.0..at.1, so taps ≤ at.1 − at.0 and
            // at.0 ≤ begin ≤ xmin, with the shifted taps ending by begin + taps ≤ at.1.
            let begin = xmin.min(at.1 - taps);
            let shift = xmin - begin;
            start.push((begin - at.0) * channels);
            weights[o * taps + shift..o * taps + shift + k]
                .copy_from_slice(&c.weights[xx * c.ksize..xx * c.ksize + k]);
        }
        TapTable {
            start,
            weights,
            taps,
        }
    }
}

/// One row of the horizontal pass: `dst` (`[window.w, 3]`) from `src` (the row's columns at
/// hand, see [`TapTable::new`]).
fn horizontal_row(src: &[u8], taps: &TapTable, dst: &mut [u8]) {
    if is_x86_feature_detected_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { horizontal_row_avx2(src, taps, dst) }
    } else {
        horizontal_row_generic(src, taps, dst)
    }
}

/// [`horizontal_row_generic`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_row_avx2(src: &[u8], taps: &TapTable, dst: &mut [u8]) {
    horizontal_row_generic(src, taps, dst)
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn horizontal_row_avx2(src: &[u8], taps: &TapTable, dst: &mut [u8]) {
    horizontal_row_generic(src, taps, dst)
}

#[inline(always)]
fn horizontal_row_generic(src: &[u8], taps: &TapTable, dst: &mut [u8]) {
    match taps.taps {
        1 => horizontal_fixed::<1>(src, taps, dst),
        2 => horizontal_fixed::<2>(src, taps, dst),
        3 => horizontal_fixed::<3>(src, taps, dst),
        4 => horizontal_fixed::<4>(src, taps, dst),
        5 => horizontal_fixed::<5>(src, taps, dst),
        6 => horizontal_fixed::<6>(src, taps, dst),
        7 => horizontal_fixed::<7>(src, taps, dst),
        8 => horizontal_fixed::<8>(src, taps, dst),
        t => {
            for ((px, &s), k) in dst
                .chunks_exact_mut(3)
                .zip(&taps.start)
                .zip(taps.weights.chunks_exact(t))
            {
                let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
                for (w, p) in k.iter().zip(src[s..s + 3 * t].chunks_exact(3)) {
                    s0 += i32::from(p[0]) * w;
                    s1 += i32::from(p[1]) * w;
                    s2 += i32::from(p[2]) * w;
                }
                px[0] = clip8(s0);
                px[1] = clip8(s1);
                px[2] = clip8(s2);
            }
        }
    }
}

/// The horizontal pass with `T` taps per output pixel, unrolled.
#[inline(always)]
fn horizontal_fixed<const T: usize>(src: &[u8], taps: &TapTable, dst: &mut [u8]) {
    for ((px, &s), k) in dst
        .chunks_exact_mut(3)
        .zip(&taps.start)
        .zip(taps.weights.chunks_exact(T))
    {
        let k: &[i32; T] = k.try_into().unwrap();
        let p = &src[s..s + 3 * T];
        let mut acc = [HALF; 3];
        for t in 0..T {
            for c in 0..3 {
                acc[c] += i32::from(p[3 * t + c]) * k[t];
            }
        }
        px[0] = clip8(acc[0]);
        px[1] = clip8(acc[1]);
        px[2] = clip8(acc[2]);
    }
}

/// One row of the vertical pass: `dst[i] = clip8(2^21 + Σ_t k[t] · src[t·stride + i])`, in
/// blocks of 32 values whose accumulators stay in registers.
fn vertical_row(src: &[u8], stride: usize, k: &[i32], dst: &mut [u8]) {
    if is_x86_feature_detected_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { vertical_row_avx2(src, stride, k, dst) }
    } else {
        vertical_row_generic(src, stride, k, dst)
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn is_x86_feature_detected_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn is_x86_feature_detected_avx2() -> bool {
    false
}

/// [`vertical_row_generic`] compiled for AVX2 (eight i32 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn vertical_row_avx2(src: &[u8], stride: usize, k: &[i32], dst: &mut [u8]) {
    vertical_row_generic(src, stride, k, dst)
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn vertical_row_avx2(src: &[u8], stride: usize, k: &[i32], dst: &mut [u8]) {
    vertical_row_generic(src, stride, k, dst)
}

#[inline(always)]
fn vertical_row_generic(src: &[u8], stride: usize, k: &[i32], dst: &mut [u8]) {
    const B: usize = 32;
    let full = stride / B * B;
    let mut i = 0;
    while i < full {
        let mut acc = [HALF; B];
        for (t, &w) in k.iter().enumerate() {
            let row: &[u8; B] = src[t * stride + i..t * stride + i + B].try_into().unwrap();
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * w;
            }
        }
        for (d, a) in dst[i..i + B].iter_mut().zip(acc) {
            *d = clip8(a);
        }
        i += B;
    }
    for j in full..stride {
        let mut a = HALF;
        for (t, &w) in k.iter().enumerate() {
            a += i32::from(src[t * stride + j]) * w;
        }
        dst[j] = clip8(a);
    }
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

/// [`blend`] of every value 0–255 with the constant `d`: `lut[x] = blend(d, x, alpha)`, so a
/// blend with a constant image is one table look-up per value.
fn blend_lut(d: u8, alpha: f32) -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (x, v) in lut.iter_mut().enumerate() {
        *v = blend(d, x as u8, alpha);
    }
    lut
}

/// Replaces every value `v` of `img` by `lut[v]`.
fn map_lut(img: &mut RgbImage, lut: &[u8; 256]) {
    for v in &mut img.data {
        *v = lut[usize::from(*v)];
    }
}

/// torchvision's `adjust_brightness` on PIL: `ImageEnhance.Brightness(img).enhance(f)`, a blend
/// with black (as a 256-entry table of [`blend`]).
pub fn adjust_brightness(img: &mut RgbImage, factor: f64) {
    map_lut(img, &blend_lut(0, factor as f32));
}

/// torchvision's `adjust_contrast` on PIL: `ImageEnhance.Contrast(img).enhance(f)`, a blend
/// with a grey image at `int(mean(L) + 0.5)`, the mean grey level of the image (as a 256-entry
/// table of [`blend`]).
pub fn adjust_contrast(img: &mut RgbImage, factor: f64) {
    let n = (img.width * img.height).max(1);
    let sum = luma_sum(&img.data);
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    map_lut(img, &blend_lut(mean, factor as f32));
}

/// Σ [`luma`] over the pixels of `data` (`[N, 3]`).
fn luma_sum(data: &[u8]) -> u64 {
    data.chunks_exact(3)
        .map(|p| u64::from(luma(p[0], p[1], p[2])))
        .sum()
}

/// torchvision's `adjust_saturation` on PIL: `ImageEnhance.Color(img).enhance(f)`, a blend
/// of each pixel with its own grey level.
pub fn adjust_saturation(img: &mut RgbImage, factor: f64) {
    let a = factor as f32;
    if is_x86_feature_detected_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { saturation_avx2(&mut img.data, a) }
    } else {
        saturation_generic(&mut img.data, a)
    }
}

/// [`saturation_generic`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn saturation_avx2(data: &mut [u8], a: f32) {
    saturation_generic(data, a)
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn saturation_avx2(data: &mut [u8], a: f32) {
    saturation_generic(data, a)
}

/// [`blend`] of each value with its pixel's [`luma`], branch-free: clamping to 0–255 before the
/// truncating conversion gives [`blend`]'s result for every `a` (inside [0, 1] the value is
/// already in range; outside, ≤ 0 gives 0 and ≥ 255 gives 255 either way).
#[inline(always)]
fn saturation_generic(data: &mut [u8], a: f32) {
    for p in data.chunks_exact_mut(3) {
        let l = f32::from(luma(p[0], p[1], p[2]));
        for v in p {
            *v = (l + a * (f32::from(*v) - l)).clamp(0.0, 255.0) as u8;
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

/// The geometry of `Resize(resize)` + `CenterCrop(crop)` on an image of `width × height`: the
/// resized size `W' × H'` ([`resize_shorter_size`]) and the crop window in it, of top-left
/// `int(round((H' − crop)/2))`, `int(round((W' − crop)/2))` (torchvision's `center_crop`,
/// Python's `round`).
///
/// # Panics
/// If `crop > resize`.
pub fn center_crop_window(
    width: usize,
    height: usize,
    resize: usize,
    crop: usize,
) -> (usize, usize, Rect) {
    assert!(crop <= resize, "crop larger than the resized image");
    let (w, h) = resize_shorter_size(width, height, resize);
    let top = round_half_even((h - crop) as f64 / 2.0) as usize;
    let left = round_half_even((w - crop) as f64 / 2.0) as usize;
    (
        w,
        h,
        Rect {
            x: left,
            y: top,
            w: crop,
            h: crop,
        },
    )
}

/// Evaluation transform: `Resize(resize)` then `CenterCrop(crop)`, as one resampling of the
/// crop window ([`center_crop_window`]).
///
/// # Panics
/// If `crop > resize` or the image is empty.
pub fn resize_center_crop(src: &RgbImage, resize: usize, crop: usize) -> RgbImage {
    let (w, h, window) = center_crop_window(src.width, src.height, resize, crop);
    let full = Rect {
        x: 0,
        y: 0,
        w: src.width,
        h: src.height,
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
        self.finish(resize_bilinear(src, self.crop, size, size, window))
    }

    /// The steps after the resized crop: flip (when drawn), then jitter, of `resized`.
    pub fn finish(&self, mut resized: RgbImage) -> RgbImage {
        if self.flip {
            flip_horizontal(&mut resized);
        }
        self.jitter.apply(&mut resized);
        resized
    }
}

/// `ToTensor()` + `Normalize(mean, std)` of every 8-bit value, per channel: `lut[c][x]` is
/// [`Normalization::apply`]`(c, x)` (the same `f32` arithmetic, so the same values).
#[derive(Debug, Clone, PartialEq)]
pub struct NormLut {
    lut: [[f32; 256]; 3],
}

impl NormLut {
    /// The tables of the first three channels of `norm`.
    ///
    /// # Panics
    /// If `norm` has fewer than 3 channels.
    pub fn new(norm: &Normalization) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (x, v) in table.iter_mut().enumerate() {
                *v = norm.apply(c, x as u8);
            }
        }
        NormLut { lut }
    }

    /// The normalised value of `x` in channel `c` (0–2).
    #[inline]
    pub fn get(&self, c: usize, x: u8) -> f32 {
        self.lut[c][usize::from(x)]
    }
}

/// `ToTensor()` + `Normalize(mean, std)`: `[H, W, 3]` u8 in, `[3, H, W]` f32 out.
///
/// # Panics
/// If `out` is not `3·H·W` long or `norm` has fewer than 3 channels.
pub fn to_chw_normalized(img: &RgbImage, norm: &Normalization, out: &mut [f32]) {
    to_chw_lut(img, &NormLut::new(norm), out);
}

/// [`to_chw_normalized`] with the tables already made.
///
/// # Panics
/// If `out` is not `3·H·W` long.
pub fn to_chw_lut(img: &RgbImage, lut: &NormLut, out: &mut [f32]) {
    let plane = img.width * img.height;
    assert_eq!(out.len(), 3 * plane);
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let [lr, lg, lb] = &lut.lut;
    for (((p, r), g), b) in img
        .data
        .chunks_exact(3)
        .zip(r.iter_mut())
        .zip(g.iter_mut())
        .zip(b.iter_mut())
    {
        *r = lr[usize::from(p[0])];
        *g = lg[usize::from(p[1])];
        *b = lb[usize::from(p[2])];
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

    /// A `w × h` image of a deterministic pseudo-random pattern.
    fn noise(w: usize, h: usize, seed: u32) -> RgbImage {
        let mut state = seed;
        let data = (0..w * h * 3)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }

    /// Pillow's passes as first written here: per output pixel, the taps of `coeffs` without
    /// padding, then the vertical pass row by row.
    fn resize_direct(src: &RgbImage, region: Rect, out_w: usize, out_h: usize) -> RgbImage {
        let hc = coeffs(region.w, out_w);
        let mut tmp = vec![0u8; region.h * out_w * 3];
        for y in 0..region.h {
            for xx in 0..out_w {
                let (xmin, n) = hc.bounds[xx];
                for c in 0..3 {
                    let mut s = HALF;
                    for t in 0..n {
                        let p =
                            src.data[((region.y + y) * src.width + region.x + xmin + t) * 3 + c];
                        s += i32::from(p) * hc.weights[xx * hc.ksize + t];
                    }
                    tmp[(y * out_w + xx) * 3 + c] = clip8(s);
                }
            }
        }
        let vc = coeffs(region.h, out_h);
        let mut out = RgbImage::new(out_w, out_h);
        for yy in 0..out_h {
            let (ymin, n) = vc.bounds[yy];
            for i in 0..out_w * 3 {
                let mut s = HALF;
                for t in 0..n {
                    s += i32::from(tmp[(ymin + t) * out_w * 3 + i]) * vc.weights[yy * vc.ksize + t];
                }
                out.data[yy * out_w * 3 + i] = clip8(s);
            }
        }
        out
    }

    #[test]
    fn resize_equals_the_direct_passes_and_parts_equal_the_whole() {
        let src = noise(157, 101, 3);
        let cases = [
            (
                Rect {
                    x: 0,
                    y: 0,
                    w: 157,
                    h: 101,
                },
                40,
                30,
            ), // down, 4–5 taps
            (
                Rect {
                    x: 10,
                    y: 7,
                    w: 120,
                    h: 90,
                },
                37,
                11,
            ), // down a lot, > 8 taps
            (
                Rect {
                    x: 3,
                    y: 2,
                    w: 9,
                    h: 7,
                },
                45,
                33,
            ), // up
            (
                Rect {
                    x: 20,
                    y: 9,
                    w: 60,
                    h: 60,
                },
                60,
                45,
            ), // one axis kept
            (
                Rect {
                    x: 50,
                    y: 40,
                    w: 100,
                    h: 61,
                },
                73,
                61,
            ),
        ];
        for (region, ow, oh) in cases {
            let whole = Rect {
                x: 0,
                y: 0,
                w: ow,
                h: oh,
            };
            let want = resize_direct(&src, region, ow, oh);
            assert_eq!(
                resize_bilinear(&src, region, ow, oh, whole),
                want,
                "{region:?}"
            );
            // Windows, from the full source and from just the box they need.
            for window in [
                whole,
                Rect {
                    x: 0,
                    y: 0,
                    w: 1,
                    h: 1,
                },
                Rect {
                    x: ow - 1,
                    y: oh - 1,
                    w: 1,
                    h: 1,
                },
                Rect {
                    x: ow / 3,
                    y: oh / 4,
                    w: ow / 2,
                    h: oh / 2,
                },
                Rect {
                    x: ow / 2,
                    y: 0,
                    w: ow - ow / 2,
                    h: 2,
                },
            ] {
                let got = resize_bilinear(&src, region, ow, oh, window);
                for r in 0..window.h {
                    let at = ((window.y + r) * ow + window.x) * 3;
                    assert_eq!(
                        got.data[r * window.w * 3..(r + 1) * window.w * 3],
                        want.data[at..at + window.w * 3],
                        "{region:?} {window:?}"
                    );
                }
                let need = resize_source_box(region, ow, oh, window);
                assert!(need.x >= region.x && need.x + need.w <= region.x + region.w);
                assert!(need.y >= region.y && need.y + need.h <= region.y + region.h);
                let mut part = RgbImage::new(need.w, need.h);
                for r in 0..need.h {
                    let at = ((need.y + r) * src.width + need.x) * 3;
                    part.data[r * need.w * 3..(r + 1) * need.w * 3]
                        .copy_from_slice(&src.data[at..at + need.w * 3]);
                }
                let from_part =
                    resize_bilinear_part(&part, (need.x, need.y), region, ow, oh, window);
                assert_eq!(from_part, got, "part {need:?} of {region:?} {window:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not cover")]
    fn a_part_too_small_panics() {
        let src = noise(20, 20, 1);
        let region = Rect {
            x: 0,
            y: 0,
            w: 20,
            h: 20,
        };
        let window = Rect {
            x: 0,
            y: 0,
            w: 10,
            h: 10,
        };
        resize_bilinear_part(&src, (1, 0), region, 10, 10, window);
    }

    #[test]
    fn blend_tables_equal_blend() {
        for d in [0u8, 1, 77, 128, 254, 255] {
            for alpha in [0.0f32, 0.6, 0.61, 0.999, 1.0, 1.01, 1.37, 1.4] {
                let lut = blend_lut(d, alpha);
                for x in 0..=255u8 {
                    assert_eq!(lut[usize::from(x)], blend(d, x, alpha), "{d} {x} {alpha}");
                }
            }
        }
    }

    #[test]
    fn jitter_operations_equal_the_per_value_blends() {
        let img = noise(37, 23, 8);
        for factor in [0.6, 0.73, 1.0, 1.21, 1.4] {
            let a = factor as f32;
            let mut b = img.clone();
            adjust_brightness(&mut b, factor);
            let want: Vec<u8> = img.data.iter().map(|&x| blend(0, x, a)).collect();
            assert_eq!(b.data, want, "brightness {factor}");

            let mut c = img.clone();
            adjust_contrast(&mut c, factor);
            let mean: u64 = img
                .data
                .chunks_exact(3)
                .map(|p| u64::from(luma(p[0], p[1], p[2])))
                .sum();
            let mean = (mean as f64 / (37.0 * 23.0) + 0.5) as u8;
            let want: Vec<u8> = img.data.iter().map(|&x| blend(mean, x, a)).collect();
            assert_eq!(c.data, want, "contrast {factor}");

            let mut s = img.clone();
            adjust_saturation(&mut s, factor);
            let mut want = img.data.clone();
            for p in want.chunks_exact_mut(3) {
                let l = luma(p[0], p[1], p[2]);
                for v in p {
                    *v = blend(l, *v, a);
                }
            }
            assert_eq!(s.data, want, "saturation {factor}");
        }
        // The branch-free form of saturation against `blend` on every (grey, value) pair.
        for alpha in [0.6f32, 0.95, 1.05, 1.4] {
            for l in 0..=255u8 {
                for x in 0..=255u8 {
                    let fast = (f32::from(l) + alpha * (f32::from(x) - f32::from(l)))
                        .clamp(0.0, 255.0) as u8;
                    assert_eq!(fast, blend(l, x, alpha), "{l} {x} {alpha}");
                }
            }
        }
    }

    #[test]
    fn normalisation_table_equals_the_formula() {
        let norm = Normalization {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        };
        let lut = NormLut::new(&norm);
        for c in 0..3 {
            for x in 0..=255u8 {
                assert_eq!(lut.get(c, x).to_bits(), norm.apply(c, x).to_bits());
            }
        }
        // 0 → −mean/std; 255 → (1 − mean)/std, R channel.
        assert!((lut.get(0, 0) + 0.485 / 0.229).abs() < 1e-6);
        assert!((lut.get(0, 255) - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        let img = noise(5, 4, 2);
        let mut out = vec![0f32; 60];
        to_chw_normalized(&img, &norm, &mut out);
        for (i, p) in img.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                assert_eq!(out[c * 20 + i], norm.apply(c, p[c]));
            }
        }
    }
}
