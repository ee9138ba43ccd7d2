//! CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) from the files of their official releases.
//!
//! * Python version (what torchvision downloads): `cifar-10-batches-py/data_batch_1..5`,
//!   `test_batch`; `cifar-100-python/train`, `test`. Each is a pickled dict (protocol 2, written
//!   by Python 2, so its keys are byte strings) with `b'data'`, a `uint8` NumPy array N×3072,
//!   and `b'labels'` (CIFAR-10) or `b'fine_labels'` (CIFAR-100), a list of N ints.
//! * Binary version: `cifar-10-batches-bin/data_batch_1.bin..5`, `test_batch.bin`, records of
//!   1 label byte + 3072 pixel bytes; `cifar-100-binary/train.bin`, `test.bin`, records of a
//!   coarse label byte, a fine label byte, 3072 pixel bytes.
//!
//! In both, an image's 3072 bytes are the 1024 red, then green, then blue values of a 32×32
//! image, rows top to bottom: already CHW. The training set is batches 1..5 concatenated, as
//! torchvision's `CIFAR10` builds it.
use super::ImageSet;
use crate::config::DatasetName;
use anyhow::{bail, ensure, Context};
use serde_pickle::{DeOptions, HashableValue, Value};
use std::path::{Path, PathBuf};

/// Side of a CIFAR image in pixels.
pub const SIDE: usize = 32;
/// Bytes of one CIFAR image, 3·32·32.
pub const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

/// The two CIFAR releases' file layouts.
#[derive(Debug, Clone, Copy)]
struct Layout {
    name: &'static str,
    num_classes: usize,
    python_dir: &'static str,
    python_train: &'static [&'static str],
    python_test: &'static str,
    label_key: &'static str,
    binary_dir: &'static str,
    binary_train: &'static [&'static str],
    binary_test: &'static str,
    /// Label bytes before the pixels of a binary record; the fine label is the last of them.
    label_bytes: usize,
}

const CIFAR10: Layout = Layout {
    name: "CIFAR-10",
    num_classes: 10,
    python_dir: "cifar-10-batches-py",
    python_train: &[
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
    ],
    python_test: "test_batch",
    label_key: "labels",
    binary_dir: "cifar-10-batches-bin",
    binary_train: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ],
    binary_test: "test_batch.bin",
    label_bytes: 1,
};

const CIFAR100: Layout = Layout {
    name: "CIFAR-100",
    num_classes: 100,
    python_dir: "cifar-100-python",
    python_train: &["train"],
    python_test: "test",
    label_key: "fine_labels",
    binary_dir: "cifar-100-binary",
    binary_train: &["train.bin"],
    binary_test: "test.bin",
    label_bytes: 2,
};

/// Which release was found, and in which folder.
enum Found {
    Python(PathBuf),
    Binary(PathBuf),
}

impl Layout {
    /// The python folder first (under `data_path`, or `data_path` itself), then the binary one.
    fn locate(&self, data_path: &Path) -> anyhow::Result<Found> {
        let holds = |dir: &Path, files: &[&str]| files.iter().all(|f| dir.join(f).is_file());
        let python_files = [self.python_train[0], self.python_test];
        let binary_files = [self.binary_train[0], self.binary_test];
        let python_sub = data_path.join(self.python_dir);
        let binary_sub = data_path.join(self.binary_dir);
        if python_sub.is_dir() {
            Ok(Found::Python(python_sub))
        } else if holds(data_path, &python_files) {
            Ok(Found::Python(data_path.to_path_buf()))
        } else if binary_sub.is_dir() {
            Ok(Found::Binary(binary_sub))
        } else if holds(data_path, &binary_files) {
            Ok(Found::Binary(data_path.to_path_buf()))
        } else {
            bail!(
                "no {name} data under {path}: expected the python version \
                 ({path}/{py}/{py_file}, …) or the binary version ({path}/{bin}/{bin_file}, …), \
                 or {path} being one of those folders",
                name = self.name,
                path = data_path.display(),
                py = self.python_dir,
                py_file = self.python_train[0],
                bin = self.binary_dir,
                bin_file = self.binary_train[0],
            )
        }
    }

