//! The configuration keys in one table: for each key its value type, its default, its help in the
//! paper's terms, the stages that use it and its validation rule.
//!
//! [`Config`]'s defaults, the type errors of loading, [`Config::validate`], `mislas config`'s
//! commented output, the form's Type column and help line, and the keys the two stages of a pair
//! share all come from [`KEYS`]. Tests check that the table and the struct (as serde writes it)
//! hold the same keys.
use super::checks;
use super::{ClassifierKind, ClassifierRecipe, Config, DatasetName, Reweight, StageOneLossName};
use serde_yaml::{Mapping, Value};

/// A key's validation rule beyond its type and lower bound: the message of what is wrong, if
/// anything, reported against the key.
pub type Check = fn(&Config) -> Option<String>;

/// The type of a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Free text.
    Text,
    /// A file or folder; empty means none.
    Path,
    /// A file; `null` means the reference's.
    OptPath,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// One of these words, or `null` (the first).
    OptChoice(&'static [&'static str]),
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    Device,
    /// A whole number ≥ `min` (checked by [`Config::validate`]).
    Int {
        /// The smallest value allowed.
        min: i64,
    },
    /// A whole number ≥ `min`, or `null` for the key's fallback.
    OptInt {
        /// The smallest value allowed.
        min: i64,
    },
    /// A number (`2e-4` and `'2e-4'` both read).
    Float,
    /// A number, or `null`.
    OptFloat,
    /// A class range `[start, end]`.
    ClassRange,
    /// A list of whole numbers.
    IntList,
    /// `true` or `false`.
    Bool,
}

impl ValueKind {
    /// The form's Type column: `int`, `float?`, `choice`, ….
    pub fn label(self) -> &'static str {
        match self {
            ValueKind::Text | ValueKind::Device => "text",
            ValueKind::Path => "path",
            ValueKind::OptPath => "path?",
            ValueKind::Choice(_) | ValueKind::OptChoice(_) => "choice",
            ValueKind::Int { .. } => "int",
            ValueKind::OptInt { .. } => "int?",
            ValueKind::Float => "float",
            ValueKind::OptFloat => "float?",
            ValueKind::ClassRange => "[a, b)",
            ValueKind::IntList => "[int]",
            ValueKind::Bool => "bool",
        }
    }

    /// What a value of this type is, in words: "a whole number ≥ 1", "true or false", ….
    pub fn expected(self) -> String {
        match self {
            ValueKind::Text => "text".into(),
            ValueKind::Path => "a path (empty for none)".into(),
            ValueKind::OptPath => "a path, or null for the reference's file".into(),
            ValueKind::Choice(c) => format!("one of {}", c.join(", ")),
            ValueKind::OptChoice(c) => format!("one of {}, or null", c.join(", ")),
            ValueKind::Device => "auto, cpu, cuda or cuda:N".into(),
            ValueKind::Int { min } => format!("a whole number ≥ {min}"),
            ValueKind::OptInt { min } => format!("a whole number ≥ {min}, or null"),
            ValueKind::Float => "a number".into(),
            ValueKind::OptFloat => "a number, or null".into(),
            ValueKind::ClassRange => "a class range [start, end] of two whole numbers".into(),
            ValueKind::IntList => "a list of whole numbers such as [160, 180]".into(),
            ValueKind::Bool => "true or false".into(),
        }
    }

    /// The smallest whole number allowed, for the integer kinds.
    pub fn min(self) -> Option<i64> {
        match self {
            ValueKind::Int { min } | ValueKind::OptInt { min } => Some(min),
            _ => None,
        }
    }
}

/// The stages that use a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stages {
    /// Stage 1 only (representation learning).
    Stage1,
    /// Stage 2 only (classifier re-learning).
    Stage2,
    /// Both stages, each with its own value.
    Both,
    /// Both stages with one value: the key describes the data, the model or the machine, and the
    /// hyperparameter form keeps it equal in the two stages of a pair.
    Shared,
}

impl Stages {
    /// A note for keys one stage uses: `"stage 1 only"`, `"stage 2 only"`, else `None`.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Stages::Stage1 => Some("stage 1 only"),
            Stages::Stage2 => Some("stage 2 only"),
            Stages::Both | Stages::Shared => None,
        }
    }
}

