//! The data readers on files in each exact on-disk format: IDX (raw and gzip), CIFAR's python
//! pickles (written by the venv's Python and NumPy, and byte for byte as Python 2 wrote the
//! release), CIFAR's binary releases; their errors; and the real Fashion-MNIST against NumPy.
mod common;

use common::python;
use flate2::write::GzEncoder;
use flate2::Compression;
use mislas::config::{Config, DatasetName, ImbalanceType};
use mislas::data::{self, cifar, idx, ImageSet};
use std::io::Write;
use std::path::{Path, PathBuf};

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// `n` pseudo-random bytes from a 64-bit LCG keyed by `key` (test data, not under test).
fn bytes(n: usize, key: u64) -> Vec<u8> {
    let mut s = key.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 56) as u8
        })
        .collect()
}

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

// ---------------------------------------------------------------- IDX

fn idx_images(n: usize, rows: usize, cols: usize, pixels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        v.extend_from_slice(&(d as u32).to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

fn write(path: &Path, content: &[u8], gz: bool) {
    if gz {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(content).expect("gzip");
        let packed = enc.finish().expect("gzip");
        std::fs::write(
            path.with_file_name(format!("{}.gz", file_name(path))),
            packed,
        )
        .expect("write");
    } else {
        std::fs::write(path, content).expect("write");
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned()
}

/// Writes a 3-image training split and a 2-image test split; returns the expected sets.
fn write_fashion(dir: &Path, gz: bool) -> (ImageSet, ImageSet) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut sets = Vec::new();
    for (split, n, key) in [("train", 3, 1), ("t10k", 2, 2)] {
        let pixels = bytes(n * 784, key);
        let labels: Vec<u8> = (0..n as u8).map(|i| (7 * i + 2) % 10).collect();
        write(
            &dir.join(format!("{split}-images-idx3-ubyte")),
            &idx_images(n, 28, 28, &pixels),
            gz,
        );
        write(
            &dir.join(format!("{split}-labels-idx1-ubyte")),
            &idx_labels(&labels),
            gz,
        );
        sets.push(ImageSet {
            pixels,
            labels: labels.iter().map(|&l| i64::from(l)).collect(),
            channels: 1,
            height: 28,
            width: 28,
            num_classes: 10,
        });
    }
    let test = sets.pop().expect("two sets");
    (sets.pop().expect("two sets"), test)
}

#[test]
fn idx_raw_and_gzip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for gz in [false, true] {
        let dir = tmp.path().join(if gz { "gz" } else { "raw" });
        let expected = write_fashion(&dir, gz);
        let got = idx::read_fashion_mnist(&dir).expect("reads");
        assert_eq!(got, expected, "gz = {gz}");
    }
    // torchvision's layout: <root>/FashionMNIST/raw/.
    let root = tmp.path().join("tv");
    let expected = write_fashion(&root.join("FashionMNIST").join("raw"), true);
    assert_eq!(idx::read_fashion_mnist(&root).expect("reads"), expected);
}

#[test]
fn idx_bad_magic_names_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_fashion(tmp.path(), false);
    let path = tmp.path().join("train-images-idx3-ubyte");
    // A labels header where an images header belongs.
    std::fs::write(&path, idx_labels(&[1, 2, 3])).expect("write");
    let msg = err_text(idx::read_fashion_mnist(tmp.path()));
    assert!(
        msg.contains("bad IDX magic 0x00000801")
            && msg.contains(&path.display().to_string())
            && msg.contains("expected 0x00000803 (images)"),
        "{msg}"
    );
}

