//! Experiment configuration: the keys and values of the reference's yacs `CfgNode`
//! (`utils/config.py` of the MiSLAS release), plus keys for what the reference hard-codes.
//!
//! Loading follows yacs: the defaults below are overlaid by a YAML file, then by `KEY VALUE`
//! pairs from the command line (each VALUE read as a YAML scalar, as yacs reads it with
//! `literal_eval`). An unknown key is an error naming the key and the file; the keys that only
//! matter to distributed PyTorch are accepted and reported in [`LoadedConfig::ignored`].
//!
//! Every key is described once, in [`KEYS`] (`keys.rs`): its type, default, help, stages and
//! rule. Loading and writing are in `load.rs`, the rules in `checks.rs`.
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::fmt;
use std::path::PathBuf;
use std::sync::LazyLock;

mod checks;
mod datasets;
mod imbalance;
mod keys;
mod load;
#[cfg(test)]
mod tests;

pub use checks::MislasSettings;
pub use datasets::{DatasetSpec, FilesLayout, Marker, NormalizationStats};
pub use imbalance::img_num_per_cls;
pub use keys::{field_help, is_shared_key, key_spec, KeySpec, Stages, ValueKind, KEYS};

/// Environment variable that moves the per-user data folder (tests, several users of one
/// account).
pub const DATA_DIR_ENV: &str = "MISLAS_DATA_DIR";

/// The per-user data folder (queue, installed release presets): `$MISLAS_DATA_DIR`, else
/// `directories`' data folder of mislas (`~/.local/share/mislas` on Linux); `None` when neither
/// is known (no home folder).
pub fn user_data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(DATA_DIR_ENV) {
        return Some(PathBuf::from(d));
    }
    directories::ProjectDirs::from("", "", "mislas").map(|d| d.data_dir().to_path_buf())
}

/// What to do with an image of a list-file data set that is missing or cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadImagePolicy {
    /// Stop the run with an error naming the image (the reference's PIL would raise).
    Fail,
    /// Leave the image (and its label) out of its batch and log its path and the reason.
    Skip,
}

impl BadImagePolicy {
    /// What to set to leave unusable images out, for the messages of `fail`.
    pub const SKIP_HINT: &'static str = "set on_bad_image: skip to leave such images out";

    /// The first of a batch's unusable images that this policy refuses: the first one under
    /// `fail`, none under `skip` (each is then a warning).
    pub fn refused<T>(self, skipped: &[T]) -> Option<&T> {
        match self {
            BadImagePolicy::Fail => skipped.first(),
            BadImagePolicy::Skip => None,
        }
    }
}

/// The two stages of MiSLAS (`mode` in the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Representation learning: backbone + classifier with mixup on instance-balanced data.
    Stage1,
    /// Classifier re-learning: frozen backbone with shift learning, classifier + LWS with LAS on
    /// a class-aware sampler.
    Stage2,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Stage1 => "stage1",
            Stage::Stage2 => "stage2",
        })
    }
}

/// Declares a configuration enum whose values are spelled once, in serde's `rename`: the key
/// table's choice list (`NAMES`), `ALL`, `name()` and `Display` come from that spelling.
macro_rules! spelled_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant, )+
        }

        impl $name {
            /// Every value, in the order of the key table's choice list.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The values as a configuration spells them (serde's spelling).
            pub const NAMES: &'static [&'static str] = &[$($word),+];

            /// This value as a configuration spells it.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

spelled_enum! {
    /// The data sets the recipe knows; what each one is (size, normalisation, files, folder,
    /// model quirks) is its row of the data-set table, [`DatasetName::spec`].
    pub enum DatasetName {
        /// CIFAR-10-LT: 10 classes, 32×32 RGB, long-tailed subset of the 50,000 training images.
        Cifar10 = "cifar10",
        /// CIFAR-100-LT: 100 classes, 32×32 RGB.
        Cifar100 = "cifar100",
        /// Fashion-MNIST-LT: 10 classes, 28×28 grey; the data set available offline and the
        /// default.
        FashionMnist = "fashion_mnist",
        /// ImageNet-LT (Liu et al., 2019): 1000 classes, list files of JPEGs.
        Imagenet = "imagenet",
        /// iNaturalist 2018: 8142 classes, list files of JPEGs.
        Ina2018 = "ina2018",
        /// Places-LT: 365 classes, list files of JPEGs.
        Places = "places",
    }
}

