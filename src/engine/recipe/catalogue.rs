//! The method catalogue: one row per method mislas trains, with its name, its label in tables,
//! its kind, the recipe it builds, the keys it uses and leaves unused, the switches of its
//! ablation and its source.
//!
//! Everything that lists methods reads this table: [`super::for_config`] (which recipe a
//! configuration builds), `mislas compare`'s base labels and default methods, the Methods view's
//! checklist and the stage-2 configuration it launches, `mislas methods` and the README's method
//! table (a test checks that the README lists every row). A method's name is spelled here and in
//! its configuration value (serde), nowhere else.
//!
//! Adding a method: its recipe file under `engine/recipe/` (or its loss under `method/`), its
//! value in the configuration enum, one row here, and its presets.
use super::{crt, lws, mislas, mixup, wb, StageRecipe};
use crate::config::{ClassifierRecipe, Config, Stage, StageOneLossName};
use anyhow::Result;
use tch::Device;

/// What kind of method a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// A stage-1 objective: the backbone and classifier learned together on the long-tailed data.
    Stage1Loss,
    /// A classifier stage: stage 2 on a frozen stage-1 backbone.
    ClassifierStage,
}

impl MethodKind {
    /// The kind in words, as the method table writes it.
    pub fn words(self) -> &'static str {
        match self {
            MethodKind::Stage1Loss => "stage-1 loss",
            MethodKind::ClassifierStage => "classifier stage",
        }
    }
}

/// What a row's method trains: the stage and the recipe of [`super::for_config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builds {
    /// Stage 1 ([`mixup::MixupRecipe`]) with this `loss`.
    Stage1(StageOneLossName),
    /// Stage 2 with this `recipe`.
    Classifier(ClassifierRecipe),
}

/// The switches of an ablation: what a stage-2 configuration sets to train this row rather than
/// its recipe's full method (e.g. MiSLAS without label-aware smoothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Switches {
    /// `shift_bn`: shift learning on or off.
    pub shift_bn: bool,
    /// Label-aware smoothing on (the preset's ε, or the paper's CIFAR-10-LT ε_1 = 0.3,
    /// ε_K = 0 when it has none) or off (ε_1 = ε_K = 0); `None` when the recipe has no LAS.
    pub las: Option<bool>,
}

/// One method of the catalogue.
#[derive(Debug)]
pub struct Method {
    /// The name a user types: `mislas compare`'s base (`--trained NAME=…`), a grid's value.
    pub name: &'static str,
    /// The name in tables and figures.
    pub label: &'static str,
    /// Stage-1 loss or classifier stage.
    pub kind: MethodKind,
    /// The recipe it builds.
    pub builds: Builds,
    /// The switches of its configuration; `None` for a stage-1 method.
    pub switches: Option<Switches>,
    /// The row this one ablates, by name; `None` for a method of its own.
    pub ablates: Option<&'static str>,
    /// What it does, in one line.
    pub summary: &'static str,
    /// The keys its recipe reads beyond the stage's common ones (`lr`, `num_epochs`, …).
    pub uses: &'static [&'static str],
    /// Method keys its recipe leaves unused (said in the run's log when set).
    pub ignores: &'static [&'static str],
    /// The paper (and the reference code where it is the reference's).
    pub source: &'static str,
}

/// The keys of label-aware smoothing and MiSLAS's learning-rate factor.
const MISLAS_KEYS: &[&str] = &[
    "smooth_head",
    "smooth_tail",
    "las_shape",
    "las_power",
    "lr_factor",
];