#[test]
fn idx_truncated_names_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_fashion(tmp.path(), true);
    // Header announces 3 images (3·784 = 2352 bytes) but only 2·784 = 1568 follow.
    let path = tmp.path().join("train-images-idx3-ubyte");
    write(&path, &idx_images(3, 28, 28, &bytes(2 * 784, 5)), true);
    let msg = err_text(idx::read_fashion_mnist(tmp.path()));
    assert!(
        msg.contains("train-images-idx3-ubyte.gz is truncated")
            && msg.contains("expected 2352 bytes of pixels, found 1568"),
        "{msg}"
    );
    // A labels file cut inside its header.
    let labels = tmp.path().join("t10k-labels-idx1-ubyte");
    std::fs::write(&labels, [0, 0, 8]).expect("write");
    let msg = err_text(idx::read_labels(&labels));
    assert!(
        msg.contains(&labels.display().to_string()) && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn idx_mismatches_and_missing_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_fashion(tmp.path(), false);
    // 2 labels for 3 images.
    let labels = tmp.path().join("train-labels-idx1-ubyte");
    std::fs::write(&labels, idx_labels(&[1, 2])).expect("write");
    let msg = err_text(idx::read_fashion_mnist(tmp.path()));
    assert!(
        msg.contains("holds 2 labels") && msg.contains("holds 3 images"),
        "{msg}"
    );
    // Label 10 is not a class.
    std::fs::write(&labels, idx_labels(&[1, 10, 2])).expect("write");
    let msg = err_text(idx::read_fashion_mnist(tmp.path()));
    assert!(msg.contains("label 10 of image 1"), "{msg}");
    // 27×28 images.
    let images = tmp.path().join("t10k-images-idx3-ubyte");
    std::fs::write(&labels, idx_labels(&[1, 2, 3])).expect("write");
    std::fs::write(&images, idx_images(2, 27, 28, &bytes(2 * 27 * 28, 3))).expect("write");
    let msg = err_text(idx::read_fashion_mnist(tmp.path()));
    assert!(
        msg.contains("27×28") && msg.contains("expected 28×28"),
        "{msg}"
    );
    // No file at all.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let msg = err_text(idx::read_fashion_mnist(&empty));
    assert!(
        msg.contains("train-images-idx3-ubyte not found")
            && msg.contains(&empty.display().to_string()),
        "{msg}"
    );
}

#[test]
fn real_fashion_mnist_against_numpy() {
    let dir = Path::new(FASHION_MNIST);
    let (train, test) = idx::read_fashion_mnist(dir).expect("reads the real files");
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.labels[0], 9);
    assert_eq!(train.class_counts(), vec![6000; 10]);
    assert_eq!(test.class_counts(), vec![1000; 10]);

    // NumPy: pixel sums, a few pixels, the reference's subset at IF 0.01 and its SHA-256.
    let script = r#"
import gzip, hashlib, sys
import numpy as np
d = sys.argv[1]
def arr(name, offset):
    with gzip.open(f"{d}/{name}.gz", "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)
tr = arr("train-images-idx3-ubyte", 16).reshape(-1, 784)
te = arr("t10k-images-idx3-ubyte", 16).reshape(-1, 784)
targets_np = arr("train-labels-idx1-ubyte", 8).astype(np.int64)
print(int(tr.astype(np.int64).sum()), int(te.astype(np.int64).sum()))
print(' '.join(str(int(x)) for x in tr[0, 300:310]))
print(int(arr("t10k-labels-idx1-ubyte", 8)[0]))
cls_num = 10
img_max = len(targets_np) / cls_num
counts = [int(img_max * (0.01 ** (i / (cls_num - 1.0)))) for i in range(cls_num)]
np.random.seed(0)
kept = []
for c, n in zip(np.unique(targets_np), counts):
    idx = np.where(targets_np == c)[0]
    np.random.shuffle(idx)
    kept.extend(idx[:n].tolist())
print(' '.join(map(str, counts)))
print(hashlib.sha256('\n'.join(map(str, kept)).encode()).hexdigest())
print(' '.join(map(str, kept[:20])))
"#;
    let out = python(script, &[FASHION_MNIST]);
    let lines: Vec<&str> = out.lines().collect();
    let nums = |l: &str| -> Vec<u64> {
        l.split_whitespace()
            .map(|x| x.parse().expect("a number"))
            .collect()
    };
    let sum = |s: &ImageSet| s.pixels.iter().map(|&p| u64::from(p)).sum::<u64>();
    assert_eq!(vec![sum(&train), sum(&test)], nums(lines[0]));
    let px: Vec<u64> = train.image(0)[300..310]
        .iter()
        .map(|&p| u64::from(p))
        .collect();
    assert_eq!(px, nums(lines[1]));
    assert_eq!(vec![test.labels[0] as u64], nums(lines[2]));

    let cfg = Config {
        dataset: DatasetName::FashionMnist,
        data_path: FASHION_MNIST.into(),
        num_classes: 10,
        imb_factor: Some(0.01),
        imb_type: ImbalanceType::Exp,
        ..Config::default()
    };
    let lt = data::load(&cfg).expect("loads");
    let counts: Vec<u64> = lt.class_counts.iter().map(|&c| c as u64).collect();
    assert_eq!(counts, nums(lines[3]));
    assert_eq!(data::subset_sha256(&lt.kept_indices), lines[4]);
    let first: Vec<u64> = lt.kept_indices[..20].iter().map(|&i| i as u64).collect();
    assert_eq!(first, nums(lines[5]));
    assert_eq!(lt.train.len(), 14_886);
    assert_eq!(lt.test.len(), 10_000);
    assert_eq!(
        lt.train.in_memory().unwrap().image(0),
        train.image(lt.kept_indices[0])
    );
    assert_eq!(lt.norm.mean, [0.2860]);
}