spelled_enum! {
    /// The classifier-stage method of a stage-2 run (`recipe`); each is a row of the method
    /// catalogue (`engine::recipe::catalogue`), which says what it trains and its source.
    pub enum ClassifierRecipe {
        /// MiSLAS stage 2: classifier continued from stage 1 plus LWS, label-aware smoothing,
        /// shift learning when `shift_bn` (Zhong et al., CVPR 2021, §4).
        Mislas = "mislas",
        /// Classifier re-training: the classifier re-initialised and trained with
        /// cross-entropy on the class-aware sampler (Kang et al., ICLR 2020, §4 "cRT").
        Crt = "crt",
        /// Learnable weight scaling: only the per-class scales trained with cross-entropy, the
        /// stage-1 classifier frozen (Kang et al., ICLR 2020, §4 "LWS").
        Lws = "lws",
        /// Weight balancing (Alshammari et al., CVPR 2022): the classifier re-trained with the
        /// class-balanced loss, weight decay and MaxNorm.
        Wb = "wb",
    }
}

spelled_enum! {
    /// The stage-1 loss (`loss`); the formulas are in [`crate::method::loss`], and each value is
    /// a row of the method catalogue (`engine::recipe::catalogue`).
    pub enum StageOneLossName {
        /// Cross-entropy: the reference's stage 1 (MiSLAS §4.1).
        Ce = "ce",
        /// Balanced Softmax (Ren et al., NeurIPS 2020): cross-entropy on z + log n_c.
        BalancedSoftmax = "balanced_softmax",
        /// Logit-adjusted loss (Menon et al., ICLR 2021): cross-entropy on z + τ·log π_c.
        LogitAdjusted = "logit_adjusted",
        /// LDAM (Cao et al., NeurIPS 2019): label-distribution-aware margins on cosine logits.
        Ldam = "ldam",
        /// Focal loss (Lin et al., ICCV 2017): (1 − p_y)^γ·CE.
        Focal = "focal",
    }
}

spelled_enum! {
    /// Class re-weighting of the stage-1 loss (`reweight`), with `ce`, `focal` or `ldam`.
    pub enum Reweight {
        /// Every class weighs one.
        None = "none",
        /// Class-balanced weights of the effective number (Cui et al., CVPR 2019) from the
        /// first epoch.
        Cb = "cb",
        /// Deferred re-weighting (Cao et al., NeurIPS 2019): the class-balanced weights from
        /// epoch `drw_epoch` on, weights of one before.
        Drw = "drw",
    }
}

spelled_enum! {
    /// The classifier of the network (`classifier`).
    pub enum ClassifierKind {
        /// `nn.Linear(F, K)` with a bias: the reference's classifier.
        Linear = "linear",
        /// The normalised linear classifier of LDAM-DRW's CIFAR code (`NormedLinear`): cosine
        /// of the normalised features and class vectors, no bias, times 30.
        Normed = "normed",
    }
}

/// How per-class counts fall from head to tail (`imb_type` of the reference's CIFAR-LT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImbalanceType {
    /// n_c = int(n_max · IF^(c/(K−1))) (Cao et al., 2019, LDAM; the reference's default).
    Exp,
    /// Half the classes at n_max, half at int(n_max · IF).
    Step,
}

