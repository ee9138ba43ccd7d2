//! Validation: the rules of [`KEYS`] ([`Config::validate`]) and the `resume` file
//! ([`Config::check_resume`]). The checks against this machine are `distributed::machine`'s.
//!
//! Each rule is a [`Check`](super::keys::Check) of one key's row; [`Config::validate`] also
//! checks every integer key against its row's lower bound ([`ValueKind::min`]).
use super::img_num_per_cls;
use super::keys::{ValueKind, BACKBONES, KEYS};
use super::{
    parse_device_spec, ClassifierKind, ClassifierRecipe, Config, DeviceSpec, FieldIssue, LasShape,
    Reweight, Stage, StageOneLossName,
};
use serde_yaml::{Mapping, Value};
use std::path::Path;

impl Config {
    /// Checks the configuration before anything is loaded: [`Config::validate`] as one error.
    ///
    /// # Errors
    /// Every failed validation rule, `key: message` joined by `; `, with the configuration's
    /// name.
    pub fn ensure_valid(&self) -> anyhow::Result<()> {
        let issues = self.validate();
        if !issues.is_empty() {
            let lines: Vec<String> = issues
                .iter()
                .map(|i| format!("{}: {}", i.key, i.message))
                .collect();
            anyhow::bail!(
                "configuration '{}' is not usable: {}",
                self.name,
                lines.join("; ")
            );
        }
        Ok(())
    }

