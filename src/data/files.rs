//! Images read from files on demand (the list-file data sets): JPEGs decoded with libjpeg-turbo
//! ([`super::jpeg`], Pillow's decoder), PNGs with the `image` crate, then the transforms of
//! [`super::transforms`]. Decoding happens in the loader threads, one image at a time.
//!
//! For a sample, a JPEG's header is read first and only the box of pixels that its transform
//! reads is decoded: the crop box of `RandomResizedCrop` for training, the taps of the centre
//! window of `Resize` + `CenterCrop` for evaluation ([`resize_source_box`]). The result is the
//! same as transforming the full decode.
use super::jpeg;
use super::transforms::{
    center_crop_window, resize_bilinear_part, resize_source_box, to_chw_lut, NormLut, Rect,
    RgbImage, TrainDraw,
};
use super::Normalization;
use rand_mt::Mt;
use std::path::{Path, PathBuf};

/// An image that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadImage {
    /// The file.
    pub path: PathBuf,
    /// What went wrong: missing, unreadable, not a JPEG/PNG, truncated, ….
    pub reason: String,
}

impl std::fmt::Display for BadImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Reads a file whole.
fn read(path: &Path) -> Result<Vec<u8>, BadImage> {
    std::fs::read(path).map_err(|e| BadImage {
        path: path.to_path_buf(),
        reason: format!("cannot open the image: {e}"),
    })
}

/// The `BadImage` of a JPEG that libjpeg-turbo refused.
fn bad_jpeg(path: &Path, e: String) -> BadImage {
    BadImage {
        path: path.to_path_buf(),
        reason: format!("cannot decode the JPEG: {e}"),
    }
}

/// Decodes a JPEG or PNG file (format from its content, not its name) to 8-bit RGB, as PIL's
/// `Image.open(f).convert('RGB')`: grey images get three equal channels, an alpha channel is
/// dropped, 16-bit samples are reduced to 8, CMYK JPEGs are converted as PIL converts them.
///
/// # Errors
/// A [`BadImage`] naming the file: missing or unreadable, of another format, or damaged.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, BadImage> {
    let data = read(path)?;
    if jpeg::is_jpeg(&data) {
        return jpeg::decode(&data).map_err(|e| bad_jpeg(path, e));
    }
    decode_other(path, &data)
}

/// Decodes a file that is not a JPEG with the `image` crate (PNG).
fn decode_other(path: &Path, data: &[u8]) -> Result<RgbImage, BadImage> {
    let bad = |reason: String| BadImage {
        path: path.to_path_buf(),
        reason,
    };
    let reader = image::ImageReader::new(std::io::Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| bad(format!("cannot read the image: {e}")))?;
    if reader.format().is_none() {
        return Err(bad("not a JPEG or PNG file".into()));
    }
    let img = reader.decode().map_err(|e| {
        bad(format!(
            "cannot decode the image (expected JPEG or PNG): {e}"
        ))
    })?;
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err(bad("the image is empty (0 pixels)".into()));
    }
    Ok(RgbImage {
        width: w as usize,
        height: h as usize,
        data: rgb.into_raw(),
    })
}

/// A decoded image, or the part of it that a transform needs.
struct Part {
    /// The pixels of the box at `origin` of the full image.
    img: RgbImage,
    /// Left column and top row of the box in the full image.
    origin: (usize, usize),
}

/// Reads the file, gives its size to `choose`, which returns the box of pixels it needs (and
/// anything else it wants to keep), and decodes that box: only that box for a JPEG, the whole
/// image otherwise.
fn decode_part<T>(
    path: &Path,
    choose: impl FnOnce(usize, usize) -> (Rect, T),
) -> Result<(Part, T), BadImage> {
    let data = read(path)?;
    if jpeg::is_jpeg(&data) {
        let (w, h) = jpeg::size(&data).map_err(|e| bad_jpeg(path, e))?;
        if w == 0 || h == 0 {
            return Err(bad_jpeg(path, "the image is empty (0 pixels)".into()));
        }
        let (bx, keep) = choose(w, h);
        let img = jpeg::decode_box(&data, bx).map_err(|e| bad_jpeg(path, e))?;
        return Ok((
            Part {
                img,
                origin: (bx.x, bx.y),
            },
            keep,
        ));
    }
    let img = decode_other(path, &data)?;
    let (_, keep) = choose(img.width, img.height);
    Ok((
        Part {
            img,
            origin: (0, 0),
        },
        keep,
    ))
}

/// A list-file image set: paths under a root folder, class indices already re-indexed by
/// descending training count (see [`super::list_file`]), and the output size of the
/// transforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedImages {
    /// `data_path`: the list's paths are relative to it.
    pub root: PathBuf,
    /// Image paths as written in the list, `[N]`.
    pub paths: Vec<String>,
    /// Class index of each image after re-indexing, `[N]`, in `0..num_classes`.
    pub labels: Vec<i64>,
    /// Number of classes K.
    pub num_classes: usize,
    /// Side S of the square network input (`RandomResizedCrop(S)`, `CenterCrop(S)`), pixels.
    pub image_size: usize,
    /// Evaluation `Resize` of the shorter side, pixels (≥ `image_size`).
    pub eval_resize: usize,
}

impl ListedImages {
    /// The file of image `i`: `root.join(paths[i])` (`os.path.join(root, path)`).
    pub fn path(&self, i: usize) -> PathBuf {
        self.root.join(&self.paths[i])
    }

