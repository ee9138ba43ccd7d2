//! Experiment configuration: the keys and values of the reference's yacs `CfgNode`
//! (`utils/config.py` of the MiSLAS release), plus keys for what the reference hard-codes.
//!
//! Loading follows yacs: the defaults below are overlaid by a YAML file, then by `KEY VALUE`
//! pairs from the command line (each VALUE read as a YAML scalar, as yacs reads it with
//! `literal_eval`). An unknown key is an error naming the key and the file; the keys that only
//! matter to distributed PyTorch are accepted and reported in [`LoadedConfig::ignored`].
use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml::{Mapping, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// The data sets the recipe knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetName {
    /// CIFAR-10-LT: 10 classes, 32×32 RGB, long-tailed subset of the 50,000 training images.
    Cifar10,
    /// CIFAR-100-LT: 100 classes, 32×32 RGB.
    Cifar100,
    /// Fashion-MNIST-LT: 10 classes, 28×28 grey; the data set available offline and the default.
    FashionMnist,
    /// ImageNet-LT (Liu et al., 2019): 1000 classes, list files of JPEGs.
    Imagenet,
    /// iNaturalist 2018: 8142 classes, list files of JPEGs.
    Ina2018,
    /// Places-LT: 365 classes, list files of JPEGs.
    Places,
}

impl DatasetName {
    /// The name a researcher reads: "CIFAR-10-LT", "ImageNet-LT", ….
    pub fn display_name(self) -> &'static str {
        match self {
            DatasetName::Cifar10 => "CIFAR-10-LT",
            DatasetName::Cifar100 => "CIFAR-100-LT",
            DatasetName::FashionMnist => "Fashion-MNIST-LT",
            DatasetName::Imagenet => "ImageNet-LT",
            DatasetName::Ina2018 => "iNaturalist 2018",
            DatasetName::Places => "Places-LT",
        }
    }

    /// Whether this is one of the large-scale list-file data sets (ImageNet-LT, iNaturalist
    /// 2018, Places-LT): JPEG trees under `data_path` named by list files, no imbalance factor.
    pub fn is_large_scale(self) -> bool {
        matches!(
            self,
            DatasetName::Imagenet | DatasetName::Ina2018 | DatasetName::Places
        )
    }
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

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_yaml::to_value(self).ok();
        write!(f, "{}", s.as_ref().and_then(Value::as_str).unwrap_or("?"))
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
    /// Data set.
    pub dataset: DatasetName,
    /// Folder holding the data set's files.
    pub data_path: String,
    /// Number of classes K.
    pub num_classes: usize,
    /// Imbalance factor IF = n_min / n_max in (0, 1] (`null` for the natural long-tailed sets).
    #[serde(deserialize_with = "opt_f64")]
    pub imb_factor: Option<f64>,
    /// Backbone: `resnet32_fe` (small images), `resnet50_fe`, `resnet152_fe`.
    pub backbone: String,
    /// Checkpoint to start from: for stage 2 the stage-1 checkpoint; for stage 1 a run to resume.
    /// Empty means none.
    #[serde(deserialize_with = "string_or_null")]
    pub resume: String,
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
    #[serde(deserialize_with = "opt_f64")]
    pub smooth_head: Option<f64>,
    /// LAS: smoothing ε_tail of the least frequent class (stage 2).
    #[serde(deserialize_with = "opt_f64")]
    pub smooth_tail: Option<f64>,
    /// Shift learning: let BatchNorm running statistics follow the class-balanced stream in
    /// stage 2 (γ/β stay frozen).
    pub shift_bn: bool,
    /// Stage 2: classifier learning rate = lr · lr_factor (LWS uses lr).
    #[serde(deserialize_with = "opt_f64")]
    pub lr_factor: Option<f64>,
    /// Base learning rate.
    #[serde(deserialize_with = "f64_any")]
    pub lr: f64,
    /// Training batch size.
    pub batch_size: usize,
    /// L2 weight decay of SGD.
    #[serde(deserialize_with = "f64_any")]
    pub weight_decay: f64,
    /// Epochs of this stage.
    pub num_epochs: usize,
    /// SGD momentum.
    #[serde(deserialize_with = "f64_any")]
    pub momentum: f64,
    /// Cosine learning-rate schedule instead of warm-up + step decay.
    pub cos: bool,
    /// Mixup (Zhang et al., 2018) in stage 1.
    pub mixup: bool,
    /// Mixup's Beta(α, α) parameter; α ≤ 0 or `null` means plain cross-entropy.
    #[serde(deserialize_with = "opt_f64")]
    pub alpha: Option<f64>,

    // ---- mislas additions: defaults reproduce the reference ----
    /// Seed of every random stream (sampler, augmentation, mixup, initialisation). Reference: 0.
    pub seed: u64,
    /// `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Linear warm-up epochs; `null` means the reference's: 5 with step decay, 0 with cosine.
    pub warmup_epochs: Option<usize>,
    /// Step decay epochs (1-based) after which the lr is ×0.1, ×0.01, …. Reference: [160, 180].
    pub lr_milestones: Vec<usize>,
    /// How per-class counts fall (`exp` in the reference).
    pub imb_type: ImbalanceType,
    /// LAS curve shape. Reference: concave.
    pub las_shape: LasShape,
    /// Power p of the `exp` LAS shape.
    #[serde(deserialize_with = "opt_f64")]
    pub las_power: Option<f64>,
    /// Evaluation batch size; `null` uses `batch_size` as the reference does.
    pub eval_batch_size: Option<usize>,
    /// List-file data sets: the training list (`relative/path.jpg label` per line). `null` is
    /// the reference's file under `data_path` (`ImageNet_LT_train.txt`,
    /// `iNaturalist18_train.txt`, `Places_LT_train.txt`); a relative path is taken under
    /// `data_path`.
    #[serde(deserialize_with = "opt_string")]
    pub train_list: Option<String>,
    /// List-file data sets: the test list; `null` is the reference's (`ImageNet_LT_test.txt`,
    /// `iNaturalist18_val.txt`, `Places_LT_test.txt`) under `data_path`.
    #[serde(deserialize_with = "opt_string")]
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
    #[serde(deserialize_with = "string_or_null")]
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
}

