//! Fashion-MNIST in the IDX format of LeCun's MNIST release (Xiao et al., 2017, reuse it):
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each raw or gzip-compressed (`.gz`).
//!
//! An IDX file is a big-endian header, magic `0x00000803` (unsigned bytes, 3 dimensions) then
//! N, rows, columns for images, or magic `0x00000801` then N for labels, followed by exactly
//! N·rows·columns (or N) bytes.
use super::ImageSet;
use anyhow::{bail, ensure, Context};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// IDX magic of an unsigned-byte 3-dimensional array (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic of an unsigned-byte 1-dimensional array (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Side of a Fashion-MNIST image in pixels.
pub const SIDE: usize = 28;
/// Fashion-MNIST classes.
pub const NUM_CLASSES: usize = 10;

/// Reads a whole file, gunzipping it when its name ends in `.gz`.
fn read_maybe_gz(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .with_context(|| format!("{} is not a valid gzip file", path.display()))?;
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(bytes)
}

/// Splits off the header: checks the magic and returns the dimensions and the payload.
fn parse_header<'a>(
    bytes: &'a [u8],
    path: &Path,
    magic: u32,
    what: &str,
    dims: usize,
) -> anyhow::Result<(Vec<usize>, &'a [u8])> {
    let header_len = 4 * (1 + dims);
    let truncated = || {
        format!(
            "{} is truncated: expected a {header_len}-byte IDX header ({what}), found {} bytes",
            path.display(),
            bytes.len()
        )
    };
    let word = |k: usize| -> Option<u32> {
        let b = bytes.get(4 * k..4 * k + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = word(0).with_context(truncated)?;
    ensure!(
        found == magic,
        "bad IDX magic {found:#010x} in {}: expected {magic:#010x} ({what})",
        path.display()
    );
    ensure!(bytes.len() >= header_len, truncated());
    let dims = (1..=dims).filter_map(word).map(|d| d as usize).collect();
    Ok((dims, &bytes[header_len..]))
}

/// Checks that the payload is exactly `expected` bytes.
fn check_len(payload: &[u8], expected: usize, path: &Path, what: &str) -> anyhow::Result<()> {
    if payload.len() < expected {
        bail!(
            "{} is truncated: expected {expected} bytes of {what}, found {}",
            path.display(),
            payload.len()
        );
    }
    ensure!(
        payload.len() == expected,
        "{} has {} bytes of {what} where its header announces {expected}",
        path.display(),
        payload.len()
    );
    Ok(())
}

/// Reads an IDX images file (raw or `.gz` by its name): `(N, rows, columns, pixels)` with the
/// pixels `[N, rows, columns]` row-major.
///
/// # Errors
/// The file cannot be read or gunzipped, its magic is not [`IMAGES_MAGIC`], or it does not hold
/// exactly N·rows·columns pixel bytes; the message names the file.
pub fn read_images(path: &Path) -> anyhow::Result<(usize, usize, usize, Vec<u8>)> {
    let bytes = read_maybe_gz(path)?;
    let (dims, payload) = parse_header(&bytes, path, IMAGES_MAGIC, "images", 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let expected = n
        .checked_mul(rows)
        .and_then(|x| x.checked_mul(cols))
        .with_context(|| format!("{}: dimensions {n}×{rows}×{cols} overflow", path.display()))?;
    check_len(payload, expected, path, "pixels")?;
    Ok((n, rows, cols, payload.to_vec()))
}

/// Reads an IDX labels file (raw or `.gz` by its name): the N labels.
///
/// # Errors
/// The file cannot be read or gunzipped, its magic is not [`LABELS_MAGIC`], or it does not hold
/// exactly N label bytes; the message names the file.
pub fn read_labels(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read_maybe_gz(path)?;
    let (dims, payload) = parse_header(&bytes, path, LABELS_MAGIC, "labels", 1)?;
    check_len(payload, dims[0], path, "labels")?;
    Ok(payload.to_vec())
}

/// Where a Fashion-MNIST file named `stem` lies: `<dir>/<stem>` or `<dir>/<stem>.gz`, with
/// `dir` the data path itself or torchvision's `<data path>/FashionMNIST/raw`; raw files first.
fn find(data_path: &Path, stem: &str) -> anyhow::Result<PathBuf> {
    let dirs = [
        data_path.to_path_buf(),
        data_path.join("FashionMNIST").join("raw"),
    ];
    dirs.iter()
        .flat_map(|d| [d.join(stem), d.join(format!("{stem}.gz"))])
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "Fashion-MNIST file {stem} not found: expected {0}/{stem}[.gz] or \
                 {0}/FashionMNIST/raw/{stem}[.gz]",
                data_path.display()
            )
        })
}

/// Reads one split (`train` or `t10k`) into a 1×28×28 [`ImageSet`] of 10 classes.
fn read_split(data_path: &Path, split: &str) -> anyhow::Result<ImageSet> {
    let images_path = find(data_path, &format!("{split}-images-idx3-ubyte"))?;
    let labels_path = find(data_path, &format!("{split}-labels-idx1-ubyte"))?;
    let (n, rows, cols, pixels) = read_images(&images_path)?;
    ensure!(
        rows == SIDE && cols == SIDE,
        "{} holds {rows}×{cols} images: expected {SIDE}×{SIDE} (Fashion-MNIST)",
        images_path.display()
    );
    let labels = read_labels(&labels_path)?;
    ensure!(
        labels.len() == n,
        "{} holds {} labels but {} holds {n} images",
        labels_path.display(),
        labels.len(),
        images_path.display()
    );
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= NUM_CLASSES)
    {
        bail!(
            "{}: label {l} of image {i} is not a class: expected 0..{NUM_CLASSES}",
            labels_path.display()
        );
    }
    Ok(ImageSet {
        pixels,
        labels: labels.into_iter().map(i64::from).collect(),
        channels: 1,
        height: SIDE,
        width: SIDE,
        num_classes: NUM_CLASSES,
    })
}

/// Reads Fashion-MNIST's training set (`train-*`, 60,000 images) and test set (`t10k-*`,
/// 10,000 images), 1×28×28, labels 0..10, in file order.
///
/// `data_path` is the folder holding the four files, or the root torchvision downloads to
/// (files in `<data_path>/FashionMNIST/raw/`); each file may be raw or `.gz`, raw preferred.
///
/// # Errors
/// A file is missing or malformed (see [`read_images`], [`read_labels`]), images are not
/// 28×28, image and label counts differ, or a label is not below 10; the message names the
/// file.
pub fn read_fashion_mnist(data_path: &Path) -> anyhow::Result<(ImageSet, ImageSet)> {
    Ok((
        read_split(data_path, "train")?,
        read_split(data_path, "t10k")?,
    ))
}