// ---------------------------------------------------------------- CIFAR

/// One batch of test data: pixels `[n, 3072]` and labels.
struct Batch {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

fn batch(n: usize, classes: u8, key: u64) -> Batch {
    Batch {
        pixels: bytes(n * 3072, key),
        labels: bytes(n, key + 1000).iter().map(|b| b % classes).collect(),
    }
}

fn expected(batches: &[&Batch], classes: usize) -> ImageSet {
    ImageSet {
        pixels: batches.iter().flat_map(|b| b.pixels.clone()).collect(),
        labels: batches
            .iter()
            .flat_map(|b| b.labels.iter().map(|&l| i64::from(l)))
            .collect(),
        channels: 3,
        height: 32,
        width: 32,
        num_classes: classes,
    }
}

/// Has NumPy pickle `b` (protocol 2, bytes keys, as in the release) to `path`;
/// `cifar100` writes `b'fine_labels'` and `b'coarse_labels'` instead of `b'labels'`.
fn write_python_batch(path: &Path, b: &Batch, cifar100: bool) {
    let raw = path.with_extension("src");
    std::fs::write(&raw, &b.pixels).expect("write");
    let labels: Vec<String> = b.labels.iter().map(u8::to_string).collect();
    let script = r#"
import pickle, sys
import numpy as np
out, raw, cifar100, labels = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
labels = [int(x) for x in labels.split(",")] if labels else []
data = np.fromfile(raw, dtype=np.uint8).reshape(-1, 3072)
d = {b'batch_label': b'testing batch 1 of 1', b'data': data,
     b'filenames': [b'img_%d.png' % i for i in range(len(labels))]}
if cifar100:
    d[b'fine_labels'] = labels
    d[b'coarse_labels'] = [l // 5 for l in labels]
else:
    d[b'labels'] = labels
with open(out, 'wb') as f:
    pickle.dump(d, f, protocol=2)
"#;
    python(
        script,
        &[
            &path.display().to_string(),
            &raw.display().to_string(),
            if cifar100 { "1" } else { "0" },
            &labels.join(","),
        ],
    );
    std::fs::remove_file(raw).expect("remove");
}

fn write_binary_batch(path: &Path, b: &Batch, cifar100: bool) {
    let mut v = Vec::new();
    for (img, &l) in b.pixels.chunks(3072).zip(&b.labels) {
        if cifar100 {
            v.push(l / 5); // coarse label
        }
        v.push(l);
        v.extend_from_slice(img);
    }
    std::fs::write(path, v).expect("write");
}

/// CIFAR-10 python release under `root/cifar-10-batches-py`; returns (train, test).
fn write_cifar10_python(root: &Path) -> (ImageSet, ImageSet) {
    let dir = root.join("cifar-10-batches-py");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let train: Vec<Batch> = (0..5).map(|k| batch(2 + k, 10, k as u64)).collect();
    for (k, b) in train.iter().enumerate() {
        write_python_batch(&dir.join(format!("data_batch_{}", k + 1)), b, false);
    }
    let test = batch(3, 10, 77);
    write_python_batch(&dir.join("test_batch"), &test, false);
    let refs: Vec<&Batch> = train.iter().collect();
    (expected(&refs, 10), expected(&[&test], 10))
}

#[test]
fn cifar10_python_pickles() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let want = write_cifar10_python(tmp.path());
    // The parent folder, then the folder itself.
    let got = cifar::read_cifar(DatasetName::Cifar10, tmp.path()).expect("reads");
    assert_eq!(got, want);
    assert_eq!(got.0.len(), 2 + 3 + 4 + 5 + 6);
    let got = cifar::read_cifar(
        DatasetName::Cifar10,
        &tmp.path().join("cifar-10-batches-py"),
    )
    .expect("reads");
    assert_eq!(got, want);
}

#[test]
fn cifar100_python_pickles() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cifar-100-python");
    std::fs::create_dir(&dir).expect("mkdir");
    let (train, test) = (batch(7, 100, 11), batch(4, 100, 12));
    write_python_batch(&dir.join("train"), &train, true);
    write_python_batch(&dir.join("test"), &test, true);
    let got = cifar::read_cifar(DatasetName::Cifar100, tmp.path()).expect("reads");
    assert_eq!(got, (expected(&[&train], 100), expected(&[&test], 100)));
    let got = cifar::read_cifar(DatasetName::Cifar100, &dir).expect("reads");
    assert_eq!(got.1, expected(&[&test], 100));
}

