//! Images read from files on demand (the list-file data sets): decoding with the `image` crate
//! (JPEG through zune-jpeg, PNG through png), then the transforms of [`super::transforms`].
//! Decoding happens in the loader threads, one image at a time.
use super::transforms::{resize_center_crop, to_chw_normalized, RgbImage, TrainDraw};
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

/// Decodes a JPEG or PNG file (format from its content, not its name) to 8-bit RGB, as PIL's
/// `Image.open(f).convert('RGB')`: grey images get three equal channels, an alpha channel is
/// dropped, 16-bit samples are reduced to 8.
///
/// # Errors
/// A [`BadImage`] naming the file: missing or unreadable, of another format, or damaged.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, BadImage> {
    let bad = |reason: String| BadImage {
        path: path.to_path_buf(),
        reason,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| bad(format!("cannot open the image: {e}")))?
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
        let img = decode_rgb(&self.path(i))?;
        let draw = TrainDraw::draw(mt, img.width, img.height);
        to_chw_normalized(&draw.apply(&img, self.image_size), norm, out);
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
        let img = decode_rgb(&self.path(i))?;
        let crop = resize_center_crop(&img, self.eval_resize, self.image_size);
        to_chw_normalized(&crop, norm, out);
        Ok(())
    }
}