/// Every method, stage-1 methods first, then the classifier stages and their ablations.
pub const METHODS: &[Method] = &[
    Method {
        name: "ce",
        label: "CE (stage 1)",
        kind: MethodKind::Stage1Loss,
        builds: Builds::Stage1(StageOneLossName::Ce),
        switches: None,
        ablates: None,
        summary: "backbone and classifier trained with (mixup) cross-entropy on \
                  instance-balanced batches; `reweight cb`/`drw` weighs the classes",
        uses: &[
            "mixup",
            "alpha",
            "reweight",
            "cb_beta",
            "drw_epoch",
            "pretrained_weights",
        ],
        ignores: &["la_tau", "focal_gamma"],
        source: "Zhong et al., CVPR 2021 (MiSLAS stage 1, reference train_stage1.py); mixup: \
                 Zhang et al., ICLR 2018; re-weighting: Cui et al., CVPR 2019",
    },
    Method {
        name: "balanced_softmax",
        label: "Balanced Softmax",
        kind: MethodKind::Stage1Loss,
        builds: Builds::Stage1(StageOneLossName::BalancedSoftmax),
        switches: None,
        ablates: None,
        summary: "cross-entropy on logits + log n_c",
        uses: &["mixup", "alpha"],
        ignores: &["la_tau", "focal_gamma", "reweight", "cb_beta", "drw_epoch"],
        source: "Ren et al., NeurIPS 2020 (Balanced Meta-Softmax, Eq. 4)",
    },
    Method {
        name: "logit_adjusted",
        label: "LA loss",
        kind: MethodKind::Stage1Loss,
        builds: Builds::Stage1(StageOneLossName::LogitAdjusted),
        switches: None,
        ablates: None,
        summary: "cross-entropy on logits + τ·log π_c",
        uses: &["mixup", "alpha", "la_tau"],
        ignores: &["focal_gamma", "reweight", "cb_beta", "drw_epoch"],
        source: "Menon et al., ICLR 2021 (logit-adjusted loss, Eq. 10)",
    },
    Method {
        name: "ldam",
        label: "LDAM",
        kind: MethodKind::Stage1Loss,
        builds: Builds::Stage1(StageOneLossName::Ldam),
        switches: None,
        ablates: None,
        summary: "margins C/n_c^(1/4) (largest 0.5) on cosine logits × 30 (`classifier normed`); \
                  LDAM-DRW with `reweight drw`",
        uses: &[
            "mixup",
            "alpha",
            "classifier",
            "reweight",
            "cb_beta",
            "drw_epoch",
        ],
        ignores: &["la_tau", "focal_gamma"],
        source: "Cao et al., NeurIPS 2019 (LDAM-DRW, Eq. 13; authors' CIFAR code)",
    },
    Method {
        name: "focal",
        label: "Focal",
        kind: MethodKind::Stage1Loss,
        builds: Builds::Stage1(StageOneLossName::Focal),
        switches: None,
        ablates: None,
        summary: "(1 − p_y)^γ·CE, as LDAM-DRW's code writes it; `reweight` weighs the classes",
        uses: &[
            "mixup",
            "alpha",
            "focal_gamma",
            "reweight",
            "cb_beta",
            "drw_epoch",
        ],
        ignores: &["la_tau"],
        source: "Lin et al., ICCV 2017 (focal loss, Eq. 5)",
    },
    Method {
        name: "crt",
        label: "cRT",
        kind: MethodKind::ClassifierStage,
        builds: Builds::Classifier(ClassifierRecipe::Crt),
        switches: Some(Switches {
            shift_bn: false,
            las: None,
        }),
        ablates: None,
        summary: "classifier re-initialised and re-trained alone with cross-entropy on the \
                  class-aware sampler",
        uses: &["shift_bn"],
        ignores: MISLAS_KEYS,
        source: "Kang et al., ICLR 2020 (Decoupling, §4 cRT)",
    },
    Method {
        name: "lws",
        label: "LWS",
        kind: MethodKind::ClassifierStage,
        builds: Builds::Classifier(ClassifierRecipe::Lws),
        switches: Some(Switches {
            shift_bn: false,
            las: None,
        }),
        ablates: None,
        summary: "only per-class weight scales trained with cross-entropy; classifier frozen",
        uses: &["shift_bn"],
        ignores: MISLAS_KEYS,
        source: "Kang et al., ICLR 2020 (Decoupling, §4 LWS)",
    },
    Method {
        name: "wb",
        label: "WB",
        kind: MethodKind::ClassifierStage,
        builds: Builds::Classifier(ClassifierRecipe::Wb),
        switches: Some(Switches {
            shift_bn: false,
            las: None,
        }),
        ablates: None,
        summary: "classifier re-trained with the class-balanced loss, weight decay and MaxNorm \
                  (rows projected into a norm ball after every step)",
        uses: &["cb_beta", "maxnorm_thresh", "weight_decay"],
        ignores: MISLAS_KEYS,
        source: "Alshammari et al., CVPR 2022 (weight balancing; authors' LTR-weight-balancing \
                 code)",
    },
    Method {
        name: "mislas",
        label: "MiSLAS",
        kind: MethodKind::ClassifierStage,
        builds: Builds::Classifier(ClassifierRecipe::Mislas),
        switches: Some(Switches {
            shift_bn: true,
            las: Some(true),
        }),
        ablates: None,
        summary: "classifier and LWS scales re-learned with label-aware smoothing, BatchNorm \
                  shifted to class-balanced data",
        uses: &[
            "smooth_head",
            "smooth_tail",
            "las_shape",
            "las_power",
            "lr_factor",
            "shift_bn",
        ],
        ignores: &[],
        source: "Zhong et al., CVPR 2021 (MiSLAS stage 2, reference train_stage2.py)",
    },
    Method {
        name: "mislas-no-las",
        label: "MiSLAS w/o LAS",
        kind: MethodKind::ClassifierStage,
        builds: Builds::Classifier(ClassifierRecipe::Mislas),
        switches: Some(Switches {
            shift_bn: true,
            las: Some(false),
        }),
        ablates: Some("mislas"),
        summary: "MiSLAS with ε_1 = ε_K = 0 (plain cross-entropy)",
        uses: &["lr_factor", "shift_bn"],
        ignores: &["smooth_head", "smooth_tail", "las_shape", "las_power"],
        source: "Zhong et al., CVPR 2021, Table 5 (ablation)",
    },
    Method {
        name: "mislas-no-shift",
        label: "MiSLAS w/o shift",
        kind: MethodKind::ClassifierStage,
        builds: Builds::Classifier(ClassifierRecipe::Mislas),
        switches: Some(Switches {
            shift_bn: false,
            las: Some(true),
        }),
        ablates: Some("mislas"),
        summary: "MiSLAS with BatchNorm statistics of stage 1 (no shift learning)",
        uses: &[
            "smooth_head",
            "smooth_tail",
            "las_shape",
            "las_power",
            "lr_factor",
        ],
        ignores: &["shift_bn"],
        source: "Zhong et al., CVPR 2021, Table 5 (ablation)",
    },
];