/// Shape of the label-aware smoothing curve ε(n_c) (MiSLAS §4.2, Eq. 6 and the reference's
/// `LabelAwareSmoothing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LasShape {
    /// ε_tail + (ε_head − ε_tail)·sin(π(n_c − n_K) / (2(n_1 − n_K))) — the paper's choice.
    Concave,
    /// ε_tail + (ε_head − ε_tail)·(n_c − n_K)/(n_1 − n_K).
    Linear,
    /// ε_head + (ε_head − ε_tail)·sin(3π/2 + π(n_c − n_K) / (2(n_1 − n_K))).
    Convex,
    /// ε_tail + (ε_head − ε_tail)·((n_c − n_K)/(n_1 − n_K))^p with p = `las_power`.
    Exp,
}

/// One experiment: every key of the reference's configuration plus mislas's own.
///
/// Field names and defaults are the reference's (`utils/config.py`), so the release's YAML files
/// load unchanged; the keys after `alpha` are mislas additions whose defaults reproduce what the
/// reference hard-codes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Run name; run folders are `saved/<name>_<YYYYMMDDHHMM>/`.
    pub name: String,
    /// Log a training line every this many batches.
    pub print_freq: usize,
    /// Loader threads that decode, augment and collate batches.
    pub workers: usize,
    /// Sub-folder of a run folder for the text log.
    pub log_dir: String,
    /// Sub-folder of a run folder for checkpoints.
    pub model_dir: String,
    /// Minutes between the checkpoints written inside an epoch (`ckps/current.safetensors` at a
    /// batch boundary, as a stop writes it); > 0.
    pub checkpoint_every: f64,
    /// Times `mislas queue run` starts this run again from its checkpoint after it failed or
    /// died having made progress (the queue's `retry` module decides); ≥ 0. Restarts after a
    /// preemption (exit 75) do not count.
    pub max_restarts: usize,
    /// Data set.
    pub dataset: DatasetName,
    /// Folder holding the data set's files.
    pub data_path: String,
    /// Number of classes K.
    pub num_classes: usize,
    /// Imbalance factor IF = n_min / n_max in (0, 1] (`null` for the natural long-tailed sets).
    #[serde(deserialize_with = "load::opt_f64")]
    pub imb_factor: Option<f64>,
    /// Backbone: `resnet32_fe` (small images), `resnet50_fe`, `resnet152_fe`.
    pub backbone: String,
    /// Checkpoint to start from: for stage 2 the stage-1 checkpoint; for stage 1 a run to resume.
    /// Empty means none.
    #[serde(deserialize_with = "load::string_or_null")]
    pub resume: String,
    /// The run's own folder; empty means a new `saved/<name>_<YYYYMMDDHHMM>/`. When set, the
    /// stage writes there, and when the folder already holds its own latest checkpoint
    /// (`<model_dir>/current.safetensors` of the same stage) it continues from it at its batch,
    /// whatever `resume` says: a job that Slurm requeues (or that is started again) continues
    /// its run without a person.
    #[serde(deserialize_with = "load::string_or_null")]
    pub run_dir: String,
    /// Half-open range [start, end) of many-shot (head) class indices, classes ordered by
    /// descending training count.
    pub head_class_idx: [usize; 2],
    /// Half-open range of medium-shot class indices.
    pub med_class_idx: [usize; 2],
    /// Half-open range of few-shot (tail) class indices.
    pub tail_class_idx: [usize; 2],
    /// Reference: seed everything with 0 and turn cuDNN benchmark mode off.
    pub deterministic: bool,
    /// Stage to train.
    pub mode: Option<Stage>,
    /// LAS: smoothing ε_head of the most frequent class (stage 2).
    #[serde(deserialize_with = "load::opt_f64")]
    pub smooth_head: Option<f64>,
    /// LAS: smoothing ε_tail of the least frequent class (stage 2).
    #[serde(deserialize_with = "load::opt_f64")]
    pub smooth_tail: Option<f64>,
    /// Shift learning: let BatchNorm running statistics follow the class-balanced stream in
    /// stage 2 (γ/β stay frozen).
    pub shift_bn: bool,
    /// Data parallel, stage 2 with `shift_bn`: each rank's BatchNorm running statistics follow
    /// its own share of every batch, and the ranks' running mean and variance are averaged
    /// (all-reduce sum / N) before each evaluation and checkpoint, so that they are estimated
    /// from the whole of each class-balanced batch. `false`: DDP's rank-0 broadcast before each
    /// forward pass (the statistics are rank 0's, from 1/N of each batch). No effect on one
    /// process.
    pub sync_bn_stats: bool,
    /// Stage 2: classifier learning rate = lr · lr_factor (LWS uses lr).
    #[serde(deserialize_with = "load::opt_f64")]
    pub lr_factor: Option<f64>,
    /// Base learning rate.
    #[serde(deserialize_with = "load::f64_any")]
    pub lr: f64,
    /// Training batch size.
    pub batch_size: usize,
    /// L2 weight decay of SGD.
    #[serde(deserialize_with = "load::f64_any")]
    pub weight_decay: f64,
    /// Epochs of this stage.
    pub num_epochs: usize,
    /// SGD momentum.
    #[serde(deserialize_with = "load::f64_any")]
    pub momentum: f64,
    /// Cosine learning-rate schedule instead of warm-up + step decay.
    pub cos: bool,
    /// Mixup (Zhang et al., 2018) in stage 1.
    pub mixup: bool,
    /// Mixup's Beta(α, α) parameter; α ≤ 0 or `null` means plain cross-entropy.
    #[serde(deserialize_with = "load::opt_f64")]
    pub alpha: Option<f64>,

    // ---- mislas additions: defaults reproduce the reference ----
    /// Seed of every random stream (sampler, augmentation, mixup, initialisation). Reference: 0.
    pub seed: u64,
    /// `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Linear warm-up epochs; `null` means the reference's: 5 with step decay, 0 with cosine.
    pub warmup_epochs: Option<usize>,
    /// Step decay epochs (1-based) after which the lr is ×`lr_decay`, ×`lr_decay`², ….
    /// Reference: [160, 180].
    pub lr_milestones: Vec<usize>,
    /// The factor in (0, 1] of each step at `lr_milestones`: 0.1 (the reference's ×0.1, ×0.01),
    /// 0.01 for LDAM-DRW's CIFAR code (×0.01 after epoch 160, ×0.0001 after 180).
    #[serde(deserialize_with = "load::f64_any")]
    pub lr_decay: f64,
    /// How per-class counts fall (`exp` in the reference).
    pub imb_type: ImbalanceType,
    /// LAS curve shape. Reference: concave.
    pub las_shape: LasShape,
    /// Power p of the `exp` LAS shape.
    #[serde(deserialize_with = "load::opt_f64")]
    pub las_power: Option<f64>,
    /// Evaluation batch size; `null` uses `batch_size` as the reference does.
    pub eval_batch_size: Option<usize>,
    /// List-file data sets: the training list (`relative/path.jpg label` per line). `null` is
    /// the reference's file under `data_path` (`ImageNet_LT_train.txt`,
    /// `iNaturalist18_train.txt`, `Places_LT_train.txt`); a relative path is taken under
    /// `data_path`.
    #[serde(deserialize_with = "load::opt_string")]
    pub train_list: Option<String>,
    /// List-file data sets: the test list; `null` is the reference's (`ImageNet_LT_test.txt`,
    /// `iNaturalist18_val.txt`, `Places_LT_test.txt`) under `data_path`.
    #[serde(deserialize_with = "load::opt_string")]
    pub test_list: Option<String>,
    /// List-file data sets: side in pixels of the square network input, the size of
    /// `RandomResizedCrop` and of the evaluation `CenterCrop`. Reference: 224.
    pub image_size: usize,
    /// List-file data sets: evaluation `Resize` of the shorter side, pixels; `null` is
    /// ⌊image_size · 256/224⌋ (256 at 224, the reference's).
    pub eval_resize: Option<usize>,
    /// List-file data sets: a missing or undecodable image fails the run (`fail`) or is left out
    /// of its batch and logged (`skip`).
    pub on_bad_image: BadImagePolicy,
    /// Places-LT: the ImageNet-pretrained backbone weights (a torchvision state dict, `.pth` or
    /// `.safetensors`), loaded when stage 1 starts; the reference downloads torchvision's
    /// ResNet-152. Empty for the other data sets.
    #[serde(deserialize_with = "load::string_or_null")]
    pub pretrained_weights: String,
    /// CUDA automatic mixed precision: the forward pass and the loss under fp16 autocast
    /// (PyTorch's `torch.autocast("cuda")`), the backward pass through dynamic loss scaling
    /// ([`crate::method::grad_scaler`], PyTorch's `GradScaler`). Evaluation stays fp32. Needs a
    /// CUDA device.
    pub amp: bool,
    /// Images and 4-D convolution weights in channels-last (NHWC) memory layout
    /// (`torch.channels_last`), which Tensor Cores prefer; the values are those of the default
    /// layout. Checkpoints are written in the default layout.
    pub channels_last: bool,
    /// Gradient accumulation: each batch of `batch_size` is split into this many micro-batches
    /// (sizes differing by at most one), whose gradients add up to the batch's before the one SGD
    /// step, so that a batch that does not fit in memory trains as one. The loss, mixup pairs,
    /// sampler and schedule are the batch's; BatchNorm in train mode sees micro-batches. 1: off.
    pub accum_steps: usize,
    /// Data parallel: processes on this machine, one per device (`cuda:0` … `cuda:gpus−1`, or
    /// CPU processes with `device cpu`), as the reference's `torch.multiprocessing.spawn` of one
    /// process per GPU; `batch_size` stays the global batch, split evenly over all ranks. 1: one
    /// process. See [`crate::distributed`].
    pub gpus: usize,
    /// The reference's switch for one process per GPU: with `gpus` 1 on CUDA, every CUDA device
    /// of the machine gets a process.
    pub multiprocessing_distributed: bool,
    /// Machines (nodes) of a data-parallel run, as the reference counts them before multiplying
    /// by the GPUs per node; -1 and 1 are one machine.
    pub world_size: i64,
    /// This machine's node rank in `0..world_size` (the reference's `rank` before it becomes
    /// `rank · ngpus_per_node + gpu`); -1 is 0.
    pub rank: i64,
    /// `tcp://HOST:PORT` of the rendezvous served by global rank 0 (the reference's `dist_url`).
    /// Needed with several nodes; on one machine its port is used on 127.0.0.1, and an empty
    /// value picks a free port.
    pub dist_url: String,
    /// Seconds a rank waits for the others (at the rendezvous and at every collective) before
    /// the run ends with a message naming the rank that was lost.
    pub dist_timeout: f64,
    /// Data parallel: each bucket of gradients starts its all-reduce from gradient hooks as
    /// soon as the backward pass has produced it, overlapping the rest of the backward pass
    /// (PyTorch DDP's `Reducer`); `false` sums the gradients after the backward pass. The
    /// averaged gradients are the same (bit-identical on two ranks; see
    /// [`crate::distributed::overlap`]).
    pub ddp_overlap: bool,
    /// Stage 2: which classifier-stage method re-learns the classifier on the frozen backbone —
    /// MiSLAS (LAS + LWS + shift learning), cRT or LWS of Decoupling (Kang et al., ICLR 2020).
    pub recipe: ClassifierRecipe,
    /// Stage 1: the loss of representation learning; `ce` is the reference's.
    pub loss: StageOneLossName,
    /// Stage 1: class re-weighting of `ce`, `focal` or `ldam`: none, class-balanced (`cb`) or
    /// deferred (`drw`).
    pub reweight: Reweight,
    /// Logit adjustment's τ ≥ 0 (Menon et al., ICLR 2021, Eq. 10).
    #[serde(deserialize_with = "load::f64_any")]
    pub la_tau: f64,
    /// Focal loss's γ ≥ 0 (Lin et al., ICCV 2017, Eq. 5).
    #[serde(deserialize_with = "load::f64_any")]
    pub focal_gamma: f64,
    /// Effective number's β in [0, 1) (Cui et al., CVPR 2019, Eq. 3): class weights of
    /// `reweight cb`/`drw` and of the weight-balancing stage.
    #[serde(deserialize_with = "load::f64_any")]
    pub cb_beta: f64,
    /// DRW: the 0-based epoch from which the class-balanced weights apply (Cao et al.: 160 of
    /// 200).
    pub drw_epoch: usize,
    /// The classifier: `linear` (reference) or `normed` (LDAM's cosine classifier).
    pub classifier: ClassifierKind,
    /// Weight balancing: MaxNorm's radius as a fraction t of the way from the smallest to the
    /// largest class-vector norm of the classifier the stage starts from.
    #[serde(deserialize_with = "load::f64_any")]
    pub maxnorm_thresh: f64,
}