impl Default for Config {
    /// The reference's defaults (`utils/config.py`) for every key a YAML file leaves out.
    fn default() -> Self {
        Config {
            name: String::new(),
            print_freq: 40,
            workers: 2,
            log_dir: "logs".into(),
            model_dir: "ckps".into(),
            dataset: DatasetName::Cifar10,
            data_path: "./data/cifar10".into(),
            num_classes: 100,
            imb_factor: Some(0.01),
            backbone: "resnet32_fe".into(),
            resume: String::new(),
            head_class_idx: [0, 1],
            med_class_idx: [0, 1],
            tail_class_idx: [0, 1],
            deterministic: true,
            mode: None,
            smooth_head: None,
            smooth_tail: None,
            shift_bn: false,
            lr_factor: None,
            lr: 0.1,
            batch_size: 128,
            weight_decay: 0.002,
            num_epochs: 200,
            momentum: 0.9,
            cos: false,
            mixup: true,
            alpha: Some(1.0),
            seed: 0,
            device: "auto".into(),
            warmup_epochs: None,
            lr_milestones: vec![160, 180],
            imb_type: ImbalanceType::Exp,
            las_shape: LasShape::Concave,
            las_power: None,
            eval_batch_size: None,
            train_list: None,
            test_list: None,
            image_size: 224,
            eval_resize: None,
            on_bad_image: BadImagePolicy::Fail,
            pretrained_weights: String::new(),
            amp: false,
            channels_last: false,
            accum_steps: 1,
        }
    }
}

/// Keys of the reference configuration that only matter to distributed PyTorch (or to methods
/// of the release that mislas does not implement): accepted, reported, not used.
pub const IGNORED_KEYS: &[&str] = &[
    "distributed",
    "gpu",
    "world_size",
    "rank",
    "dist_url",
    "dist_backend",
    "multiprocessing_distributed",
];

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

