//! Batches of one epoch, assembled off the training thread and delivered in order.
//!
//! `W` loader threads build the batches: thread w builds batches w, w + W, w + 2W, … and puts
//! each into its own bounded channel of `prefetch` batches; the consumer reads the channels
//! round-robin, so batch i always comes i-th. A batch's augmentation is drawn from an MT19937
//! keyed by (seed, epoch, batch index), so the batches do not depend on the number of threads
//! or on timing.
//!
//! In-memory sets ([`ImageSource::Memory`]) are cropped, flipped and normalised from their `u8`
//! pixels; file sets ([`ImageSource::Files`]) are decoded in the loader threads and given the
//! ImageNet-style transforms of [`super::transforms`]. An image that cannot be read is left
//! out of its batch (with its label) and reported in [`Batch::skipped`]; the consumer decides
//! whether that fails the run.
use super::augment::{crop_flip_normalize, normalize, CropFlip, Shape};
use super::files::BadImage;
use super::rng::{self, Purpose};
use super::{ImageSource, Normalization};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Device, Tensor};

/// One batch.
#[derive(Debug)]
pub struct Batch {
    /// `[B, C, H, W]` `f32`, normalised (and augmented for training), on the CPU; in pinned
    /// memory when [`LoaderOptions::pin_memory`] is set.
    pub images: Tensor,
    /// `[B]` `i64` class indices.
    pub labels: Tensor,
    /// B, the number of images (the last batch of an epoch may be short, and a batch loses
    /// the images in `skipped`; B may be 0).
    pub len: usize,
    /// Indices into the set of the `len` images of the batch, in their order.
    pub indices: Vec<usize>,
    /// Position of the batch in the epoch, from 0.
    pub index: usize,
    /// Images of this batch that could not be read or decoded (file sets only), left out of
    /// `images` and `labels`.
    pub skipped: Vec<BadImage>,
}

/// How an epoch's batches are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Images per batch (the last batch holds the remainder; nothing is dropped).
    pub batch_size: usize,
    /// Loader threads; 0 builds each batch in the consuming thread when it is asked for.
    pub workers: usize,
    /// Finished batches each loader thread may hold ready (at least 1 is used), so up to
    /// `workers · prefetch` batches are in memory ahead of the consumer.
    pub prefetch: usize,
    /// Apply the training augmentation before normalising: for in-memory sets a random crop
    /// with 4-pixel zero padding and a horizontal flip (p = 0.5); for file sets
    /// `RandomResizedCrop`, flip and `ColorJitter`. Otherwise in-memory sets are normalised
    /// only and file sets get `Resize` + `CenterCrop`.
    pub augment: bool,
    /// Copy the images into page-locked memory for asynchronous host-to-CUDA copies. Set it
    /// only when training on CUDA; if pinning fails, the batch stays in pageable memory.
    pub pin_memory: bool,
    /// First batch to build (0 normally): resuming a stopped epoch skips the batches it had
    /// trained, and every later batch keeps the index, and so the augmentation, it would have
    /// had.
    pub first_batch: usize,
}

impl LoaderOptions {
    /// Training batches: augmented, 4 batches prefetched per loader thread, from batch 0.
    pub fn training(batch_size: usize, workers: usize, pin_memory: bool) -> Self {
        LoaderOptions {
            batch_size,
            workers,
            prefetch: 4,
            augment: true,
            pin_memory,
            first_batch: 0,
        }
    }

    /// Evaluation batches: not augmented, 2 batches prefetched per loader thread, from batch 0.
    pub fn evaluation(batch_size: usize, workers: usize, pin_memory: bool) -> Self {
        LoaderOptions {
            batch_size,
            workers,
            prefetch: 2,
            augment: false,
            pin_memory,
            first_batch: 0,
        }
    }
}