impl Default for Config {
    /// The reference's defaults (`utils/config.py`) for every key a YAML file leaves out: the
    /// `default` column of [`KEYS`].
    fn default() -> Self {
        static DEFAULT: LazyLock<Config> = LazyLock::new(|| {
            serde_yaml::from_value(Value::Mapping(keys::default_mapping()))
                .unwrap_or_else(|e| panic!("the key table's defaults are not a Config: {e}"))
        });
        DEFAULT.clone()
    }
}

/// Keys of the reference configuration that only matter to distributed PyTorch (or to methods
/// of the release that mislas does not implement): accepted, reported, not used.
pub const IGNORED_KEYS: &[&str] = &["distributed", "gpu", "dist_backend"];

/// A configuration error: which file (or the command line) and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// The YAML file, or `command line` for overrides.
    pub source_name: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// One failed validation rule, for inline display next to a field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldIssue {
    /// The config key.
    pub key: &'static str,
    /// What is wrong and what is expected.
    pub message: String,
}

/// A configuration with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// The resolved configuration.
    pub config: Config,
    /// Keys present in the file that are accepted but ignored (see [`IGNORED_KEYS`]).
    pub ignored: Vec<String>,
    /// The YAML file it was read from, if any.
    pub path: Option<PathBuf>,
}

