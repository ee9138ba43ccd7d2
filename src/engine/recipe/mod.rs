//! Stage recipes: everything that differs between the stages of a long-tailed recipe, behind
//! one trait. The trainer ([`super::trainer`]) runs any of them.
//!
//! * [`mixup`]: stage 1 of MiSLAS (reference `train_stage1.py`) — representation learning;
//! * [`mislas`]: stage 2 of MiSLAS (reference `train_stage2.py`) — classifier re-learning with
//!   shift learning, LWS and label-aware smoothing;
//! * [`crt`], [`lws`]: Decoupling's classifier stages (Kang et al., ICLR 2020) — classifier
//!   re-training, and weight scaling alone, with cross-entropy;
//! * [`wb`]: weight balancing's classifier stage (Alshammari et al., CVPR 2022) — classifier
//!   re-training with the class-balanced loss, weight decay and MaxNorm.
//!
//! Stage 1's loss is the `loss` key ([`crate::method::loss`]); a stage-2 recipe says in its log
//! line when a stage-1 loss key is set and unused ([`unused_stage1_keys`]).
//!
//! The classifier stages share the class-aware stream and schedule of [`class_aware`]. Every
//! method is a row of the [`catalogue`]; adding one is a new file here, its row and its presets.
pub mod catalogue;
pub mod class_aware;
pub mod crt;
pub mod lws;
pub mod mislas;
pub mod mixup;
pub mod wb;

use super::step::Objective;
use crate::config::{Config, Stage};
use crate::model::{Network, Part};
use anyhow::Result;
use tch::{Device, Tensor};

/// Prefix of a recipe's own state among a checkpoint's optimizer state
/// ([`StageRecipe::state`]).
pub const RECIPE_STATE: &str = "recipe.";

/// How a stage starts: what was restored before [`StageRecipe::prepare_network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Nothing: freshly initialised weights.
    Fresh,
    /// The weights of a checkpoint of an earlier stage (stage 2's stage-1 checkpoint).
    FromCheckpoint,
    /// This recipe's own run, resumed: its trained parts included.
    Continuing,
}

/// The training stream of a stage: which images an epoch draws, in which order, in how many
/// batches. The sampler and the epoch length are one concern, what is trained and with which
/// loss another ([`StageRecipe`]).
pub trait EpochStream: Send {
    /// Training batches in an epoch over `train_images` images.
    fn batches_per_epoch(&self, train_images: usize) -> usize;

    /// Training images drawn in an epoch over `train_images` images.
    fn images_per_epoch(&self, train_images: usize) -> usize;

    /// The epoch's order of training indices (its sampler), from the run's seed and `epoch`
    /// (0-based); `labels` `[N]` are the training labels.
    fn epoch_order(&self, labels: &[i64], epoch: usize) -> Vec<usize>;
}

/// What a stage of training is: its parameters and their learning rates, its stream (sampler
/// and epoch length), the backbone's mode, its loss and what a checkpoint restores.
pub trait StageRecipe: Send {
    /// The stage a checkpoint of this recipe records.
    fn stage(&self) -> Stage;

    /// The loss of a training step.
    fn objective(&self) -> &dyn Objective;

    /// The parts of the network a checkpoint restores: the network's weights (of a stage-1
    /// checkpoint at the start of this recipe), and LWS too when `continuing` this recipe's own
    /// run.
    fn restored_parts(&self, net: &Network, continuing: bool) -> Vec<Part> {
        let mut parts = net.weight_parts();
        if continuing {
            parts.push(Part::Lws);
        }
        parts
    }

    /// Readies the network after `start`'s restore: loads pretrained weights, freezes what this
    /// recipe does not train, re-initialises what it trains from scratch.
    ///
    /// # Errors
    /// Pretrained weights that cannot be read.
    fn prepare_network(&self, net: &mut Network, start: Start) -> Result<()>;

    /// The SGD parameter groups, in the order [`StageRecipe::learning_rates`] gives their rates.
    fn parameter_groups(&self, net: &Network) -> Vec<Vec<(String, Tensor)>>;

    /// Learning rate of each parameter group during `epoch` (0-based).
    fn learning_rates(&self, epoch: usize) -> Vec<f64>;

    /// The stage's training stream: its sampler and the length of an epoch.
    fn stream(&self) -> &dyn EpochStream;

    /// Whether the backbone's BatchNorm runs in train mode while training.
    fn backbone_train(&self) -> bool;

    /// What the recipe itself must keep in a checkpoint so that a resumed run continues
    /// exactly (saved beside the optimizer's state as `optim.recipe.*`); none by default.
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Restores [`StageRecipe::state`] when this recipe's own run is resumed, after
    /// [`StageRecipe::prepare_network`]; `state` holds the names without [`RECIPE_STATE`].
    ///
    /// # Errors
    /// A state this recipe does not know (the message names it).
    fn load_state(&self, state: &[(String, Tensor)]) -> Result<(), String> {
        match state.first() {
            Some((name, _)) => Err(format!("recipe state '{name}' is not this recipe's")),
            None => Ok(()),
        }
    }

