//! JPEG decoding with libjpeg-turbo, the decoder behind Pillow's JPEG plugin, through its
//! libjpeg API with Pillow's settings (the default accurate integer IDCT, fancy upsampling), so
//! the pixels are those of PIL's `Image.open(f).convert("RGB")` (the tests compare them).
//!
//! Only a box of the image need be decoded ([`decode_box`]): the rows above it are skipped
//! (`jpeg_skip_scanlines`: entropy decoding only), the columns outside it are not
//! inverse-transformed nor colour-converted (`jpeg_crop_scanline`), and decoding stops after
//! its last row. The box's pixels are those of a full decode (a margin of one column each side
//! and one iMCU row above keeps the edges of libjpeg's decoded region out of it; the tests check
//! random boxes against full decodes for every chroma subsampling).
//!
//! Grey JPEGs give three equal channels; CMYK and YCCK JPEGs are converted as PIL does (Adobe
//! polarity, then `cmyk2rgb` of `libImaging/Convert.c`). A truncated file (no end-of-image
//! marker after the first scan, or libjpeg's "premature end of JPEG file") is an error; other
//! libjpeg warnings (e.g. extraneous bytes before a marker) are ignored, as Pillow ignores them.
//! The glue is `src/data/jpeg_turbo.c`, built by `build.rs`.
use super::transforms::{Rect, RgbImage};
use std::os::raw::c_char;

extern "C" {
    fn mislas_jpeg_size(
        buf: *const u8,
        len: usize,
        width: *mut u32,
        height: *mut u32,
        err: *mut c_char,
        errlen: usize,
    ) -> i32;
    #[allow(clippy::too_many_arguments)]
    fn mislas_jpeg_decode_box(
        buf: *const u8,
        len: usize,
        x: u32,
        y: u32,
        w: u32,
        h: u32,
        out: *mut u8,
        err: *mut c_char,
        errlen: usize,
    ) -> i32;
}

/// Length of the message buffer (libjpeg's `JMSG_LENGTH_MAX` is 200).
const ERR_LEN: usize = 256;

fn message(err: &[u8; ERR_LEN]) -> String {
    let end = err.iter().position(|&b| b == 0).unwrap_or(ERR_LEN);
    String::from_utf8_lossy(&err[..end]).into_owned()
}

/// Whether `data` starts like a JPEG file (SOI marker `FF D8` then a marker `FF`).
pub fn is_jpeg(data: &[u8]) -> bool {
    data.len() >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF
}

/// The most pixels an image may have: Pillow's `DecompressionBombError` threshold,
/// 2 × `Image.MAX_IMAGE_PIXELS` (2 × 89,478,485). A header claiming more is refused before any
/// buffer is sized from it.
pub const MAX_PIXELS: usize = 2 * 89_478_485;