impl Config {
    /// The stage this configuration trains (`mode`, stage 1 when unset).
    pub fn stage(&self) -> Stage {
        self.mode.unwrap_or(Stage::Stage1)
    }

    /// Warm-up epochs in force: `warmup_epochs`, else the reference's 5 (step decay) or 0 (cosine).
    pub fn effective_warmup(&self) -> usize {
        self.warmup_epochs.unwrap_or(if self.cos { 0 } else { 5 })
    }

    /// Mixup's α in force: `alpha` when `mixup` is on and α > 0, else `None` (plain loss).
    pub fn mixup_alpha(&self) -> Option<f64> {
        self.alpha.filter(|a| self.mixup && *a > 0.0)
    }

    /// Evaluation batch size in force.
    pub fn effective_eval_batch_size(&self) -> usize {
        self.eval_batch_size.unwrap_or(self.batch_size)
    }

    /// Evaluation resize of the shorter side in force: `eval_resize`, else
    /// ⌊image_size · 256/224⌋ (torchvision's `Resize(256)` before `CenterCrop(224)`).
    pub fn effective_eval_resize(&self) -> usize {
        self.eval_resize.unwrap_or(self.image_size * 256 / 224)
    }
}
/// A device request parsed from the `device` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA device 0 when CUDA is available, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
///
/// # Errors
/// Any other text, with what is accepted.
pub fn parse_device_spec(s: &str) -> Result<DeviceSpec, String> {
    match s.trim() {
        "auto" | "" => Ok(DeviceSpec::Auto),
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" => Ok(DeviceSpec::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceSpec::Cuda)
            .ok_or_else(|| format!("expected auto, cpu, cuda or cuda:N, found '{other}'")),
    }
}