/// A CPU tensor of `shape` holding a copy of `data`, made without entering a libtorch parallel
/// region.
///
/// Loader threads must not enter one: libtorch's OpenMP gives every thread that does its own
/// team of intra-op threads, which spin after each region and take the cores that the training
/// thread's team computes on (measured on 2 cores: the stage-1 pipeline at 27 % of the bare
/// loop). `Tensor::from_slice` zero-fills in parallel before copying and pinning copies in
/// parallel, so a loader thread allocates with `Tensor::empty` and copies itself, and pinning
/// happens in the consumer.
fn cpu_tensor<T: tch::kind::Element>(data: &[T], shape: &[i64]) -> Tensor {
    let t = Tensor::empty(shape, (T::KIND, Device::Cpu));
    assert_eq!(
        t.numel(),
        data.len(),
        "shape {shape:?} for {} values",
        data.len()
    );
    if !data.is_empty() {
        // SAFETY: `t` is a fresh, contiguous CPU tensor of exactly `data.len()` elements of T.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), t.data_ptr() as *mut T, data.len()) };
    }
    t
}

/// What every loader thread needs to build any batch of the epoch.
struct Job {
    set: Arc<ImageSource>,
    order: Vec<usize>,
    norm: Normalization,
    batch_size: usize,
    augment: bool,
    pin_memory: bool,
    seed: u64,
    epoch: usize,
}

impl Job {
    fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// Moves the images of a batch to page-locked memory when asked (in the consumer: see
    /// [`cpu_tensor`]); if pinning fails, they stay in pageable memory.
    fn pinned(&self, mut batch: Batch) -> Batch {
        if self.pin_memory {
            // `_pin_memory` rather than `pin_memory`: tch can only call the latter with a
            // device, which libtorch ≥ 2.5 answers with a deprecation warning on stderr at
            // every call; the former takes CUDA's pinned allocator without one.
            if let Ok(pinned) = batch.images.f_internal_pin_memory(Device::Cuda(0)) {
                batch.images = pinned;
            }
        }
        batch
    }

    /// Builds batch `index`: images `order[index·B ..]`, augmented with the batch's own stream.
    fn build(&self, index: usize) -> Batch {
        let start = index * self.batch_size;
        let ids = &self.order[start..(start + self.batch_size).min(self.order.len())];
        let source = &*self.set;
        let (height, width) = source.sample_size();
        let channels = source.channels();
        let image_len = source.sample_len();
        let mut pixels = vec![0f32; ids.len() * image_len];
        let mut mt = rng::stream(self.seed, Purpose::Augment, self.epoch, index);
        let mut labels: Vec<i64> = Vec::with_capacity(ids.len());
        let mut skipped = Vec::new();
        let mut kept = Vec::with_capacity(ids.len());
        match source {
            ImageSource::Memory(set) => {
                let shape = Shape {
                    channels,
                    height,
                    width,
                };
                for (&i, out) in ids.iter().zip(pixels.chunks_exact_mut(image_len)) {
                    if self.augment {
                        let cf = CropFlip::draw(&mut mt);
                        crop_flip_normalize(set.image(i), shape, cf, &self.norm, out);
                    } else {
                        normalize(set.image(i), channels, &self.norm, out);
                    }
                    labels.push(set.labels[i]);
                }
                kept.extend_from_slice(ids);
            }
            ImageSource::Files(files) => {
                for &i in ids {
                    let at = labels.len() * image_len;
                    let out = &mut pixels[at..at + image_len];
                    let done = if self.augment {
                        files.train_sample(i, &mut mt, &self.norm, out)
                    } else {
                        files.eval_sample(i, &self.norm, out)
                    };
                    match done {
                        Ok(()) => {
                            labels.push(files.labels[i]);
                            kept.push(i);
                        }
                        Err(bad) => skipped.push(bad),
                    }
                }
                pixels.truncate(labels.len() * image_len);
            }
        }
        let images = cpu_tensor(
            &pixels,
            &[
                labels.len() as i64,
                channels as i64,
                height as i64,
                width as i64,
            ],
        );
        Batch {
            images,
            labels: cpu_tensor(&labels, &[labels.len() as i64]),
            len: labels.len(),
            indices: kept,
            index,
            skipped,
        }
    }
}