    /// Training sample of image `i`: decode, [`TrainDraw`] drawn from `mt`, normalised into
    /// `out` (`[3, S, S]`, S = `image_size`).
    ///
    /// # Errors
    /// The image is missing or cannot be decoded; nothing is drawn from `mt` then.
    pub fn train_sample(
        &self,
        i: usize,
        mt: &mut Mt,
        norm: &Normalization,
        out: &mut [f32],
    ) -> Result<(), BadImage> {
        let size = self.image_size;
        // The draw needs the size, known before the pixels; it is drawn from a copy of `mt`
        // that replaces it only once the image is decoded.
        let mut trial = mt.clone();
        let (part, draw) = decode_part(&self.path(i), |w, h| {
            let draw = TrainDraw::draw(&mut trial, w, h);
            (draw.crop, draw)
        })?;
        *mt = trial;
        let window = Rect {
            x: 0,
            y: 0,
            w: size,
            h: size,
        };
        let img = resize_bilinear_part(&part.img, part.origin, draw.crop, size, size, window);
        to_chw_lut(&draw.finish(img), &NormLut::new(norm), out);
        Ok(())
    }

    /// Evaluation sample of image `i`: decode, `Resize(eval_resize)`, `CenterCrop(image_size)`,
    /// normalised into `out` (`[3, S, S]`).
    ///
    /// # Errors
    /// The image is missing or cannot be decoded.
    pub fn eval_sample(
        &self,
        i: usize,
        norm: &Normalization,
        out: &mut [f32],
    ) -> Result<(), BadImage> {
        let (resize, crop) = (self.eval_resize, self.image_size);
        let (part, (full, rw, rh, window)) = decode_part(&self.path(i), |w, h| {
            let full = Rect { x: 0, y: 0, w, h };
            let (rw, rh, window) = center_crop_window(w, h, resize, crop);
            (
                resize_source_box(full, rw, rh, window),
                (full, rw, rh, window),
            )
        })?;
        let img = resize_bilinear_part(&part.img, part.origin, full, rw, rh, window);
        to_chw_lut(&img, &NormLut::new(norm), out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::transforms::{resize_center_crop, to_chw_normalized};
    use super::*;

    fn write(dir: &Path, name: &str, w: u32, h: u32) {
        let mut state = w ^ (h << 8);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let n = (state >> 27) as u8;
            image::Rgb([
                ((x * 255 / w) as u8).wrapping_add(n),
                (y * 255 / h) as u8,
                n.wrapping_mul(4),
            ])
        });
        img.save(dir.join(name)).unwrap();
    }

    /// The samples from a partial decode equal the transforms of the full decode, JPEG and PNG.
    #[test]
    fn samples_equal_the_transforms_of_the_full_decode() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.jpg", 123, 87);
        write(dir.path(), "b.jpg", 64, 150);
        write(dir.path(), "c.png", 90, 70);
        let set = ListedImages {
            root: dir.path().to_path_buf(),
            paths: vec!["a.jpg".into(), "b.jpg".into(), "c.png".into()],
            labels: vec![0, 1, 0],
            num_classes: 2,
            image_size: 32,
            eval_resize: 36,
        };
        let norm = Normalization {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        };
        let mut out = vec![0f32; 3 * 32 * 32];
        let mut want = vec![0f32; 3 * 32 * 32];
        let mut mt = Mt::new(11);
        let mut mt_ref = Mt::new(11);
        for round in 0..20 {
            for i in 0..3 {
                let full = decode_rgb(&set.path(i)).unwrap();
                set.train_sample(i, &mut mt, &norm, &mut out).unwrap();
                let draw = TrainDraw::draw(&mut mt_ref, full.width, full.height);
                to_chw_normalized(&draw.apply(&full, 32), &norm, &mut want);
                assert_eq!(out, want, "training sample of image {i}, round {round}");
                if round == 0 {
                    set.eval_sample(i, &norm, &mut out).unwrap();
                    to_chw_normalized(&resize_center_crop(&full, 36, 32), &norm, &mut want);
                    assert_eq!(out, want, "evaluation sample of image {i}");
                }
            }
        }
    }

    /// A damaged JPEG is a `BadImage` naming the file, and draws nothing from `mt`.
    #[test]
    fn damaged_jpeg_names_the_file_and_draws_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.jpg", 50, 40);
        let whole = std::fs::read(dir.path().join("a.jpg")).unwrap();
        std::fs::write(dir.path().join("cut.jpg"), &whole[..whole.len() * 2 / 3]).unwrap();
        let set = ListedImages {
            root: dir.path().to_path_buf(),
            paths: vec!["cut.jpg".into(), "missing.jpg".into()],
            labels: vec![0, 0],
            num_classes: 1,
            image_size: 16,
            eval_resize: 18,
        };
        let norm = Normalization {
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
        };
        let mut out = vec![0f32; 3 * 16 * 16];
        for i in 0..2 {
            let mut mt = Mt::new(3);
            let e = set.train_sample(i, &mut mt, &norm, &mut out).unwrap_err();
            assert_eq!(e.path, set.path(i));
            assert_eq!(mt.next_u32(), Mt::new(3).next_u32(), "image {i}");
            let e = set.eval_sample(i, &norm, &mut out).unwrap_err();
            assert!(e.to_string().contains(set.paths[i].as_str()), "{e}");
        }
        let e = decode_rgb(&dir.path().join("cut.jpg")).unwrap_err();
        assert!(e.reason.contains("truncated"), "{e}");
    }
}