/// Everything the program knows about one configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The key, as in the YAML files and the struct.
    pub name: &'static str,
    /// The type of its value.
    pub kind: ValueKind,
    /// Its default, as YAML (the reference's `utils/config.py` for the reference's keys).
    pub default: &'static str,
    /// One line of help, in the paper's terms.
    pub help: &'static str,
    /// The stages that use it.
    pub stages: Stages,
    /// Its rule beyond the type and the lower bound of [`ValueKind::min`].
    pub check: Option<Check>,
}

/// The backbones mislas builds.
pub const BACKBONES: &[&str] = &["resnet32_fe", "resnet50_fe", "resnet101_fe", "resnet152_fe"];

const fn key(
    name: &'static str,
    kind: ValueKind,
    default: &'static str,
    stages: Stages,
    help: &'static str,
    check: Option<Check>,
) -> KeySpec {
    KeySpec {
        name,
        kind,
        default,
        help,
        stages,
        check,
    }
}

use Stages::{Both, Shared, Stage1, Stage2};
use ValueKind::{
    Bool, Choice, ClassRange, Device, Float, Int, IntList, OptChoice, OptFloat, OptInt, OptPath,
    Path, Text,
};

/// Every configuration key, in the order [`Config::validate`] reports issues: the run, the
/// optimisation, the machine, the data, the model, then the stage-specific method keys.
/// (The struct, its YAML and the form keep the reference's order, [`Config::keys`].)
#[rustfmt::skip]
pub static KEYS: &[KeySpec] = &[
    // ---- the run ----
    key("name", Text, "''", Both,
        "Run name: results go to saved/<name>_<YYYYMMDDHHMM>/", Some(checks::name)),
    key("mode", OptChoice(&["stage1", "stage2"]), "null", Both,
        "stage1: mixup representation learning; stage2: classifier re-learning (see recipe)", None),
    key("resume", Path, "''", Both,
        "Stage 2: the stage-1 checkpoint whose backbone is frozen; stage 1: resume a run", None),
    key("run_dir", Path, "''", Both,
        "The run's own folder (empty: a new saved/<name>_<YYYYMMDDHHMM>); continued from its checkpoint when it has one",
        None),
    key("print_freq", Int { min: 0 }, "40", Both,
        "Write a training line to the log every this many batches", None),
    key("workers", Int { min: 0 }, "2", Both,
        "Loader threads that augment and collate batches off the training thread", None),
    key("log_dir", Text, "logs", Both, "Sub-folder of the run folder for the text log", None),
    key("model_dir", Text, "ckps", Both, "Sub-folder of the run folder for checkpoints", None),
    key("checkpoint_every", Float, "10.0", Both,
        "Minutes between checkpoints inside an epoch (at a batch boundary; a kill loses at most this)",
        Some(checks::checkpoint_every)),
    key("max_restarts", Int { min: 0 }, "2", Both,
        "Times the queue restarts a run that failed or died after its first checkpoint, from that checkpoint (0: never)",
        None),
    key("seed", Int { min: 0 }, "0", Shared,
        "Seed of sampler, augmentation, mixup and initialisation", None),
    key("deterministic", Bool, "true", Both,
        "Fixed seeds and cuDNN benchmark off (reference behaviour)", None),
    // ---- optimisation ----
    key("lr", Float, "0.1", Both, "Base learning rate of SGD", Some(checks::lr)),
    key("batch_size", Int { min: 1 }, "128", Both, "Training batch size",
        Some(checks::batch_size)),
    key("eval_batch_size", OptInt { min: 1 }, "null", Both,
        "Evaluation batch size; null uses batch_size", None),
    key("accum_steps", Int { min: 1 }, "1", Both,
        "Gradient accumulation: micro-batches per batch_size batch; 1 is off",
        Some(checks::accum_steps)),
    key("num_epochs", Int { min: 1 }, "200", Both, "Training epochs of this stage", None),
    key("momentum", Float, "0.9", Both, "SGD momentum", Some(checks::momentum)),
    key("weight_decay", Float, "0.002", Both, "L2 weight decay of SGD",
        Some(checks::weight_decay)),
    key("cos", Bool, "false", Both,
        "Cosine lr schedule instead of warm-up + step decay at lr_milestones", None),
    key("warmup_epochs", OptInt { min: 0 }, "null", Both,
        "Linear lr warm-up epochs; null: 5 with step decay, 0 with cosine", None),
    key("lr_milestones", IntList, "[160, 180]", Both,
        "Epochs after which the step schedule multiplies lr by lr_decay each",
        Some(checks::lr_milestones)),
    key("lr_decay", Float, "0.1", Both,
        "Step schedule: lr factor at each of lr_milestones (0.1; LDAM-DRW's code 0.01)",
        Some(checks::lr_decay)),
    // ---- the machine ----
    key("amp", Bool, "false", Both,
        "CUDA mixed precision: fp16 autocast + dynamic loss scaling (GradScaler)",
        Some(checks::amp)),
    key("channels_last", Bool, "false", Both,
        "Channels-last (NHWC) images and convolution weights", None),
    key("device", Device, "auto", Shared, "auto (CUDA when present), cpu, cuda or cuda:N",
        Some(checks::device)),
    key("gpus", Int { min: 1 }, "1", Shared,
        "Data parallel: processes (one per device) on this machine; batch_size is split over them",
        Some(checks::gpus)),
    key("multiprocessing_distributed", Bool, "false", Shared,
        "Reference: one process per CUDA device of this machine when gpus is 1", None),
    key("world_size", Int { min: -1 }, "-1", Shared,
        "Data parallel: machines (nodes) of the run; -1 or 1 is this machine alone", None),
    key("rank", Int { min: -1 }, "-1", Shared,
        "Data parallel: this machine's node rank, 0..world_size; -1 is 0", None),
    key("dist_url", Text, "''", Shared,
        "Rendezvous tcp://HOST:PORT of rank 0 (several nodes); empty: a free port here", None),
    key("dist_timeout", Float, "300.0", Shared,
        "Seconds a rank waits for the others before the run ends naming the lost rank",
        Some(checks::dist_timeout)),
    key("ddp_overlap", Bool, "true", Shared,
        "Data parallel: each gradient bucket's all-reduce starts during the backward pass \
         (DDP's overlap); false: after it",
        None),
    // ---- the data ----
    key("dataset", Choice(DatasetName::NAMES), DatasetName::NAMES[0], Shared,
        "cifar10, cifar100, fashion_mnist, imagenet, ina2018 or places", None),
    key("data_path", Path, "./data/cifar10", Shared, "Folder with the data set's files", None),
    key("num_classes", Int { min: 2 }, "100", Shared, "Number of classes K", None),
    key("imb_factor", OptFloat, "0.01", Shared,
        "Imbalance factor IF = n_min/n_max in (0, 1]; 0.01 means 100:1",
        Some(checks::imb_factor)),
    key("imb_type", Choice(&["exp", "step"]), "exp", Shared,
        "exp: n_c = n_max·IF^(c/(K−1)); step: half the classes at n_max·IF", None),
    key("head_class_idx", ClassRange, "[0, 1]", Shared,
        "[start, end) of many-shot classes, by descending training count",
        Some(checks::head_class_idx)),
    key("med_class_idx", ClassRange, "[0, 1]", Shared, "[start, end) of medium-shot classes",
        Some(checks::med_class_idx)),
    key("tail_class_idx", ClassRange, "[0, 1]", Shared, "[start, end) of few-shot classes",
        Some(checks::tail_class_idx)),
    key("train_list", OptPath, "null", Both,
        "Training list file (path label per line); null: the reference's under data_path", None),
    key("test_list", OptPath, "null", Both,
        "Test list file; null: the reference's under data_path", None),
    key("image_size", Int { min: 1 }, "224", Both,
        "Network input side in pixels (RandomResizedCrop / CenterCrop); 224",
        Some(checks::image_size)),
    key("eval_resize", OptInt { min: 1 }, "null", Both,
        "Evaluation Resize of the shorter side; null: image_size·256/224",
        Some(checks::eval_resize)),
    key("on_bad_image", Choice(&["fail", "skip"]), "fail", Both,
        "Missing or corrupt image: fail the run, or skip it and log its path", None),
    // ---- the model ----
    key("backbone", Choice(BACKBONES), "resnet32_fe", Shared,
        "Feature extractor: resnet32_fe for small images, resnet50_fe/resnet152_fe",
        Some(checks::backbone)),
    key("pretrained_weights", Path, "''", Stage1,
        "Places-LT: ImageNet ResNet-152 weights (torchvision .pth or .safetensors)", None),
    // ---- the method ----
    key("mixup", Bool, "true", Both,
        "Stage 1 mixup: x̃ = λx + (1−λ)x[perm], λ ~ Beta(α, α) (Zhang et al., 2018)", None),
    key("alpha", OptFloat, "1.0", Both,
        "Mixup Beta(α, α) parameter; α ≤ 0 or null trains with plain cross-entropy",
        Some(checks::alpha)),
    key("loss", Choice(StageOneLossName::NAMES), StageOneLossName::NAMES[0], Stage1,
        "Stage-1 loss: one row of the method table (README; `mislas methods`)",
        Some(checks::loss)),
    key("reweight", Choice(Reweight::NAMES), Reweight::NAMES[0], Stage1,
        "Class weights of ce/focal/ldam: none, cb (effective number) or drw (cb from drw_epoch)",
        Some(checks::reweight)),
    key("la_tau", Float, "1.0", Stage1,
        "Logit-adjusted loss τ ≥ 0: cross-entropy on z + τ·log π_c (Menon et al., 2021)",
        Some(checks::la_tau)),
    key("focal_gamma", Float, "1.0", Stage1,
        "Focal loss γ ≥ 0: (1 − p_y)^γ·CE (Lin et al., 2017; LDAM-DRW's code uses 1)",
        Some(checks::focal_gamma)),
    key("cb_beta", Float, "0.9999", Both,
        "Effective-number β in [0, 1): class weight ∝ (1 − β)/(1 − β^n_c) (Cui et al., 2019)",
        Some(checks::cb_beta)),
    key("drw_epoch", Int { min: 0 }, "160", Stage1,
        "DRW: 0-based epoch from which the class-balanced weights apply (paper: 160 of 200)",
        Some(checks::drw_epoch)),
    key("classifier", Choice(ClassifierKind::NAMES), ClassifierKind::NAMES[0], Shared,
        "Classifier: linear, or normed (cosine logits × 30, LDAM's NormedLinear)",
        Some(checks::classifier)),
    key("recipe", Choice(ClassifierRecipe::NAMES), ClassifierRecipe::NAMES[0], Stage2,
        "Classifier stage of stage 2: one row of the method table (README; `mislas methods`)",
        Some(checks::recipe)),
    key("maxnorm_thresh", Float, "0.1", Stage2,
        "wb: MaxNorm radius = min + t·(max − min) of the starting class-vector norms, t in [0, 1]",
        Some(checks::maxnorm_thresh)),
    key("las_shape", Choice(&["concave", "linear", "convex", "exp"]), "concave", Stage2,
        "Shape of ε(n_c): concave (paper), linear, convex or exp", None),
    key("las_power", OptFloat, "null", Stage2, "Power p of the exp LAS shape",
        Some(checks::las_power)),
    key("smooth_head", OptFloat, "null", Stage2,
        "MiSLAS LAS: label smoothing ε_1 of the most frequent class (paper Eq. 6)",
        Some(checks::smooth_head)),
    key("smooth_tail", OptFloat, "null", Stage2,
        "MiSLAS LAS: label smoothing ε_K of the least frequent class (paper Eq. 6)", None),
    key("shift_bn", Bool, "false", Stage2,
        "Shift learning: BatchNorm statistics follow the class-balanced data in stage 2", None),
    key("sync_bn_stats", Bool, "true", Stage2,
        "Data parallel, shift learning: BatchNorm running statistics averaged over the ranks",
        None),
    key("lr_factor", OptFloat, "null", Stage2,
        "MiSLAS: classifier lr = lr·lr_factor; the LWS scales learn at lr",
        Some(checks::lr_factor)),
];

/// The table's row of a key.
pub fn key_spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == key)
}

/// Help for a key, in the paper's terms, for the hyperparameter form and `mislas config`; empty
/// for an unknown key.
pub fn field_help(key: &str) -> &'static str {
    key_spec(key).map_or("", |k| k.help)
}

/// Whether the two stages of a pair keep one value of `key` (it describes the data, the model or
/// the machine): [`Stages::Shared`] in [`KEYS`].
pub fn is_shared_key(key: &str) -> bool {
    key_spec(key).is_some_and(|k| k.stages == Stages::Shared)
}

/// The table's defaults as a YAML mapping, in table order.
///
/// # Panics
/// A default that is not YAML (a test parses every one).
pub(super) fn default_mapping() -> Mapping {
    KEYS.iter()
        .map(|k| {
            let v: Value = serde_yaml::from_str(k.default)
                .unwrap_or_else(|e| panic!("default of '{}' is not YAML: {e}", k.name));
            (Value::String(k.name.to_owned()), v)
        })
        .collect()
}