/// The batches of one epoch, in order; see the module documentation.
///
/// Dropping it before the end stops its threads: they finish the batch in hand, see the
/// consumer gone and exit, and the drop joins them.
pub struct EpochLoader {
    job: Arc<Job>,
    first: usize,
    next: usize,
    receivers: Vec<Receiver<Batch>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// Starts loading one epoch: the images `order[0], order[1], …` of `source`, in batches of
/// `opts.batch_size`, normalised with `norm` (and augmented when `opts.augment`), the
/// augmentation of batch i drawn from (`seed`, `epoch`, i).
///
/// # Panics
/// If `opts.batch_size` is 0 or `norm` has fewer channels than the images. An index of `order`
/// out of range panics in the thread that builds its batch, and that panic is resumed in the
/// consumer when it reaches the batch.
pub fn epoch_loader(
    set: Arc<ImageSource>,
    order: Vec<usize>,
    norm: &Normalization,
    opts: &LoaderOptions,
    seed: u64,
    epoch: usize,
) -> EpochLoader {
    assert!(opts.batch_size > 0, "batch_size must be positive");
    assert!(
        norm.mean.len() >= set.channels() && norm.std.len() >= set.channels(),
        "the normalisation has fewer channels than the images"
    );
    let job = Arc::new(Job {
        set,
        order,
        norm: norm.clone(),
        batch_size: opts.batch_size,
        augment: opts.augment,
        pin_memory: opts.pin_memory,
        seed,
        epoch,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let first = opts.first_batch.min(job.num_batches());
    let workers = opts.workers.min(job.num_batches() - first);
    let mut receivers = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for w in 0..workers {
        let (tx, rx) = bounded(opts.prefetch.max(1));
        receivers.push(rx);
        let (job, stop) = (Arc::clone(&job), Arc::clone(&stop));
        threads.push(
            std::thread::Builder::new()
                .name(format!("mislas-loader-{w}"))
                .spawn(move || work(&job, &stop, first + w, workers, &tx))
                .expect("the OS starts a loader thread"),
        );
    }
    EpochLoader {
        job,
        first,
        next: first,
        receivers,
        threads,
        stop,
    }
}

/// A loader thread of `workers`: builds batches `start`, `start + workers`, … until done,
/// stopped, or the consumer is gone.
fn work(job: &Job, stop: &AtomicBool, start: usize, workers: usize, tx: &Sender<Batch>) {
    for index in (start..job.num_batches()).step_by(workers) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if tx.send(job.build(index)).is_err() {
            return;
        }
    }
}

impl std::fmt::Debug for EpochLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochLoader")
            .field("epoch", &self.job.epoch)
            .field("next", &self.next)
            .field("num_batches", &self.job.num_batches())
            .field("workers", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl EpochLoader {
    /// Number of batches of the epoch, ⌈len(order)/B⌉.
    pub fn num_batches(&self) -> usize {
        self.job.num_batches()
    }
}

impl Iterator for EpochLoader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let index = self.next;
        if index >= self.job.num_batches() {
            return None;
        }
        self.next += 1;
        if self.receivers.is_empty() {
            return Some(self.job.pinned(self.job.build(index)));
        }
        let w = (index - self.first) % self.receivers.len();
        match self.receivers[w].recv() {
            Ok(batch) => Some(self.job.pinned(batch)),
            Err(_) => {
                // The thread ended without sending its batch: it panicked. Pass the panic on.
                let handle = self.threads.remove(w);
                self.receivers.clear();
                match handle.join() {
                    Err(panic) => std::panic::resume_unwind(panic),
                    Ok(()) => panic!("loader thread {w} stopped before batch {index}"),
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.job.num_batches().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochLoader {}

impl Drop for EpochLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Disconnect the channels so that a thread blocked on a full one wakes up and exits.
        self.receivers.clear();
        for t in self.threads.drain(..) {
            // A thread's panic was either passed on by `next` or concerns a batch nobody asked
            // for; it must not abort the drop.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// 10 images 1×2×2 with pixel values 10·i + (0..4), label i % 3.
    fn set() -> Arc<ImageSource> {
        Arc::new(ImageSource::Memory(super::super::ImageSet {
            pixels: (0..10u8)
                .flat_map(|i| (0..4).map(move |p| 10 * i + p))
                .collect(),
            labels: (0..10).map(|i| i % 3).collect(),
            channels: 1,
            height: 2,
            width: 2,
            num_classes: 3,
        }))
    }

    fn unit() -> Normalization {
        // out = x: mean 0, std 1/255.
        Normalization {
            mean: vec![0.0],
            std: vec![1.0 / 255.0],
        }
    }

    fn opts(workers: usize, augment: bool) -> LoaderOptions {
        LoaderOptions {
            batch_size: 4,
            workers,
            prefetch: 2,
            augment,
            pin_memory: false,
            first_batch: 0,
        }
    }

    fn collect(loader: EpochLoader) -> Vec<(usize, usize, Vec<f32>, Vec<i64>)> {
        loader
            .map(|b| {
                let images = Vec::<f32>::try_from(b.images.flatten(0, -1)).expect("f32");
                let labels = Vec::<i64>::try_from(&b.labels).expect("i64");
                (b.index, b.len, images, labels)
            })
            .collect()
    }

    #[test]
    fn batches_in_order_with_short_last() {
        let order = vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0];
        let loader = epoch_loader(set(), order, &unit(), &opts(3, false), 0, 0);
        assert_eq!(loader.num_batches(), 3);
        let batches = collect(loader);
        assert_eq!(batches.len(), 3);
        assert_eq!(
            batches.iter().map(|b| (b.0, b.1)).collect::<Vec<_>>(),
            [(0, 4), (1, 4), (2, 2)]
        );
        // Batch 2 holds images 1 and 0: pixels 10..14 then 0..4, labels 1 and 0.
        let last = &batches[2];
        let px: Vec<i32> = last.2.iter().map(|x| x.round() as i32).collect();
        assert_eq!(px, [10, 11, 12, 13, 0, 1, 2, 3]);
        assert_eq!(last.3, [1, 0]);
        assert_eq!(batches[0].3, [0, 2, 1, 0]);
    }

    #[test]
    fn images_tensor_shape() {
        let mut loader = epoch_loader(set(), (0..10).collect(), &unit(), &opts(1, true), 0, 0);
        let b = loader.next().expect("a batch");
        assert_eq!(b.images.size(), [4, 1, 2, 2]);
        assert_eq!(b.images.kind(), tch::Kind::Float);
        assert_eq!(b.labels.size(), [4]);
        assert_eq!(b.labels.kind(), tch::Kind::Int64);
    }

    #[test]
    fn same_batches_for_any_number_of_workers() {
        let order: Vec<usize> = (0..10).rev().collect();
        let reference = collect(epoch_loader(
            set(),
            order.clone(),
            &unit(),
            &opts(0, true),
            5,
            2,
        ));
        for workers in [1, 2, 3, 8] {
            let got = collect(epoch_loader(
                set(),
                order.clone(),
                &unit(),
                &opts(workers, true),
                5,
                2,
            ));
            assert_eq!(got, reference, "{workers} workers");
        }
        let other_epoch = collect(epoch_loader(set(), order, &unit(), &opts(2, true), 5, 3));
        assert_ne!(other_epoch, reference);
    }

    #[test]
    fn first_batch_skips_and_keeps_indices() {
        let order: Vec<usize> = (0..10).rev().collect();
        let full = collect(epoch_loader(
            set(),
            order.clone(),
            &unit(),
            &opts(2, true),
            5,
            2,
        ));
        for workers in [0, 1, 2, 3] {
            let resumed = LoaderOptions {
                first_batch: 1,
                ..opts(workers, true)
            };
            let got = collect(epoch_loader(set(), order.clone(), &unit(), &resumed, 5, 2));
            assert_eq!(got, full[1..], "{workers} workers");
        }
        let past_end = LoaderOptions {
            first_batch: 7,
            ..opts(2, false)
        };
        assert!(collect(epoch_loader(set(), order, &unit(), &past_end, 5, 2)).is_empty());
    }

    #[test]
    fn dropping_midway_joins_promptly() {
        // 100 batches, 4 threads with 1 slot each: the threads block on full channels.
        let order: Vec<usize> = (0..400).map(|i| i % 10).collect();
        let o = LoaderOptions {
            batch_size: 4,
            workers: 4,
            prefetch: 1,
            augment: true,
            pin_memory: false,
            first_batch: 0,
        };
        let mut loader = epoch_loader(set(), order, &unit(), &o, 0, 0);
        assert!(loader.next().is_some());
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        drop(loader);
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn empty_order_yields_nothing() {
        let loader = epoch_loader(set(), Vec::new(), &unit(), &opts(2, false), 0, 0);
        assert_eq!(loader.len(), 0);
        assert_eq!(collect(loader).len(), 0);
    }

    #[test]
    #[should_panic]
    fn worker_panic_is_passed_on() {
        let loader = epoch_loader(set(), vec![0, 99], &unit(), &opts(1, false), 0, 0);
        let _ = collect(loader);
    }
}