impl PartialEq for Method {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Method {}

impl std::hash::Hash for Method {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// The row named `name`.
pub fn by_name(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// The row of a classifier-stage `recipe`'s full method (not an ablation).
pub fn of_recipe(recipe: ClassifierRecipe) -> &'static Method {
    METHODS
        .iter()
        .find(|m| m.builds == Builds::Classifier(recipe) && m.ablates.is_none())
        .expect("every classifier recipe has a row (test: every_value_has_one_row)")
}

/// The row of a stage-1 configuration's `loss`.
pub fn of_stage1(cfg: &Config) -> &'static Method {
    METHODS
        .iter()
        .find(|m| m.builds == Builds::Stage1(cfg.loss))
        .expect("every stage-1 loss has a row (test: every_value_has_one_row)")
}

/// The classifier stages, ablations included, in the table's order: what the Methods view can
/// train on a stage-1 run.
pub fn classifier_stages() -> impl Iterator<Item = &'static Method> {
    METHODS
        .iter()
        .filter(|m| m.kind == MethodKind::ClassifierStage)
}

/// The table name of a `mislas compare` base: the row's label, or the name as given.
pub fn label(name: &str) -> String {
    by_name(name).map_or_else(|| name.to_owned(), |m| m.label.to_owned())
}

/// Whether label-aware smoothing is on: a smoothing factor other than 0.
fn las_on(c: &Config) -> bool {
    c.smooth_head.unwrap_or(0.0) != 0.0 || c.smooth_tail.unwrap_or(0.0) != 0.0
}