/// A CIFAR-10 batch pickled as Python 2's cPickle wrote the release (protocol 2, byte strings
/// as SHORT_BINSTRING/BINSTRING, `numpy.core.multiarray._reconstruct`), one image per label.
fn python2_pickle(pixels: &[u8], labels: &[u8]) -> Vec<u8> {
    let n = labels.len();
    let mut p = b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03\
cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05(K\x01"
        .to_vec();
    p.push(b'M');
    p.extend_from_slice(&(n as u16).to_le_bytes());
    p.extend_from_slice(b"M\x00\x0c\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T");
    p.extend_from_slice(&(pixels.len() as u32).to_le_bytes());
    p.extend_from_slice(pixels);
    p.extend_from_slice(b"tbU\x06labelsq\x08]q\x09(");
    for &l in labels {
        p.push(b'K');
        p.push(l);
    }
    p.extend_from_slice(b"eU\x0bbatch_labelq\x0aU\x15training batch 1 of 5u.");
    p
}

#[test]
fn cifar10_python2_byte_strings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cifar-10-batches-py");
    std::fs::create_dir(&dir).expect("mkdir");
    let batches: Vec<Batch> = (0..6).map(|k| batch(2, 10, 40 + k)).collect();
    let names = [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ];
    for (name, b) in names.iter().zip(&batches) {
        std::fs::write(dir.join(name), python2_pickle(&b.pixels, &b.labels)).expect("write");
    }
    // Python reads the hand-made file as torchvision does (encoding='latin1').
    let check = r#"
import pickle, sys
with open(sys.argv[1], 'rb') as f:
    d = pickle.load(f, encoding='latin1')
print(d['data'].dtype, d['data'].shape, int(d['data'].astype('int64').sum()), d['labels'])
"#;
    let out = python(check, &[&dir.join("test_batch").display().to_string()]);
    let b = &batches[5];
    let total: u64 = b.pixels.iter().map(|&x| u64::from(x)).sum();
    assert_eq!(
        out.trim(),
        format!("uint8 (2, 3072) {total} [{}, {}]", b.labels[0], b.labels[1])
    );
    let got = cifar::read_cifar(DatasetName::Cifar10, tmp.path()).expect("reads");
    let refs: Vec<&Batch> = batches[..5].iter().collect();
    assert_eq!(got, (expected(&refs, 10), expected(&[&batches[5]], 10)));
}

