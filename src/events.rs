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

/// The best evaluation of a stage so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestFigures {
    /// Best top-1, percent.
    pub top1: f64,
    /// ECE at the epoch of the best top-1, percent (15 bins, Guo et al., 2017).
    pub ece: f64,
}

impl EpochReport {
    /// The reference's lines for an evaluated epoch: `* Acc@1 …`, `* ECE …` (see
    /// [`EvalReport::report_lines`]) and `Best Prec@1: …% ECE: …%`.
    pub fn log_lines(&self) -> Vec<String> {
        let mut lines = self.eval.report_lines().to_vec();
        lines.push(format!(
            "Best Prec@1: {:.3}% ECE: {:.3}%",
            self.best_top1, self.best_ece
        ));
        lines
    }
}

/// How the log line of a failure begins (`=> failed (<kind>): <message>`), so that a reader of
/// a run's log can tell a failed run.
pub const FAILED_LOG_PREFIX: &str = "=> failed (";

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFinished {
    /// Stage.
    pub stage: Stage,
    /// Run folder.
    pub run_dir: PathBuf,
    /// Best top-1 and its ECE; `None` when the stage ended before its first evaluation.
    pub best: Option<BestFigures>,
    /// The best checkpoint (`ckps/model_best.safetensors`), when one was written.
    pub best_checkpoint: Option<PathBuf>,
    /// Stopped by a [`Control::Stop`] before the last epoch.
    pub stopped: bool,
}

/// Something the trainer did differently from the plan, and went on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Warning {
    /// An image that could not be read or decoded was left out (`on_bad_image: skip`).
    ImageSkipped {
        /// The image and why (path and reason, in words).
        image: String,
        /// A test image (left out of the evaluation) rather than a training image.
        test: bool,
    },
    /// A batch of one image was skipped: BatchNorm in train mode needs at least two.
    OneImageBatchSkipped {
        /// Epoch, 0-based.
        epoch: usize,
        /// Batch within the epoch, 0-based.
        batch: usize,
    },
    /// Under `amp`, a non-finite loss: the step was skipped and the loss scale halves.
    NonFiniteLossSkipped {
        /// Epoch, 0-based.
        epoch: usize,
        /// Batch within the epoch, 0-based.
        batch: usize,
        /// The loss.
        loss: f64,
        /// Non-finite losses in a row, this one included.
        in_a_row: usize,
    },
    /// Under `amp`, the loss scale at the end of an epoch and the steps skipped in it.
    LossScale {
        /// Epoch, 0-based.
        epoch: usize,
        /// Loss scale (PyTorch's `GradScaler`: 2^16 at first).
        scale: f64,
        /// Steps skipped after a gradient overflow in this epoch.
        skipped_steps: usize,
    },
    /// A resumed run was started with settings other than its `config.yaml`'s.
    SettingsChanged {
        /// `(key, value the run started with, value now)`.
        changes: Vec<(String, String, String)>,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::ImageSkipped { image, test } => {
                let which = if *test { "test image" } else { "image" };
                write!(f, "=> unusable {which} {image}: skipped")
            }
            Warning::OneImageBatchSkipped { epoch, batch } => write!(
                f,
                "=> epoch {epoch} batch {batch} holds one image: skipped (BatchNorm in train \
                 mode needs at least two)"
            ),
            Warning::NonFiniteLossSkipped {
                epoch,
                batch,
                loss,
                in_a_row,
            } => write!(
                f,
                "=> amp: non-finite loss ({loss}) at epoch {epoch} batch {batch}: step skipped, \
                 loss scale halved ({in_a_row} in a row)"
            ),
            Warning::LossScale {
                epoch,
                scale,
                skipped_steps,
            } => write!(
                f,
                "=> amp: loss scale {scale} after epoch {epoch}; {skipped_steps} steps skipped \
                 after a gradient overflow"
            ),
            Warning::SettingsChanged { changes } => {
                let list: Vec<String> = changes
                    .iter()
                    .map(|(k, was, now)| format!("{k} {was} → {now}"))
                    .collect();
                write!(f, "=> resumed with changed settings: {}", list.join(", "))
            }
        }
    }
}