    /// Checks every rule that needs neither the file system nor the machine, key by key in
    /// [`KEYS`] order; empty when the configuration is usable.
    pub fn validate(&self) -> Vec<FieldIssue> {
        let values = match serde_yaml::to_value(self) {
            Ok(Value::Mapping(m)) => m,
            _ => Mapping::new(),
        };
        KEYS.iter()
            .filter_map(|k| {
                let message = below_min(k.name, k.kind, &values).or_else(|| (k.check?)(self))?;
                Some(FieldIssue {
                    key: k.name,
                    message,
                })
            })
            .collect()
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

    /// Images in the long-tailed training subset, when the configuration alone determines it:
    /// Fashion-MNIST-LT and CIFAR-10/100-LT with a valid `imb_factor` and the data set's
    /// `num_classes`, counted with the loader's own [`img_num_per_cls`] (n_max = N/K). `None` for
    /// the list-file sets (their size is their list's) and for settings the loader refuses.
    pub fn train_set_size(&self) -> Option<usize> {
        let (images, classes) = self.dataset.full_train_set()?;
        let f = self.imb_factor.filter(|f| *f > 0.0 && *f <= 1.0)?;
        if self.num_classes != classes {
            return None;
        }
        let n_max = images as f64 / classes as f64;
        Some(
            img_num_per_cls(n_max, classes, self.imb_type, f)
                .iter()
                .sum(),
        )
    }
}

/// The lower-bound rule of an integer key: its value in `values` below [`ValueKind::min`].
fn below_min(key: &str, kind: ValueKind, values: &Mapping) -> Option<String> {
    let min = kind.min()?;
    let value = values.get(key)?;
    let n = value.as_i64()?;
    if n >= min {
        return None;
    }
    let or_null = if matches!(kind, ValueKind::OptInt { .. }) {
        " or null"
    } else {
        ""
    };
    Some(format!("must be a whole number ≥ {min}{or_null}, is {n}"))
}

pub(super) fn name(c: &Config) -> Option<String> {
    if c.name.trim().is_empty() {
        Some("must not be empty".into())
    } else if c.name.contains(['/', '\\']) || c.name.starts_with('.') {
        Some(format!(
            "'{}' must be a plain folder name (no '/', no leading '.')",
            c.name
        ))
    } else {
        None
    }
}

pub(super) fn lr(c: &Config) -> Option<String> {
    (!(c.lr > 0.0 && c.lr.is_finite())).then(|| format!("must be > 0, is {}", c.lr))
}

pub(super) fn batch_size(c: &Config) -> Option<String> {
    let size = c.train_set_size()?;
    (c.batch_size > size).then(|| {
        format!(
            "batch_size {} is larger than the training set ({size} images of {} at imbalance \
             factor {})",
            c.batch_size,
            c.dataset.display_name(),
            c.imb_factor.unwrap_or(1.0)
        )
    })
}

pub(super) fn accum_steps(c: &Config) -> Option<String> {
    // BatchNorm in train mode (stage 1, and stage 2's shift learning) needs two images per
    // micro-batch.
    let bn_train = c.stage() == Stage::Stage1 || c.shift_bn;
    let most = if bn_train {
        (c.batch_size / 2).max(1)
    } else {
        c.batch_size.max(1)
    };
    if (1..=most).contains(&c.accum_steps) {
        return None;
    }
    let why = if bn_train {
        format!("batch_size/2 = {most}: BatchNorm in train mode needs two images per micro-batch")
    } else {
        format!("batch_size = {most}")
    };
    Some(format!("must be between 1 and {why}, is {}", c.accum_steps))
}

pub(super) fn gpus(c: &Config) -> Option<String> {
    let world = c.gpus * usize::try_from(c.world_size.max(1)).unwrap_or(1);
    if world > 1 && !c.batch_size.is_multiple_of(world) {
        return Some(format!(
            "batch_size {} is the global batch and must split evenly over the {world} ranks \
             ({} process{} per machine × {} machine{})",
            c.batch_size,
            c.gpus,
            if c.gpus == 1 { "" } else { "es" },
            c.world_size.max(1),
            if c.world_size > 1 { "s" } else { "" }
        ));
    }
    let bn_train = c.stage() == Stage::Stage1 || c.shift_bn;
    let per_rank = c.batch_size / world.max(1);
    (world > 1 && bn_train && per_rank < 2 * c.accum_steps).then(|| {
        format!(
            "each of the {world} ranks trains on batch_size/{world} = {per_rank} images, and \
             BatchNorm in train mode needs two per micro-batch (accum_steps {}): raise batch_size",
            c.accum_steps
        )
    })
}

pub(super) fn dist_timeout(c: &Config) -> Option<String> {
    (!(c.dist_timeout > 0.0 && c.dist_timeout.is_finite()))
        .then(|| format!("must be a number of seconds > 0, is {}", c.dist_timeout))
}

pub(super) fn momentum(c: &Config) -> Option<String> {
    (!(0.0..1.0).contains(&c.momentum)).then(|| format!("must be in [0, 1), is {}", c.momentum))
}

pub(super) fn weight_decay(c: &Config) -> Option<String> {
    (!(c.weight_decay >= 0.0 && c.weight_decay.is_finite()))
        .then(|| format!("must be ≥ 0, is {}", c.weight_decay))
}

pub(super) fn lr_milestones(c: &Config) -> Option<String> {
    c.lr_milestones
        .windows(2)
        .any(|w| w[0] >= w[1])
        .then(|| "must be increasing".into())
}

pub(super) fn lr_decay(c: &Config) -> Option<String> {
    (!(c.lr_decay > 0.0 && c.lr_decay <= 1.0)).then(|| {
        format!(
            "must be in (0, 1] (0.1: the reference's step decay; 1: none), is {}",
            c.lr_decay
        )
    })
}

pub(super) fn amp(c: &Config) -> Option<String> {
    (c.amp && matches!(parse_device_spec(&c.device), Ok(DeviceSpec::Cpu)))
        .then(|| "mixed precision needs a CUDA device; set device cuda, or amp false".into())
}

pub(super) fn device(c: &Config) -> Option<String> {
    parse_device_spec(&c.device).err()
}

pub(super) fn imb_factor(c: &Config) -> Option<String> {
    match c.imb_factor {
        Some(f) if !(f > 0.0 && f <= 1.0) => Some(format!("must be in (0, 1], is {f}")),
        None if !c.dataset.is_large_scale() => Some(format!(
            "{} needs an imbalance factor in (0, 1]",
            c.dataset.display_name()
        )),
        _ => None,
    }
}

fn class_range(c: &Config, r: [usize; 2]) -> Option<String> {
    (r[0] > r[1] || r[1] > c.num_classes).then(|| {
        format!(
            "must be [start, end] with start ≤ end ≤ num_classes ({}), is [{}, {}]",
            c.num_classes, r[0], r[1]
        )
    })
}

pub(super) fn head_class_idx(c: &Config) -> Option<String> {
    class_range(c, c.head_class_idx)
}

pub(super) fn med_class_idx(c: &Config) -> Option<String> {
    class_range(c, c.med_class_idx)
}

pub(super) fn tail_class_idx(c: &Config) -> Option<String> {
    class_range(c, c.tail_class_idx)
}

pub(super) fn image_size(c: &Config) -> Option<String> {
    (c.dataset.is_large_scale() && c.image_size < 8)
        .then(|| format!("must be at least 8 pixels, is {}", c.image_size))
}

pub(super) fn eval_resize(c: &Config) -> Option<String> {
    let resize = c.effective_eval_resize();
    (c.dataset.is_large_scale() && resize < c.image_size).then(|| {
        format!(
            "the evaluation resize ({resize}) must be at least image_size ({})",
            c.image_size
        )
    })
}

pub(super) fn backbone(c: &Config) -> Option<String> {
    (!BACKBONES.contains(&c.backbone.as_str())).then(|| {
        format!(
            "unknown backbone '{}' ({})",
            c.backbone,
            BACKBONES.join(", ")
        )
    })
}

pub(super) fn alpha(c: &Config) -> Option<String> {
    c.alpha
        .is_some_and(|a| !a.is_finite())
        .then(|| "must be a finite number or null".into())
}

pub(super) fn las_power(c: &Config) -> Option<String> {
    (c.las_shape == LasShape::Exp && c.las_power.is_none())
        .then(|| "las_shape 'exp' needs a power".into())
}

pub(super) fn recipe(c: &Config) -> Option<String> {
    (c.stage() == Stage::Stage1 && c.recipe != ClassifierRecipe::Mislas).then(|| {
        format!(
            "'{}' is a classifier stage: set mode stage2 (and resume a stage-1 checkpoint); \
             stage 1 always learns the representation with mixup",
            c.recipe
        )
    })
}

pub(super) fn smooth_head(c: &Config) -> Option<String> {
    if c.stage() != Stage::Stage2 || c.recipe != ClassifierRecipe::Mislas {
        return None;
    }
    match (c.smooth_head, c.smooth_tail) {
        (Some(h), Some(t)) => (!(0.0 <= t && t <= h && h < 1.0))
            .then(|| format!("need 0 ≤ smooth_tail ≤ smooth_head < 1, have {t} and {h}")),
        _ => Some("stage 2 needs smooth_head and smooth_tail (label-aware smoothing)".into()),
    }
}

/// MiSLAS stage 2's keys, parsed: what its recipe reads, with the rules of
/// [`smooth_head`] and [`lr_factor`] already applied (parse, don't validate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MislasSettings {
    /// LAS's ε_1 of the most frequent class (paper Eq. 6), in [0, 1).
    pub smooth_head: f64,
    /// LAS's ε_K of the least frequent class, in [0, smooth_head].
    pub smooth_tail: f64,
    /// The classifier's learning rate is `lr · lr_factor` (> 0); the LWS scales learn at `lr`.
    pub lr_factor: f64,
}