#[test]
fn cifar_binary_releases() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // CIFAR-10 binary.
    let dir10 = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&dir10).expect("mkdir");
    let train: Vec<Batch> = (0..5).map(|k| batch(3, 10, 20 + k)).collect();
    for (k, b) in train.iter().enumerate() {
        write_binary_batch(&dir10.join(format!("data_batch_{}.bin", k + 1)), b, false);
    }
    let test = batch(2, 10, 30);
    write_binary_batch(&dir10.join("test_batch.bin"), &test, false);
    let refs: Vec<&Batch> = train.iter().collect();
    let want = (expected(&refs, 10), expected(&[&test], 10));
    assert_eq!(
        cifar::read_cifar(DatasetName::Cifar10, tmp.path()).expect("reads"),
        want
    );
    assert_eq!(
        cifar::read_cifar(DatasetName::Cifar10, &dir10).expect("reads"),
        want
    );

    // CIFAR-100 binary: coarse byte, fine byte, pixels.
    let dir100 = tmp.path().join("cifar-100-binary");
    std::fs::create_dir(&dir100).expect("mkdir");
    let (train, test) = (batch(5, 100, 31), batch(3, 100, 32));
    write_binary_batch(&dir100.join("train.bin"), &train, true);
    write_binary_batch(&dir100.join("test.bin"), &test, true);
    let want = (expected(&[&train], 100), expected(&[&test], 100));
    assert_eq!(
        cifar::read_cifar(DatasetName::Cifar100, tmp.path()).expect("reads"),
        want
    );
    assert_eq!(
        cifar::read_cifar(DatasetName::Cifar100, &dir100).expect("reads"),
        want
    );
}

#[test]
fn cifar_prefers_python_when_both_exist() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let want = write_cifar10_python(tmp.path());
    let dir = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&dir).expect("mkdir");
    let other = batch(1, 10, 99);
    for name in ["1", "2", "3", "4", "5"] {
        write_binary_batch(&dir.join(format!("data_batch_{name}.bin")), &other, false);
    }
    write_binary_batch(&dir.join("test_batch.bin"), &other, false);
    assert_eq!(
        cifar::read_cifar(DatasetName::Cifar10, tmp.path()).expect("reads"),
        want
    );
}

#[test]
fn cifar_errors_name_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Missing folder.
    let msg = err_text(cifar::read_cifar(DatasetName::Cifar10, tmp.path()));
    assert!(
        msg.contains("no CIFAR-10 data under")
            && msg.contains(&tmp.path().display().to_string())
            && msg.contains("cifar-10-batches-py"),
        "{msg}"
    );
    let msg = err_text(cifar::read_cifar(
        DatasetName::Cifar100,
        &tmp.path().join("nope"),
    ));
    assert!(
        msg.contains("cifar-100-python") && msg.contains("nope"),
        "{msg}"
    );

    write_cifar10_python(tmp.path());
    let dir = tmp.path().join("cifar-10-batches-py");

    // A missing batch inside the folder.
    let b3 = dir.join("data_batch_3");
    let saved = std::fs::read(&b3).expect("read");
    std::fs::remove_file(&b3).expect("remove");
    let msg = err_text(cifar::read_cifar(DatasetName::Cifar10, tmp.path()));
    assert!(msg.contains(&b3.display().to_string()), "{msg}");

    // A short pickle.
    std::fs::write(&b3, &saved[..saved.len() / 2]).expect("write");
    let msg = err_text(cifar::read_cifar(DatasetName::Cifar10, tmp.path()));
    assert!(
        msg.contains(&b3.display().to_string()) && msg.contains("not a complete pickle"),
        "{msg}"
    );

    // A pickle of the wrong type, and a dict without labels.
    let script = r#"
import pickle, sys
import numpy as np
with open(sys.argv[1], 'wb') as f:
    pickle.dump([1, 2, 3], f, protocol=2)
with open(sys.argv[2], 'wb') as f:
    pickle.dump({b'data': np.zeros((2, 3072), dtype=np.uint8)}, f, protocol=2)