/// What kind of failure ended a run: tells a front end what the user can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The configuration is not usable (fix a key).
    Config,
    /// Data missing, damaged or of another format (fix the file).
    Data,
    /// A checkpoint is missing, damaged or does not fit the network.
    Checkpoint,
    /// The loss or the network's outputs are not finite (lower the learning rate).
    NonFinite,
    /// Memory ran out (lower `batch_size` or set `accum_steps`).
    OutOfMemory,
    /// A file could not be written (disk full, permissions).
    Io,
    /// A rank of a data-parallel run was lost, or the ranks could not meet (see the message).
    LostRank,
    /// An error inside mislas or libtorch that none of the above explains.
    Internal,
    /// The run's process ended without a last event: killed (kill -9, the out-of-memory
    /// killer) or the machine restarted.
    Killed,
}

impl FailureKind {
    /// Every kind, to read one back from its words (a log's `=> failed (<kind>): …` line).
    pub const ALL: [FailureKind; 9] = [
        FailureKind::Config,
        FailureKind::Data,
        FailureKind::Checkpoint,
        FailureKind::NonFinite,
        FailureKind::OutOfMemory,
        FailureKind::Io,
        FailureKind::LostRank,
        FailureKind::Internal,
        FailureKind::Killed,
    ];
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Config => "configuration error",
            FailureKind::Data => "data error",
            FailureKind::Checkpoint => "checkpoint error",
            FailureKind::NonFinite => "non-finite values",
            FailureKind::OutOfMemory => "out of memory",
            FailureKind::Io => "write error",
            FailureKind::LostRank => "data-parallel error",
            FailureKind::Internal => "internal error",
            FailureKind::Killed => "process killed",
        })
    }
}

/// Why a run failed, in words that name the file and what was expected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The message, one paragraph in plain words.
    pub message: String,
    /// The checkpoint a `resume` continues from, when the run was saved before it failed.
    pub resume_from: Option<PathBuf>,
}

impl Failure {
    /// A failure of `kind` with no resumable checkpoint.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            resume_from: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

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
    /// A line of the run's text log that no other event carries (a loaded checkpoint, the
    /// stage's banner, the reference's `Epoch: [e][b/n]` progress lines, a stop).
    Log(String),
    /// The trainer left something out or changed course, and went on.
    Warning(Warning),
    /// Evaluation progress after an epoch (sent about twice a second).
    EvalProgress(EvalProgress),
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
    /// The run failed; no more events follow.
    Failed(Failure),
}

impl Event {
    /// The lines this event adds to the run's text log and to the headless output: the one
    /// place where events become text. Epochs give the reference's `* Acc@1 …`, `* ECE …` and
    /// `Best Prec@1 …` lines (see [`EvalReport::report_lines`]).
    pub fn log_lines(&self) -> Vec<String> {
        match self {
            Event::Log(line) => vec![line.clone()],
            Event::Warning(w) => vec![w.to_string()],
            Event::Epoch(e) => e.log_lines(),
            Event::Failed(f) => vec![format!("{FAILED_LOG_PREFIX}{}): {}", f.kind, f.message)],
            _ => Vec::new(),
        }
    }
}

/// Evaluation progress.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalProgress {
    /// Stage.
    pub stage: Stage,
    /// Epoch being evaluated, 0-based.
    pub epoch: usize,
    /// Test images evaluated so far.
    pub images_done: usize,
    /// Test images in all.
    pub images_total: usize,
    /// Throughput so far, images per second.
    pub images_per_sec: f64,
}

impl EvalProgress {
    /// Seconds left at the current throughput.
    pub fn eta_seconds(&self) -> f64 {
        (self.images_total - self.images_done.min(self.images_total)) as f64
            / self.images_per_sec.max(1e-9)
    }
}

/// What a front end can ask of the trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Pause between batches.
    Pause,
    /// Resume after a pause.
    Resume,
    /// Stop: finish the current batch (or evaluation batch), save a checkpoint
    /// (`ckps/current.safetensors`), end the run.
    Stop,
}
