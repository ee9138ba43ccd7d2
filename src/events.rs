//! The only contract between the engine and its front ends (terminal UI, headless CLI).
//!
//! The trainer thread publishes [`Event`]s — plain Rust data: numbers, strings, vectors, never a
//! tensor — on an unbounded crossbeam channel, so it never waits for a front end. A front end
//! sends [`Control`]s back; the trainer reads them between batches.
use crate::config::Stage;
use crate::metrics::EvalReport;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The device a run trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `cpu` or `cuda:N`.
    pub id: String,
    /// Human name: "CPU (2 threads)" or the CUDA device's name.
    pub name: String,
    /// Total device memory in bytes, when known (CUDA).
    pub memory_total_bytes: Option<u64>,
}

/// Sent once when a stage starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageStarted {
    /// The stage.
    pub stage: Stage,
    /// Run folder under `saved/`.
    pub run_dir: PathBuf,
    /// Configuration name.
    pub name: String,
    /// Data set, as displayed ("Fashion-MNIST-LT").
    pub dataset: String,
    /// Device.
    pub device: DeviceInfo,
    /// Epochs of this stage.
    pub num_epochs: usize,
    /// First epoch to run (0-based; > 0 when resuming).
    pub start_epoch: usize,
    /// Training batches per epoch.
    pub batches_per_epoch: usize,
    /// Training images per epoch (batches × batch size, last batch possibly short).
    pub images_per_epoch: usize,
    /// Training count of each class, in class index order (descending for the LT sets).
    pub class_counts: Vec<usize>,
    /// Many/medium/few bands as half-open class-index ranges (`head_class_idx`, …).
    pub head_class_idx: [usize; 2],
    /// Medium band.
    pub med_class_idx: [usize; 2],
    /// Tail band.
    pub tail_class_idx: [usize; 2],
}

/// Figures of one training batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchStats {
    /// Stage.
    pub stage: Stage,
    /// Epoch, 0-based.
    pub epoch: usize,
    /// Batch within the epoch, 0-based.
    pub batch: usize,
    /// Batches in this epoch.
    pub batches: usize,
    /// Training loss of the batch (mixup CE in stage 1, LAS in stage 2), nats.
    pub loss: f64,
    /// Top-1 training accuracy of the batch against the unmixed labels, percent.
    pub top1: f64,
    /// Learning rate of the first parameter group.
    pub lr: f64,
    /// Training throughput over the last batch, images per second.
    pub images_per_sec: f64,
    /// Resident memory of the process, bytes (host memory; on CUDA the device's memory is not
    /// included).
    pub memory_bytes: u64,
}

/// Figures of one finished epoch: training means and a full evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Stage.
    pub stage: Stage,
    /// Epoch, 0-based.
    pub epoch: usize,
    /// Epochs of this stage.
    pub num_epochs: usize,
    /// Learning rate of each parameter group during the epoch.
    pub lr: Vec<f64>,
    /// Mean training loss over the epoch, nats.
    pub train_loss: f64,
    /// Training top-1 over the epoch, percent.
    pub train_top1: f64,
    /// Evaluation on the test set after the epoch.
    pub eval: EvalReport,
    /// Best evaluation top-1 so far in this stage, percent.
    pub best_top1: f64,
    /// ECE at the epoch of the best top-1, percent.
    pub best_ece: f64,
    /// Whether this epoch set the best top-1.
    pub is_best: bool,
    /// Wall-clock seconds of training in this epoch.
    pub train_seconds: f64,
    /// Wall-clock seconds of the evaluation.
    pub eval_seconds: f64,
    /// Mean training throughput over the epoch, images per second.
    pub images_per_sec: f64,
}

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFinished {
    /// Stage.
    pub stage: Stage,
    /// Run folder.
    pub run_dir: PathBuf,
    /// Best top-1, percent.
    pub best_top1: f64,
    /// ECE at the best top-1, percent.
    pub best_ece: f64,
    /// The best checkpoint (`ckps/model_best.pth.tar`), when one was written.
    pub best_checkpoint: Option<PathBuf>,
    /// Stopped by a [`Control::Stop`] before the last epoch.
    pub stopped: bool,
}

/// Everything the trainer tells its front ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A stage began.
    StageStarted(StageStarted),
    /// An epoch began, with its learning rates.
    EpochStarted {
        /// Stage.
        stage: Stage,
        /// Epoch, 0-based.
        epoch: usize,
        /// Learning rate of each parameter group.
        lr: Vec<f64>,
    },
    /// A training batch finished.
    Batch(BatchStats),
    /// An epoch finished and was evaluated.
    Epoch(Box<EpochReport>),
    /// A line of the run's text log (the reference's lines: `* Acc@1 …`, `* ECE …`, …).
    Log(String),
    /// A checkpoint was written.
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Whether it is the new best.
        best: bool,
    },
    /// The trainer paused between batches.
    Paused,
    /// The trainer resumed.
    Resumed,
    /// A stage ended (normally or by a stop).
    StageFinished(StageFinished),
    /// The whole plan ended; no more events follow.
    Finished,
    /// The run failed; no more events follow. The message names the file and what was expected.
    Error(String),
}

/// What a front end can ask of the trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Pause between batches.
    Pause,
    /// Resume after a pause.
    Resume,
    /// Stop: finish the current batch, save a checkpoint (`ckps/current.pth.tar`), end the run.
    Stop,
}