impl Method {
    /// The method a stage-2 configuration trains, if it is one of the catalogue's rows: its
    /// recipe, and the row whose switches it has. MiSLAS with neither LAS nor shift learning is
    /// none of them.
    pub fn of_config(c: &Config) -> Option<&'static Method> {
        if c.stage() != Stage::Stage2 {
            return None;
        }
        classifier_stages().find(|m| {
            let Some(sw) = m.switches else { return false };
            m.builds == Builds::Classifier(c.recipe)
                && (m.ablates.is_none() && sw.las.is_none() || sw.shift_bn == c.shift_bn)
                && sw.las.is_none_or(|on| on == las_on(c))
        })
    }

    /// Makes a stage-2 configuration train this method: its recipe, and the switches of its
    /// ablation (shift learning; LAS on with the paper's CIFAR-10-LT ε when the configuration
    /// has none, or off). MiSLAS's `lr_factor` defaults to the reference's 0.5.
    ///
    /// # Panics
    /// On a stage-1 row (a programming error: only classifier stages are applied).
    pub fn apply(&self, c: &mut Config) {
        let (Builds::Classifier(recipe), Some(sw)) = (self.builds, self.switches) else {
            panic!("{} is not a classifier stage", self.name);
        };
        c.mode = Some(Stage::Stage2);
        c.recipe = recipe;
        c.shift_bn = sw.shift_bn;
        match sw.las {
            None => {}
            Some(false) => {
                c.smooth_head = Some(0.0);
                c.smooth_tail = Some(0.0);
            }
            Some(true) if !las_on(c) => {
                c.smooth_head = Some(0.3);
                c.smooth_tail = Some(0.0);
            }
            Some(true) => {}
        }
        if recipe == ClassifierRecipe::Mislas && c.lr_factor.is_none() {
            c.lr_factor = Some(0.5);
        }
    }

    /// The recipe of `cfg` (a configuration of this row's stage).
    ///
    /// # Errors
    /// A recipe's settings that cannot be used (e.g. LAS's ε outside [0, 1]).
    pub fn build(
        &self,
        cfg: &Config,
        class_counts: &[usize],
        device: Device,
    ) -> Result<Box<dyn StageRecipe>> {
        Ok(match self.builds {
            Builds::Stage1(_) => Box::new(mixup::MixupRecipe::new(cfg, class_counts)?),
            Builds::Classifier(ClassifierRecipe::Mislas) => {
                Box::new(mislas::MislasRecipe::new(cfg, class_counts, device)?)
            }
            Builds::Classifier(ClassifierRecipe::Crt) => Box::new(crt::CrtRecipe::new(cfg)),
            Builds::Classifier(ClassifierRecipe::Lws) => Box::new(lws::LwsRecipe::new(cfg)),
            Builds::Classifier(ClassifierRecipe::Wb) => {
                Box::new(wb::WbRecipe::new(cfg, class_counts)?)
            }
        })
    }
}

/// The catalogue as the README's method table (Markdown): name, label, kind, what it does,
/// keys, source.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| name | label | kind | what it trains | keys it uses | source |\n\
         |---|---|---|---|---|---|\n",
    );
    for m in METHODS {
        let uses = if m.uses.is_empty() {
            "—".to_owned()
        } else {
            m.uses
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            m.name,
            m.label,
            m.kind.words(),
            m.summary,
            uses,
            m.source
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_every_value_has_one_row() {
        let names: HashSet<_> = METHODS.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), METHODS.len());
        for &r in ClassifierRecipe::ALL {
            let rows: Vec<_> = METHODS
                .iter()
                .filter(|m| m.builds == Builds::Classifier(r) && m.ablates.is_none())
                .collect();
            assert_eq!(rows.len(), 1, "{r}");
            // The row of a recipe is named as the configuration spells the recipe.
            assert_eq!(rows[0].name, r.name());
        }
        for &l in StageOneLossName::ALL {
            let rows: Vec<_> = METHODS
                .iter()
                .filter(|m| m.builds == Builds::Stage1(l))
                .collect();
            assert_eq!(rows.len(), 1, "{l}");
            assert_eq!(rows[0].name, l.name());
        }
        for m in METHODS {
            if let Some(base) = m.ablates {
                assert!(by_name(base).is_some(), "{} ablates unknown {base}", m.name);
            }
            assert_eq!(m.switches.is_some(), m.kind == MethodKind::ClassifierStage);
        }
    }

    #[test]
    fn applying_a_row_gives_a_configuration_of_that_row() {
        let base = Config {
            mode: Some(Stage::Stage2),
            ..Config::default()
        };
        for m in classifier_stages() {
            let mut c = base.clone();
            m.apply(&mut c);
            assert_eq!(Method::of_config(&c), Some(m), "{}", m.name);
        }
        // MiSLAS without both of its parts is none of the rows.
        let mut neither = base.clone();
        by_name("mislas-no-las").unwrap().apply(&mut neither);
        neither.shift_bn = false;
        assert_eq!(Method::of_config(&neither), None);
        // A stage-1 configuration trains no classifier stage.
        assert_eq!(Method::of_config(&Config::default()), None);
    }

    #[test]
    fn the_readme_lists_every_method() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md's method table differs from the catalogue: paste `mislas methods --markdown`"
        );
    }

    #[test]
    fn labels_fall_back_to_the_name() {
        assert_eq!(label("crt"), "cRT");
        assert_eq!(label("ce"), "CE (stage 1)");
        assert_eq!(label("mine"), "mine");
    }
}