fn f64_from_value<E: serde::de::Error>(v: Value) -> Result<Option<f64>, E> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| E::custom("expected a number")),
        // PyYAML (YAML 1.1) reads `2e-4` as a string and yacs users write it anyway.
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| E::custom(format!("expected a number, found '{s}'"))),
        other => Err(E::custom(format!(
            "expected a number, found {}",
            describe(&other)
        ))),
    }
}

fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    f64_from_value(Value::deserialize(d)?)
}

fn f64_any<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    f64_from_value(Value::deserialize(d)?)?
        .ok_or_else(|| serde::de::Error::custom("expected a number, found null"))
}

fn string_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string '{s}'"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

impl Config {
    /// Every key of the configuration, in declaration order.
    pub fn keys() -> Vec<String> {
        match serde_yaml::to_value(Config::default()) {
            Ok(Value::Mapping(m)) => m
                .keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Reads a yacs YAML file over the defaults.
    ///
    /// # Errors
    /// The file is unreadable or not YAML, a key is unknown, or a value has the wrong type; the
    /// message names the file and the key.
    pub fn from_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            message: format!("cannot read the configuration file: {e}"),
        })?;
        let mut loaded = Self::from_yaml_str(&text, &name)?;
        loaded.path = Some(path.to_path_buf());
        Ok(loaded)
    }

    /// Parses YAML text over the defaults; `source_name` names it in errors.
    ///
    /// # Errors
    /// As [`Config::from_file`].
    pub fn from_yaml_str(text: &str, source_name: &str) -> Result<LoadedConfig, ConfigError> {
        let err = |message: String| ConfigError {
            source_name: source_name.to_owned(),
            message,
        };
        let doc: Value = serde_yaml::from_str(text).map_err(|e| err(format!("not YAML: {e}")))?;
        let file_map = match doc {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            other => {
                return Err(err(format!(
                    "expected a mapping of KEY: VALUE, found {}",
                    describe(&other)
                )))
            }
        };
        let mut merged = default_mapping();
        let known = Config::keys();
        let mut ignored = Vec::new();
        for (k, v) in file_map {
            let key = k
                .as_str()
                .ok_or_else(|| err(format!("a key must be a string, found {}", describe(&k))))?
                .to_owned();
            if IGNORED_KEYS.contains(&key.as_str()) {
                ignored.push(key);
                continue;
            }
            if !known.contains(&key) {
                return Err(err(format!(
                    "unknown key '{key}' (known keys: {})",
                    known.join(", ")
                )));
            }
            merged.insert(Value::String(key), v);
        }
        let config = from_mapping(merged).map_err(err)?;
        Ok(LoadedConfig {
            config,
            ignored,
            path: None,
        })
    }

    /// Applies yacs-style `KEY VALUE` overrides (`resume saved/…/model_best.pth.tar`).
    ///
    /// # Errors
    /// An odd number of items, an unknown key or a value of the wrong type.
    pub fn apply_overrides(&mut self, pairs: &[String]) -> Result<(), ConfigError> {
        if !pairs.len().is_multiple_of(2) {
            return Err(ConfigError {
                source_name: "command line".into(),
                message: format!(
                    "overrides come as KEY VALUE pairs; '{}' has no value",
                    pairs[pairs.len() - 1]
                ),
            });
        }
        for kv in pairs.chunks(2) {
            self.set(&kv[0], &kv[1]).map_err(|message| ConfigError {
                source_name: "command line".into(),
                message,
            })?;
        }
        Ok(())
    }

    /// Sets one key from its text, read as a YAML scalar (`0.1`, `true`, `null`, `[0, 3]`,
    /// `2e-4`, or a plain string).
    ///
    /// # Errors
    /// A message naming the key and the expected type.
    pub fn set(&mut self, key: &str, text: &str) -> Result<(), String> {
        if IGNORED_KEYS.contains(&key) {
            return Ok(());
        }
        let mut map = match serde_yaml::to_value(&*self) {
            Ok(Value::Mapping(m)) => m,
            _ => return Err("internal: config is not a mapping".into()),
        };
        let k = Value::String(key.to_owned());
        if !map.contains_key(&k) {
            return Err(format!("unknown key '{key}'"));
        }
        let value = if text.trim().is_empty() {
            Value::String(String::new())
        } else {
            serde_yaml::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        };
        map.insert(k, value);
        *self = from_mapping(map)?;
        Ok(())
    }

    /// The value of one key as YAML text (`0.1`, `[0, 3]`, `null`), for display and editing.
    pub fn get(&self, key: &str) -> Option<String> {
        let map = match serde_yaml::to_value(self) {
            Ok(Value::Mapping(m)) => m,
            _ => return None,
        };
        map.get(Value::String(key.to_owned())).map(value_to_text)
    }

    /// The keys whose values differ from `other`'s, as `(key, other's value, this value)` in
    /// declaration order.
    pub fn changed_from(&self, other: &Config) -> Vec<(String, String, String)> {
        Self::keys()
            .into_iter()
            .filter_map(|k| {
                let (was, now) = (other.get(&k)?, self.get(&k)?);
                (was != now).then_some((k, was, now))
            })
            .collect()
    }

    /// The configuration as YAML, loadable by [`Config::from_file`].
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

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

    /// Checks every rule that needs no file system; empty when the configuration is usable.
    pub fn validate(&self) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        let mut bad = |key: &'static str, message: String| v.push(FieldIssue { key, message });
        if self.name.trim().is_empty() {
            bad("name", "must not be empty".into());
        } else if self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            bad(
                "name",
                format!(
                    "'{}' must be a plain folder name (no '/', no leading '.')",
                    self.name
                ),
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bad("lr", format!("must be > 0, is {}", self.lr));
        }
        if self.batch_size == 0 {
            bad("batch_size", "must be a positive integer".into());
        }
        if self.eval_batch_size == Some(0) {
            bad(
                "eval_batch_size",
                "must be a positive integer or null".into(),
            );
        }
        // BatchNorm in train mode (stage 1, and stage 2's shift learning) needs two images per
        // micro-batch.
        let bn_train = self.stage() == Stage::Stage1 || self.shift_bn;
        let most = if bn_train {
            (self.batch_size / 2).max(1)
        } else {
            self.batch_size.max(1)
        };
        if self.accum_steps == 0 || self.accum_steps > most {
            let why = if bn_train {
                format!(
                    "batch_size/2 = {most}: BatchNorm in train mode needs two images per \
                     micro-batch"
                )
            } else {
                format!("batch_size = {most}")
            };
            bad(
                "accum_steps",
                format!("must be between 1 and {why}, is {}", self.accum_steps),
            );
        }
        if self.amp && matches!(parse_device_spec(&self.device), Ok(DeviceSpec::Cpu)) {
            bad(
                "amp",
                "mixed precision needs a CUDA device; set device cuda, or amp false".into(),
            );
        }
        if self.num_epochs == 0 {
            bad("num_epochs", "must be a positive integer".into());
        }
        if self.num_classes < 2 {
            bad("num_classes", "must be at least 2".into());
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bad(
                "momentum",
                format!("must be in [0, 1), is {}", self.momentum),
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            bad(
                "weight_decay",
                format!("must be ≥ 0, is {}", self.weight_decay),
            );
        }
        match self.imb_factor {
            Some(f) if !(f > 0.0 && f <= 1.0) => {
                bad("imb_factor", format!("must be in (0, 1], is {f}"))
            }
            None if !self.dataset.is_large_scale() => bad(
                "imb_factor",
                format!(
                    "{} needs an imbalance factor in (0, 1]",
                    self.dataset.display_name()
                ),
            ),
            _ => {}
        }
        for (key, r) in [
            ("head_class_idx", self.head_class_idx),
            ("med_class_idx", self.med_class_idx),
            ("tail_class_idx", self.tail_class_idx),
        ] {
            if r[0] > r[1] || r[1] > self.num_classes {
                bad(
                    key,
                    format!(
                        "must be [start, end] with start ≤ end ≤ num_classes ({}), is [{}, {}]",
                        self.num_classes, r[0], r[1]
                    ),
                );
            }
        }
        if let Some(a) = self.alpha {
            if !a.is_finite() {
                bad("alpha", "must be a finite number or null".into());
            }
        }
        if let Err(e) = parse_device_spec(&self.device) {
            bad("device", e);
        }
        for w in self.lr_milestones.windows(2) {
            if w[0] >= w[1] {
                bad("lr_milestones", "must be increasing".into());
                break;
            }
        }
        if self.dataset.is_large_scale() {
            if self.image_size < 8 {
                bad(
                    "image_size",
                    format!("must be at least 8 pixels, is {}", self.image_size),
                );
            }
            let resize = self.effective_eval_resize();
            if resize < self.image_size {
                bad(
                    "eval_resize",
                    format!(
                        "the evaluation resize ({resize}) must be at least image_size ({})",
                        self.image_size
                    ),
                );
            }
        }
        if self.las_shape == LasShape::Exp && self.las_power.is_none() {
            bad("las_power", "las_shape 'exp' needs a power".into());
        }
        if self.stage() == Stage::Stage2 {
            let head = self.smooth_head;
            let tail = self.smooth_tail;
            match (head, tail) {
                (Some(h), Some(t)) => {
                    if !(0.0 <= t && t <= h && h < 1.0) {
                        bad(
                            "smooth_head",
                            format!("need 0 ≤ smooth_tail ≤ smooth_head < 1, have {t} and {h}"),
                        );
                    }
                }
                _ => bad(
                    "smooth_head",
                    "stage 2 needs smooth_head and smooth_tail (label-aware smoothing)".into(),
                ),
            }
            match self.lr_factor {
                Some(f) if f > 0.0 && f.is_finite() => {}
                _ => bad("lr_factor", "stage 2 needs lr_factor > 0".into()),
            }
        }
        if !matches!(
            self.backbone.as_str(),
            "resnet32_fe" | "resnet50_fe" | "resnet101_fe" | "resnet152_fe"
        ) {
            bad(
                "backbone",
                format!(
                    "unknown backbone '{}' (resnet32_fe, resnet50_fe, resnet101_fe, resnet152_fe)",
                    self.backbone
                ),
            );
        }
        v
    }

    /// Checks that `resume` names an existing file (when set).
    ///
    /// # Errors
    /// The message names the missing file.
    pub fn check_resume(&self) -> Result<(), String> {
        if !self.resume.is_empty() && !Path::new(&self.resume).is_file() {
            return Err(format!("resume: no checkpoint file at '{}'", self.resume));
        }
        Ok(())
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

fn default_mapping() -> Mapping {
    match serde_yaml::to_value(Config::default()) {
        Ok(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    }
}

fn from_mapping(map: Mapping) -> Result<Config, String> {
    // Deserialise key by key first, so that a type error names its key.
    let defaults = default_mapping();
    for (k, v) in &map {
        let mut probe = defaults.clone();
        probe.insert(k.clone(), v.clone());
        if let Err(e) = serde_yaml::from_value::<Config>(Value::Mapping(probe)) {
            let key = k.as_str().unwrap_or("?");
            let msg = e.to_string();
            let msg = msg.split(" at line").next().unwrap_or(&msg).to_owned();
            return Err(format!("key '{key}': {msg} (found {})", describe(v)));
        }
    }
    serde_yaml::from_value(Value::Mapping(map)).map_err(|e| e.to_string())
}

fn value_to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Sequence(items) => {
            let inner: Vec<String> = items.iter().map(value_to_text).collect();
            format!("[{}]", inner.join(", "))
        }
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Help for each key, in the paper's terms, for the hyperparameter form and `mislas config`.
pub fn field_help(key: &str) -> &'static str {
    match key {
        "name" => "Run name: results go to saved/<name>_<YYYYMMDDHHMM>/",
        "print_freq" => "Write a training line to the log every this many batches",
        "workers" => "Loader threads that augment and collate batches off the training thread",
        "log_dir" => "Sub-folder of the run folder for the text log",
        "model_dir" => "Sub-folder of the run folder for checkpoints",
        "dataset" => "cifar10, cifar100, fashion_mnist, imagenet, ina2018 or places",
        "data_path" => "Folder with the data set's files",
        "num_classes" => "Number of classes K",
        "imb_factor" => "Imbalance factor IF = n_min/n_max in (0, 1]; 0.01 means 100:1",
        "backbone" => "Feature extractor: resnet32_fe for small images, resnet50_fe/resnet152_fe",
        "resume" => {
            "Stage 2: the stage-1 checkpoint whose backbone is frozen; stage 1: resume a run"
        }
        "head_class_idx" => "[start, end) of many-shot classes, by descending training count",
        "med_class_idx" => "[start, end) of medium-shot classes",
        "tail_class_idx" => "[start, end) of few-shot classes",
        "deterministic" => "Fixed seeds and cuDNN benchmark off (reference behaviour)",
        "mode" => {
            "stage1: mixup representation learning; stage2: classifier re-learning (LAS + LWS)"
        }
        "smooth_head" => "LAS: label smoothing ε_1 of the most frequent class (paper Eq. 6)",
        "smooth_tail" => "LAS: label smoothing ε_K of the least frequent class (paper Eq. 6)",
        "shift_bn" => {
            "Shift learning: BatchNorm statistics follow the class-balanced data in stage 2"
        }
        "lr_factor" => "Stage 2: classifier lr = lr·lr_factor; the LWS scales learn at lr",
        "lr" => "Base learning rate of SGD",
        "batch_size" => "Training batch size",
        "weight_decay" => "L2 weight decay of SGD",
        "num_epochs" => "Training epochs of this stage",
        "momentum" => "SGD momentum",
        "cos" => "Cosine lr schedule instead of warm-up + step decay at lr_milestones",
        "mixup" => "Stage 1 mixup: x̃ = λx + (1−λ)x[perm], λ ~ Beta(α, α) (Zhang et al., 2018)",
        "alpha" => "Mixup Beta(α, α) parameter; α ≤ 0 or null trains with plain cross-entropy",
        "seed" => "Seed of sampler, augmentation, mixup and initialisation",
        "device" => "auto (CUDA when present), cpu, cuda or cuda:N",
        "warmup_epochs" => "Linear lr warm-up epochs; null: 5 with step decay, 0 with cosine",
        "lr_milestones" => "Epochs after which the step schedule multiplies lr by 0.1 each",
        "imb_type" => "exp: n_c = n_max·IF^(c/(K−1)); step: half the classes at n_max·IF",
        "las_shape" => "Shape of ε(n_c): concave (paper), linear, convex or exp",
        "las_power" => "Power p of the exp LAS shape",
        "eval_batch_size" => "Evaluation batch size; null uses batch_size",
        "train_list" => {
            "Training list file (path label per line); null: the reference's under data_path"
        }
        "test_list" => "Test list file; null: the reference's under data_path",
        "image_size" => "Network input side in pixels (RandomResizedCrop / CenterCrop); 224",
        "eval_resize" => "Evaluation Resize of the shorter side; null: image_size·256/224",
        "on_bad_image" => "Missing or corrupt image: fail the run, or skip it and log its path",
        "pretrained_weights" => {
            "Places-LT: ImageNet ResNet-152 weights (torchvision .pth or .safetensors)"
        }
        "amp" => "CUDA mixed precision: fp16 autocast + dynamic loss scaling (GradScaler)",
        "channels_last" => "Channels-last (NHWC) images and convolution weights",
        "accum_steps" => "Gradient accumulation: micro-batches per batch_size batch; 1 is off",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = "name: cifar10_imb001_stage2_mislas\nprint_freq: 40\nworkers: 16\nlog_dir: 'logs'\nmodel_dir: 'ckps'\ndataset: 'cifar10'\ndata_path: './data/cifar10'\nnum_classes: 10\nimb_factor: 0.01\nbackbone: 'resnet32_fe'\nresume: 'Path/to/Stage1_checkpoint.pth.tar'\nhead_class_idx:\n  - 0\n  - 3\nmed_class_idx:\n  - 3\n  - 7\ntail_class_idx:\n  - 7\n  - 10\ndeterministic: False\ndistributed: False\ngpu: null\nworld_size: -1\nrank: -1\ndist_url: 'tcp://224.66.41.62:23456'\ndist_backend: 'nccl'\nmultiprocessing_distributed: False\nmode: 'stage2'\nsmooth_head: 0.3\nsmooth_tail: 0.0\nshift_bn: False\nlr_factor: 0.5\nlr: 0.1\nbatch_size: 128\nweight_decay: 2e-4\nnum_epochs: 10\nmomentum: 0.9\nmixup: False\nalpha: null\n";

    #[test]
    fn reference_yaml_loads_unchanged() {
        let l = Config::from_yaml_str(REFERENCE, "ref.yaml").unwrap();
        let c = &l.config;
        assert_eq!(c.weight_decay, 2e-4);
        assert_eq!(c.mode, Some(Stage::Stage2));
        assert_eq!(c.alpha, None);
        assert_eq!(c.tail_class_idx, [7, 10]);
        assert!(!c.deterministic);
        assert_eq!(l.ignored.len(), 7);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = Config::from_yaml_str("lr: 0.1\nlearning_rate: 3\n", "x.yaml").unwrap_err();
        assert_eq!(e.source_name, "x.yaml");
        assert!(e.message.contains("'learning_rate'"), "{e}");
    }

    #[test]
    fn wrong_type_names_key() {
        let e = Config::from_yaml_str("batch_size: many\n", "x.yaml").unwrap_err();
        assert!(e.message.contains("'batch_size'"), "{e}");
        let e = Config::from_yaml_str("lr: fast\n", "x.yaml").unwrap_err();
        assert!(e.message.contains("'lr'"), "{e}");
    }

    #[test]
    fn string_exponent_reads_as_float() {
        let l = Config::from_yaml_str("weight_decay: '5e-4'\n", "x.yaml").unwrap();
        assert_eq!(l.config.weight_decay, 5e-4);
    }

    #[test]
    fn overrides_follow_yacs() {
        let mut c = Config::default();
        c.apply_overrides(&[
            "resume".into(),
            "saved/a/ckps/model_best.pth.tar".into(),
            "lr".into(),
            "0.05".into(),
            "head_class_idx".into(),
            "[0, 4]".into(),
            "alpha".into(),
            "null".into(),
        ])
        .unwrap();
        assert_eq!(c.resume, "saved/a/ckps/model_best.pth.tar");
        assert_eq!(c.lr, 0.05);
        assert_eq!(c.head_class_idx, [0, 4]);
        assert_eq!(c.alpha, None);
        assert!(c.apply_overrides(&["lr".into()]).is_err());
        assert!(c.apply_overrides(&["nope".into(), "1".into()]).is_err());
        assert_eq!(c.get("head_class_idx").unwrap(), "[0, 4]");
        assert_eq!(c.get("lr").unwrap(), "0.05");
    }

    #[test]
    fn yaml_round_trip() {
        let c = Config {
            name: "x".into(),
            alpha: None,
            ..Config::default()
        };
        let back = Config::from_yaml_str(&c.to_yaml(), "rt").unwrap().config;
        assert_eq!(back, c);
    }

    #[test]
    fn validation_rules() {
        let mut c = Config::from_yaml_str(REFERENCE, "r").unwrap().config;
        c.smooth_tail = Some(0.5);
        c.lr = 0.0;
        c.imb_factor = Some(1.5);
        let keys: Vec<_> = c.validate().iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["lr", "imb_factor", "smooth_head"]);
    }

    #[test]
    fn changed_keys_are_listed_in_order() {
        let a = Config::default();
        let b = Config {
            accum_steps: 2,
            lr: 0.05,
            ..Config::default()
        };
        assert_eq!(
            b.changed_from(&a),
            vec![
                ("lr".to_owned(), "0.1".to_owned(), "0.05".to_owned()),
                ("accum_steps".to_owned(), "1".to_owned(), "2".to_owned()),
            ]
        );
        assert!(a.changed_from(&a).is_empty());
    }

    #[test]
    fn amp_and_accumulation_rules() {
        let mut c = Config::from_yaml_str(REFERENCE, "r").unwrap().config;
        c.batch_size = 64;
        // REFERENCE is a stage-2 file without shift learning: up to batch_size micro-batches.
        for (accum, ok) in [(0, false), (1, true), (8, true), (64, true), (65, false)] {
            c.accum_steps = accum;
            let bad = c.validate().iter().any(|i| i.key == "accum_steps");
            assert_eq!(bad, !ok, "accum_steps {accum}");
        }
        // BatchNorm in train mode: at least two images per micro-batch.
        c.shift_bn = true;
        for (accum, ok) in [(32, true), (33, false)] {
            c.accum_steps = accum;
            let bad = c.validate().iter().any(|i| i.key == "accum_steps");
            assert_eq!(bad, !ok, "accum_steps {accum} with shift_bn");
        }
        c.shift_bn = false;
        c.accum_steps = 4;
        c.amp = true;
        for (device, ok) in [
            ("cpu", false),
            ("cuda", true),
            ("cuda:1", true),
            ("auto", true),
        ] {
            c.device = device.into();
            let issues = c.validate();
            let amp = issues.iter().find(|i| i.key == "amp");
            assert_eq!(amp.is_none(), ok, "amp on {device}");
            if let Some(i) = amp {
                assert!(i.message.contains("CUDA"), "{}", i.message);
            }
        }
        // The keys load from YAML and from overrides.
        let mut c = Config::from_yaml_str(
            &format!("{REFERENCE}amp: true\nchannels_last: true\naccum_steps: 2\n"),
            "r",
        )
        .unwrap()
        .config;
        assert!(c.amp && c.channels_last);
        assert_eq!(c.accum_steps, 2);
        c.apply_overrides(&[
            "accum_steps".into(),
            "4".into(),
            "amp".into(),
            "false".into(),
        ])
        .unwrap();
        assert_eq!((c.accum_steps, c.amp), (4, false));
    }

    #[test]
    fn device_specs() {
        assert_eq!(parse_device_spec("cuda:1"), Ok(DeviceSpec::Cuda(1)));
        assert_eq!(parse_device_spec("auto"), Ok(DeviceSpec::Auto));
        assert!(parse_device_spec("gpu").is_err());
    }

    /// `Config::default()` serialised, captured before the defaults moved into the key table.
    const DEFAULTS_YAML: &str = "name: ''\nprint_freq: 40\nworkers: 2\nlog_dir: logs\nmodel_dir: ckps\ndataset: cifar10\ndata_path: ./data/cifar10\nnum_classes: 100\nimb_factor: 0.01\nbackbone: resnet32_fe\nresume: ''\nhead_class_idx:\n- 0\n- 1\nmed_class_idx:\n- 0\n- 1\ntail_class_idx:\n- 0\n- 1\ndeterministic: true\nmode: null\nsmooth_head: null\nsmooth_tail: null\nshift_bn: false\nlr_factor: null\nlr: 0.1\nbatch_size: 128\nweight_decay: 0.002\nnum_epochs: 200\nmomentum: 0.9\ncos: false\nmixup: true\nalpha: 1.0\nseed: 0\ndevice: auto\nwarmup_epochs: null\nlr_milestones:\n- 160\n- 180\nimb_type: exp\nlas_shape: concave\nlas_power: null\neval_batch_size: null\ntrain_list: null\ntest_list: null\nimage_size: 224\neval_resize: null\non_bad_image: fail\npretrained_weights: ''\namp: false\nchannels_last: false\naccum_steps: 1\n";

    #[test]
    fn defaults_are_unchanged() {
        assert_eq!(Config::default().to_yaml(), DEFAULTS_YAML);
    }
}