    /// Reads and concatenates `files` of `dir` into an [`ImageSet`].
    fn read_files(&self, dir: &Path, files: &[&str], python: bool) -> anyhow::Result<ImageSet> {
        let mut set = ImageSet {
            pixels: Vec::new(),
            labels: Vec::new(),
            channels: 3,
            height: SIDE,
            width: SIDE,
            num_classes: self.num_classes,
        };
        for file in files {
            let path = dir.join(file);
            let (pixels, labels) = if python {
                read_python_batch(&path, self.label_key)?
            } else {
                read_binary_batch(&path, self.label_bytes)?
            };
            if let Some((i, &l)) = labels
                .iter()
                .enumerate()
                .find(|(_, &l)| !(0..self.num_classes as i64).contains(&l))
            {
                bail!(
                    "{}: label {l} of image {i} is not a {} class: expected 0..{}",
                    path.display(),
                    self.name,
                    self.num_classes
                );
            }
            set.pixels.extend_from_slice(&pixels);
            set.labels.extend_from_slice(&labels);
        }
        Ok(set)
    }
}

/// Reads CIFAR-10 or CIFAR-100 (by `dataset`): the training set (CIFAR-10's five batches in
/// order) and the test set, 3×32×32, in file order.
///
/// `data_path` is the folder holding the release's folder (`cifar-10-batches-py`, …, as
/// torchvision's `root`) or that folder itself. When both the python and the binary release
/// are there, the python one is read.
///
/// # Errors
/// `dataset` is not CIFAR; no release is found (the message names the folders looked for);
/// a file is missing or malformed, or holds a label outside the classes (the message names
/// the file).
pub fn read_cifar(dataset: DatasetName, data_path: &Path) -> anyhow::Result<(ImageSet, ImageSet)> {
    let layout = match dataset {
        DatasetName::Cifar10 => CIFAR10,
        DatasetName::Cifar100 => CIFAR100,
        other => bail!("{} is not a CIFAR data set", other.display_name()),
    };
    match layout.locate(data_path)? {
        Found::Python(dir) => Ok((
            layout.read_files(&dir, layout.python_train, true)?,
            layout.read_files(&dir, &[layout.python_test], true)?,
        )),
        Found::Binary(dir) => Ok((
            layout.read_files(&dir, layout.binary_train, false)?,
            layout.read_files(&dir, &[layout.binary_test], false)?,
        )),
    }
}

/// Reads one binary batch: records of `label_bytes` label bytes (the fine label last) then
/// [`IMAGE_BYTES`] pixels. Returns the pixels `[N, 3, 32, 32]` and the N labels.
///
/// # Errors
/// The file cannot be read, is empty, or its length is not a multiple of the record size; the
/// message names the file.
pub fn read_binary_batch(path: &Path, label_bytes: usize) -> anyhow::Result<(Vec<u8>, Vec<i64>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let record = label_bytes + IMAGE_BYTES;
    ensure!(
        !bytes.is_empty() && bytes.len() % record == 0,
        "{} has {} bytes: expected a positive multiple of {record} (records of {label_bytes} \
         label byte(s) and {IMAGE_BYTES} pixels)",
        path.display(),
        bytes.len()
    );
    let n = bytes.len() / record;
    let mut pixels = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for r in bytes.chunks_exact(record) {
        labels.push(i64::from(r[label_bytes - 1]));
        pixels.extend_from_slice(&r[label_bytes..]);
    }
    Ok((pixels, labels))
}

/// Short description of a pickle value's type, for errors.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::I64(_) | Value::Int(_) => "an int",
        Value::F64(_) => "a float",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "a str",
        Value::List(_) => "a list",
        Value::Tuple(_) => "a tuple",
        Value::Set(_) | Value::FrozenSet(_) => "a set",
        Value::Dict(_) => "a dict",
    }
}