with open(sys.argv[3], 'wb') as f:
    pickle.dump({b'data': np.zeros((2, 1024), dtype=np.uint8), b'labels': [0, 1]}, f, protocol=2)
with open(sys.argv[4], 'wb') as f:
    pickle.dump({b'data': np.zeros((2, 3072), dtype=np.int16), b'labels': [0, 1]}, f, protocol=2)
with open(sys.argv[5], 'wb') as f:
    pickle.dump({b'data': np.zeros((2, 3072), dtype=np.uint8), b'labels': [0, 1, 2]}, f, protocol=2)
"#;
    let paths: Vec<PathBuf> = ["list", "nolabels", "shape", "dtype", "count"]
        .iter()
        .map(|n| tmp.path().join(n))
        .collect();
    let args: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python(script, &args);
    let expect = [
        "expected a pickled dict",
        "has no 'labels' entry",
        "expected (N, 3072)",
        "expected 6144 (dtype uint8)",
        "'labels' has 3 entries but 'data' holds 2 images",
    ];
    for (path, text) in paths.iter().zip(expect) {
        let msg = err_text(cifar::read_python_batch(path, "labels"));
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(text),
            "{msg}"
        );
    }

    // A binary batch of the wrong length.
    let bin = tmp.path().join("data_batch_1.bin");
    std::fs::write(&bin, vec![0u8; 3073 + 10]).expect("write");
    let msg = err_text(cifar::read_binary_batch(&bin, 1));
    assert!(
        msg.contains(&bin.display().to_string()) && msg.contains("multiple of 3073"),
        "{msg}"
    );

    // A label outside the classes.
    write_binary_batch(
        &bin,
        &Batch {
            pixels: vec![0; 3072],
            labels: vec![12],
        },
        false,
    );
    let bins = tmp.path().join("bins");
    std::fs::create_dir(&bins).expect("mkdir");
    for name in ["1", "2", "3", "4", "5"] {
        std::fs::copy(&bin, bins.join(format!("data_batch_{name}.bin"))).expect("copy");
    }
    std::fs::copy(&bin, bins.join("test_batch.bin")).expect("copy");
    let msg = err_text(cifar::read_cifar(DatasetName::Cifar10, &bins));
    assert!(
        msg.contains("data_batch_1.bin") && msg.contains("label 12"),
        "{msg}"
    );
}

#[test]
fn load_makes_the_cifar10_long_tail() {
    // 10 classes × 50 images (python release), IF 0.1: counts int(50 · 0.1^(c/9)).
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cifar-10-batches-py");
    std::fs::create_dir(&dir).expect("mkdir");
    for k in 0..5 {
        let labels: Vec<u8> = (0..100).map(|i| ((i * 7 + k) % 10) as u8).collect();
        let b = Batch {
            pixels: bytes(100 * 3072, k as u64),
            labels,
        };
        write_python_batch(&dir.join(format!("data_batch_{}", k + 1)), &b, false);
    }
    write_python_batch(&dir.join("test_batch"), &batch(5, 10, 9), false);
    let cfg = Config {
        dataset: DatasetName::Cifar10,
        data_path: tmp.path().display().to_string(),
        num_classes: 10,
        imb_factor: Some(0.1),
        ..Config::default()
    };
    let lt = data::load(&cfg).expect("loads");
    // Python: [int(50 * (0.1 ** (i / 9.0))) for i in range(10)]
    assert_eq!(lt.class_counts, [50, 38, 29, 23, 17, 13, 10, 8, 6, 5]);
    assert_eq!(lt.test.len(), 5);
    assert_eq!(lt.norm.std, [0.2023, 0.1994, 0.2010]);

    let wrong = Config {
        num_classes: 100,
        ..cfg.clone()
    };
    let msg = err_text(data::load(&wrong));
    assert!(
        msg.contains("num_classes is 100") && msg.contains("10 classes"),
        "{msg}"
    );
    let no_if = Config {
        imb_factor: None,
        ..cfg
    };
    assert!(err_text(data::load(&no_if)).contains("imb_factor"));
}