    /// One line for the run's log: what this recipe trains, with which loss and sampler, and
    /// which settings it leaves unused.
    fn describe(&self) -> String;

    /// Called before 0-based `epoch` trains, so that a loss that changes with the epoch (DRW's
    /// deferred class weights) knows it. Nothing by default.
    fn begin_epoch(&mut self, _epoch: usize) {}

    /// Called after every SGD step that was applied (on every rank, with the same weights), for
    /// constraints on the trained weights (weight balancing's MaxNorm projection). Nothing by
    /// default.
    fn after_step(&self, _net: &Network) {}

    /// A failure message when this recipe cannot start without a checkpoint and has none.
    fn missing_checkpoint(&self) -> Option<&'static str> {
        None
    }
}

/// The recipe of `cfg`'s stage (`mode`), as the catalogue's row for it builds it: stage 1 is
/// [`mixup::MixupRecipe`], stage 2 the classifier stage of `recipe`. `class_counts` are the
/// training counts of each class.
///
/// # Errors
/// A recipe's settings that cannot be used (e.g. LAS's ε outside [0, 1], a class without
/// training images under a loss that needs n_c > 0).
pub fn for_config(
    cfg: &Config,
    class_counts: &[usize],
    device: Device,
) -> Result<Box<dyn StageRecipe>> {
    let row = match cfg.stage() {
        Stage::Stage1 => catalogue::of_stage1(cfg),
        Stage::Stage2 => catalogue::of_recipe(cfg.recipe),
    };
    row.build(cfg, class_counts, device)
}

/// The stage-1 loss keys a stage-2 configuration sets away from their defaults, which no
/// classifier stage reads, as a clause for the recipe's log line ("; stage-1 keys loss ldam,
/// reweight drw are not used"); empty when there are none.
pub fn unused_stage1_keys(cfg: &Config) -> String {
    let d = Config::default();
    let mut set = Vec::new();
    if cfg.loss != d.loss {
        set.push(format!("loss {}", cfg.loss));
    }
    if cfg.reweight != d.reweight {
        set.push(format!("reweight {}", cfg.reweight));
    }
    if cfg.la_tau != d.la_tau {
        set.push(format!("la_tau {}", cfg.la_tau));
    }
    if cfg.focal_gamma != d.focal_gamma {
        set.push(format!("focal_gamma {}", cfg.focal_gamma));
    }
    if cfg.drw_epoch != d.drw_epoch {
        set.push(format!("drw_epoch {}", cfg.drw_epoch));
    }
    if set.is_empty() {
        String::new()
    } else {
        format!(
            "; stage-1 loss keys {} are not used by a classifier stage",
            set.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClassifierKind, ClassifierRecipe, Reweight, StageOneLossName};

    const COUNTS: [usize; 4] = [40, 20, 8, 2];

    fn line(cfg: &Config) -> String {
        for_config(cfg, &COUNTS, Device::Cpu).unwrap().describe()
    }

    /// Stage 1 names its loss; loss keys the chosen loss does not read, and stage-1 loss keys in
    /// a classifier stage's configuration, are said in the recipe's log line.
    #[test]
    fn unused_loss_keys_are_said() {
        let ldam = Config {
            loss: StageOneLossName::Ldam,
            reweight: Reweight::Drw,
            classifier: ClassifierKind::Normed,
            ..Config::default()
        };
        let l = line(&ldam);
        assert!(
            l.contains("mixup (α = 1) LDAM (margins C/n_c^(1/4), largest 0.5, s = 30) with DRW"),
            "{l}"
        );
        assert!(l.contains("β = 0.9999, from epoch 160"), "{l}");
        assert!(!l.contains("not used"), "{l}");
        let ce = Config {
            focal_gamma: 2.0,
            la_tau: 0.5,
            ..Config::default()
        };
        let l = line(&ce);
        assert!(
            l.contains(
                "cross-entropy (la_tau 0.5, focal_gamma 2 not used by loss ce, reweight none)"
            ),
            "{l}"
        );
        for recipe in [
            ClassifierRecipe::Mislas,
            ClassifierRecipe::Crt,
            ClassifierRecipe::Lws,
            ClassifierRecipe::Wb,
        ] {
            let mut stage2 = Config {
                mode: Some(Stage::Stage2),
                recipe,
                loss: StageOneLossName::Focal,
                reweight: Reweight::Cb,
                ..Config::default()
            };
            if recipe == ClassifierRecipe::Mislas {
                // MiSLAS's own keys, which it needs (the others would name them unused).
                stage2.smooth_head = Some(0.3);
                stage2.smooth_tail = Some(0.0);
                stage2.lr_factor = Some(0.5);
            }
            let l = line(&stage2);
            assert!(
                l.ends_with(
                    "; stage-1 loss keys loss focal, reweight cb are not used by a classifier stage"
                ),
                "{l}"
            );
        }
        // Nothing is said when the stage-1 keys keep their defaults.
        let crt = Config {
            mode: Some(Stage::Stage2),
            recipe: ClassifierRecipe::Crt,
            ..Config::default()
        };
        assert!(!line(&crt).contains("stage-1 loss keys"));
    }
}