impl Config {
    /// MiSLAS stage 2's keys, parsed.
    ///
    /// # Errors
    /// `smooth_head`/`smooth_tail` missing or not 0 ≤ ε_K ≤ ε_1 < 1, or `lr_factor` missing or
    /// not a positive number: the message names the key.
    pub fn mislas_settings(&self) -> Result<MislasSettings, String> {
        let (smooth_head, smooth_tail) = match (self.smooth_head, self.smooth_tail) {
            (Some(h), Some(t)) if 0.0 <= t && t <= h && h < 1.0 => (h, t),
            (Some(h), Some(t)) => {
                return Err(format!(
                    "smooth_head: need 0 ≤ smooth_tail ≤ smooth_head < 1, have {t} and {h}"
                ))
            }
            _ => {
                return Err("smooth_head: stage 2 needs smooth_head and smooth_tail \
                            (label-aware smoothing)"
                    .into())
            }
        };
        let lr_factor = match self.lr_factor {
            Some(f) if f > 0.0 && f.is_finite() => f,
            _ => return Err("lr_factor: stage 2 needs lr_factor > 0".into()),
        };
        Ok(MislasSettings {
            smooth_head,
            smooth_tail,
            lr_factor,
        })
    }
}

pub(super) fn checkpoint_every(c: &Config) -> Option<String> {
    (!(c.checkpoint_every.is_finite() && c.checkpoint_every > 0.0)).then(|| {
        format!(
            "must be a positive number of minutes (e.g. 10), is {}",
            c.checkpoint_every
        )
    })
}