/// The raw bytes of a pickled C-ordered `uint8` NumPy array of shape (N, 3072), and N.
///
/// NumPy pickles an array as `_reconstruct(ndarray, (0,), b'b')` followed by BUILD with the
/// state `(version, shape, dtype, is_fortran, raw_bytes)` (`ndarray.__reduce__`); read with
/// `keep_restore_state`, serde-pickle yields that state tuple. Raw bytes arrive as a Python 2
/// `str` (bytes) or, from Python 3 at protocol 2, as `_codecs.encode(…, 'latin1')`, which
/// serde-pickle also turns into bytes.
fn ndarray_u8_rows(v: Value, path: &Path) -> anyhow::Result<(usize, Vec<u8>)> {
    let expected = "a pickled uint8 numpy array of shape (N, 3072)";
    let Value::Tuple(state) = v else {
        bail!(
            "{}: 'data' is {}: expected {expected}",
            path.display(),
            kind(&v)
        );
    };
    let shape: Option<Vec<usize>> = match state.get(1) {
        Some(Value::Tuple(dims)) => dims
            .iter()
            .map(|d| match d {
                Value::I64(x) => usize::try_from(*x).ok(),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    let fortran = match state.get(3) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    };
    let (Some(shape), Some(fortran), Some(Value::Bytes(raw))) =
        (shape, fortran, state.into_iter().nth(4))
    else {
        bail!(
            "{}: 'data' is not {expected} (unexpected array state)",
            path.display()
        );
    };
    ensure!(
        shape.len() == 2 && shape[1] == IMAGE_BYTES,
        "{}: 'data' has shape {shape:?}: expected (N, {IMAGE_BYTES})",
        path.display()
    );
    let n = shape[0];
    ensure!(
        raw.len() == n * IMAGE_BYTES,
        "{}: 'data' holds {} bytes for shape ({n}, {IMAGE_BYTES}): expected {} (dtype uint8)",
        path.display(),
        raw.len(),
        n * IMAGE_BYTES
    );
    ensure!(
        !fortran || n <= 1,
        "{}: 'data' is a Fortran-ordered array: expected C order",
        path.display()
    );
    Ok((n, raw))
}

/// Reads one python batch: a pickled dict with `b'data'` (uint8 N×3072) and `label_key` (a
/// list of N ints; keys may be bytes, as in the release, or str). Returns the pixels
/// `[N, 3, 32, 32]` and the N labels.
///
/// # Errors
/// The file cannot be read, is not a complete pickle, or its content is not as described;
/// the message names the file and what was expected.
pub fn read_python_batch(path: &Path, label_key: &str) -> anyhow::Result<(Vec<u8>, Vec<i64>)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let options = DeOptions::new()
        .keep_restore_state()
        .replace_unresolved_globals();
    let value = serde_pickle::value_from_reader(std::io::BufReader::new(file), options)
        .with_context(|| {
            format!(
                "{} is not a complete pickle: expected a CIFAR python batch",
                path.display()
            )
        })?;
    let Value::Dict(mut dict) = value else {
        bail!(
            "{} holds {}: expected a pickled dict (CIFAR python batch)",
            path.display(),
            kind(&value)
        );
    };
    let mut take = |key: &str| {
        dict.remove(&HashableValue::Bytes(key.as_bytes().to_vec()))
            .or_else(|| dict.remove(&HashableValue::String(key.to_owned())))
            .with_context(|| format!("{} has no '{key}' entry", path.display()))
    };
    let data = take("data")?;
    let labels = take(label_key)?;
    let (n, pixels) = ndarray_u8_rows(data, path)?;
    let Value::List(labels) = labels else {
        bail!(
            "{}: '{label_key}' is {}: expected a list of ints",
            path.display(),
            kind(&labels)
        );
    };
    let labels: Vec<i64> = labels
        .iter()
        .map(|l| match l {
            Value::I64(x) => Ok(*x),
            other => bail!(
                "{}: '{label_key}' holds {}: expected ints",
                path.display(),
                kind(other)
            ),
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        labels.len() == n,
        "{}: '{label_key}' has {} entries but 'data' holds {n} images",
        path.display(),
        labels.len()
    );
    Ok((pixels, labels))
}