/// Width and height in pixels of the JPEG in `data`, from its header alone.
///
/// # Errors
/// libjpeg's message when the header cannot be read (not a JPEG, damaged, cut short), or an
/// image of more than [`MAX_PIXELS`] pixels (a decompression bomb, as Pillow calls it).
pub fn size(data: &[u8]) -> Result<(usize, usize), String> {
    let (mut w, mut h) = (0u32, 0u32);
    let mut err = [0u8; ERR_LEN];
    // SAFETY: `data` is valid for `len` bytes, the outputs are valid for writes, `err` holds
    // `ERR_LEN` bytes; the C side writes only within them (snprintf bounds the message).
    let rc = unsafe {
        mislas_jpeg_size(
            data.as_ptr(),
            data.len(),
            &mut w,
            &mut h,
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if rc != 0 {
        return Err(message(&err));
    }
    let (w, h) = (w as usize, h as usize);
    if w * h > MAX_PIXELS {
        return Err(format!(
            "the header claims {w}×{h} = {} pixels, more than the limit of {MAX_PIXELS} \
             (Pillow's decompression-bomb limit); not decoded",
            w * h
        ));
    }
    Ok((w, h))
}

/// Decodes the pixels of `bx` (in the image's coordinates) of the JPEG in `data` as 8-bit RGB:
/// a `bx.w × bx.h` image (`[bx.h, bx.w, 3]`) equal to that box of the full decode.
///
/// # Errors
/// libjpeg's message (or ours) when the file is damaged or truncated, or `bx` is empty or not
/// inside the image.
pub fn decode_box(data: &[u8], bx: Rect) -> Result<RgbImage, String> {
    let too_big = || format!("box {bx:?} is too large");
    let x = u32::try_from(bx.x).map_err(|_| too_big())?;
    let y = u32::try_from(bx.y).map_err(|_| too_big())?;
    let w = u32::try_from(bx.w).map_err(|_| too_big())?;
    let h = u32::try_from(bx.h).map_err(|_| too_big())?;
    let mut out = RgbImage::new(bx.w, bx.h);
    let mut err = [0u8; ERR_LEN];
    // SAFETY: `data` is valid for `len` bytes; `out.data` holds `w·h·3` bytes, the most the C
    // side writes (it checks that the box lies inside the image before writing anything);
    // `err` holds `ERR_LEN` bytes and the message is written with snprintf.
    let rc = unsafe {
        mislas_jpeg_decode_box(
            data.as_ptr(),
            data.len(),
            x,
            y,
            w,
            h,
            out.data.as_mut_ptr(),
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if rc != 0 {
        return Err(message(&err));
    }
    Ok(out)
}

/// Decodes the whole JPEG in `data` as 8-bit RGB (`[H, W, 3]`).
///
/// # Errors
/// As [`decode_box`].
pub fn decode(data: &[u8]) -> Result<RgbImage, String> {
    let (w, h) = size(data)?;
    decode_box(data, Rect { x: 0, y: 0, w, h })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w × h` JPEG (the `image` crate's encoder, 4:4:4 at quality 90) of gradients and
    /// noise, and its pixels as the encoder got them.
    fn sample_jpeg(w: u32, h: u32) -> Vec<u8> {
        let mut state = 7u32;
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let n = (state >> 26) as u8;
            image::Rgb([
                (x * 255 / w) as u8 ^ n,
                (y * 255 / h) as u8,
                (((x + y) % 200) as u8).wrapping_add(n),
            ])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn boxes_equal_the_full_decode() {
        let data = sample_jpeg(83, 61);
        assert!(is_jpeg(&data));
        assert_eq!(size(&data).unwrap(), (83, 61));
        let full = decode(&data).unwrap();
        assert_eq!((full.width, full.height), (83, 61));
        let mut state = 1u64;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as usize) % n
        };
        for _ in 0..200 {
            let x = next(83);
            let y = next(61);
            let w = 1 + next(83 - x);
            let h = 1 + next(61 - y);
            let b = decode_box(&data, Rect { x, y, w, h }).unwrap();
            for r in 0..h {
                assert_eq!(
                    b.data[r * w * 3..(r + 1) * w * 3],
                    full.data[((y + r) * 83 + x) * 3..((y + r) * 83 + x + w) * 3],
                    "box {x},{y} {w}×{h}, row {r}"
                );
            }
        }
    }

    #[test]
    fn a_header_claiming_too_many_pixels_is_refused() {
        let mut data = sample_jpeg(40, 30);
        // The baseline frame header (SOF0, FF C0): length (2 bytes), precision (1), then height
        // and width (2 bytes each, big-endian). Claim 60000 × 60000 = 3.6·10⁹ pixels.
        let sof = data
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline JPEG");
        data[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let e = size(&data).unwrap_err();
        assert!(e.contains("60000×60000") && e.contains("limit"), "{e}");
        assert!(decode(&data).is_err());
    }

    #[test]
    fn damaged_files_are_errors() {
        let data = sample_jpeg(40, 30);
        // Cut short: no end-of-image marker.
        let e = decode(&data[..data.len() / 2]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        // A header cut short.
        assert!(size(&data[..20]).is_err());
        assert!(decode(b"\xff\xd8\xff\xe0 not really a JPEG").is_err());
        assert!(!is_jpeg(b"\x89PNG\r\n\x1a\n"));
        // A box outside the image.
        let e = decode_box(
            &data,
            Rect {
                x: 30,
                y: 0,
                w: 11,
                h: 1,
            },
        )
        .unwrap_err();
        assert!(e.contains("outside"), "{e}");
        assert!(decode_box(
            &data,
            Rect {
                x: 0,
                y: 0,
                w: 0,
                h: 1
            }
        )
        .is_err());
    }
}