pub(super) fn lr_factor(c: &Config) -> Option<String> {
    if c.stage() != Stage::Stage2 || c.recipe != ClassifierRecipe::Mislas {
        return None;
    }
    match c.lr_factor {
        Some(f) if f > 0.0 && f.is_finite() => None,
        _ => Some("stage 2 needs lr_factor > 0".into()),
    }
}

pub(super) fn loss(c: &Config) -> Option<String> {
    (c.stage() == Stage::Stage1
        && c.loss == StageOneLossName::Ldam
        && c.classifier != ClassifierKind::Normed)
        .then(|| {
            "ldam scales cosine logits by s = 30 as LDAM-DRW's code does: set classifier normed \
             (its NormedLinear) in both stages"
                .into()
        })
}

pub(super) fn reweight(c: &Config) -> Option<String> {
    let prior_loss = matches!(
        c.loss,
        StageOneLossName::BalancedSoftmax | StageOneLossName::LogitAdjusted
    );
    (c.stage() == Stage::Stage1 && prior_loss && c.reweight != Reweight::None).then(|| {
        format!(
            "loss {} already corrects for the class prior; reweight {} applies to ce, focal and \
             ldam: set reweight none",
            c.loss, c.reweight
        )
    })
}

/// A number that must be finite and ≥ 0, named `what`.
fn non_negative(v: f64, what: &str) -> Option<String> {
    (!(v.is_finite() && v >= 0.0)).then(|| format!("{what} must be a number ≥ 0, is {v}"))
}

pub(super) fn la_tau(c: &Config) -> Option<String> {
    non_negative(c.la_tau, "the logit adjustment τ")
}

pub(super) fn focal_gamma(c: &Config) -> Option<String> {
    non_negative(c.focal_gamma, "the focal loss γ")
}

pub(super) fn cb_beta(c: &Config) -> Option<String> {
    (!(0.0..1.0).contains(&c.cb_beta)).then(|| {
        format!(
            "the effective number's β must be in [0, 1) (0.9999 in Cui et al. and LDAM-DRW), is {}",
            c.cb_beta
        )
    })
}

pub(super) fn drw_epoch(c: &Config) -> Option<String> {
    (c.stage() == Stage::Stage1 && c.reweight == Reweight::Drw && c.drw_epoch >= c.num_epochs).then(
        || {
            format!(
                "DRW would never switch on: drw_epoch {} is not one of the stage's 0-based \
                 epochs 0..{} (num_epochs {}); the paper switches at 160 of 200",
                c.drw_epoch,
                c.num_epochs.saturating_sub(1),
                c.num_epochs
            )
        },
    )
}

pub(super) fn classifier(c: &Config) -> Option<String> {
    (c.stage() == Stage::Stage2
        && c.recipe == ClassifierRecipe::Wb
        && c.classifier == ClassifierKind::Normed)
        .then(|| {
            "recipe wb bounds the norms of the classifier's class vectors (MaxNorm), which the \
             normed classifier divides out: wb needs classifier linear (a stage 1 other than ldam)"
                .into()
        })
}

pub(super) fn maxnorm_thresh(c: &Config) -> Option<String> {
    (c.stage() == Stage::Stage2
        && c.recipe == ClassifierRecipe::Wb
        && !(0.0..=1.0).contains(&c.maxnorm_thresh))
    .then(|| {
        format!(
            "MaxNorm's t must be in [0, 1] (0.1 in the weight-balancing code), is {}",
            c.maxnorm_thresh
        )
    })
}
