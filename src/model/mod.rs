//! The network of both stages: backbone (feature extractor) → linear classifier → learnable
//! weight scaling (LWS).
//!
//! All variables live in one [`nn::VarStore`] under three prefixes that mirror the reference's
//! checkpoint dictionaries: `model.` (`state_dict_model`), `classifier.` (`state_dict_classifier`)
//! and `lws_model.` (`state_dict_lws_model`).
pub mod pth;
pub mod resnet_cifar;

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

/// Backbone, classifier and LWS of one experiment.
#[derive(Debug)]
pub struct Network {
    /// All variables (`model.*`, `classifier.*`, `lws_model.*`).
    pub vs: nn::VarStore,
    backbone: resnet_cifar::ResNetCifar,
    classifier: nn::Linear,
    /// LWS scales s ∈ R^K, shape `[1, K]`, initialised to ones (reference
    /// `LearnableWeightScaling.learned_norm`).
    lws: Tensor,
    /// Number of classes K.
    pub num_classes: i64,
    /// Backbone name (`resnet32_fe`).
    pub backbone_name: String,
}

/// The three parts of a [`Network`], as prefixes of its variable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `model.`: the backbone.
    Backbone,
    /// `classifier.`: the linear classifier (`fc.weight` `[K, F]`, `fc.bias` `[K]`).
    Classifier,
    /// `lws_model.`: the LWS scales (`learned_norm` `[1, K]`).
    Lws,
}

impl Part {
    /// Variable-name prefix of the part.
    pub fn prefix(self) -> &'static str {
        match self {
            Part::Backbone => "model.",
            Part::Classifier => "classifier.",
            Part::Lws => "lws_model.",
        }
    }
}

impl Network {
    /// Builds the network on `device`, initialised from torch's generator (seed it first with
    /// `tch::manual_seed` for reproducible weights).
    ///
    /// The classifier is the reference's `Classifier`: `nn.Linear(F, K)` with a Kaiming-normal
    /// weight and PyTorch's default bias U(−1/√F, 1/√F).
    ///
    /// # Errors
    /// An unknown backbone (the large-scale ResNets are not implemented yet).
    pub fn new(backbone: &str, in_channels: i64, num_classes: i64, device: Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (net, feat) = match backbone {
            "resnet32_fe" => (
                resnet_cifar::ResNetCifar::new(&root / "model", in_channels, 5),
                resnet_cifar::FEATURES,
            ),
            other => bail!(
                "backbone '{other}' is not available yet: this build trains resnet32_fe \
                 (the ImageNet-scale ResNets come with the large-scale data sets)"
            ),
        };
        let bound = 1.0 / (feat as f64).sqrt();
        let classifier = nn::linear(
            &root / "classifier" / "fc",
            feat,
            num_classes,
            nn::LinearConfig {
                ws_init: nn::init::DEFAULT_KAIMING_NORMAL,
                bs_init: Some(nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                }),
                bias: true,
            },
        );
        let lws = (&root / "lws_model").ones("learned_norm", &[1, num_classes]);
        Ok(Network {
            vs,
            backbone: net,
            classifier,
            lws,
            num_classes,
            backbone_name: backbone.to_owned(),
        })
    }

    /// Backbone features `[B, F]` of images `[B, C, H, W]`; `train` selects BatchNorm's batch
    /// statistics (and updates its running statistics) instead of the running ones.
    pub fn features(&self, images: &Tensor, train: bool) -> Tensor {
        self.backbone.forward_t(images, train)
    }

    /// Classifier logits `[B, K]` of features `[B, F]`.
    pub fn classify(&self, features: &Tensor) -> Tensor {
        self.classifier.forward(features)
    }

    /// LWS: logits `[B, K]` scaled class-wise by s (MiSLAS §4.3; reference
    /// `LearnableWeightScaling`: `learned_norm * x`).
    pub fn scale(&self, logits: &Tensor) -> Tensor {
        logits * &self.lws
    }

    /// Named variables of one part, sorted by name.
    pub fn part_variables(&self, part: Part) -> Vec<(String, Tensor)> {
        let mut v: Vec<_> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(k, _)| k.starts_with(part.prefix()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Trainable parameters of one part (BatchNorm running statistics excluded).
    pub fn part_parameters(&self, part: Part) -> Vec<(String, Tensor)> {
        self.part_variables(part)
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }

    /// Stops gradients to the backbone (stage 2). BatchNorm running statistics still move when
    /// the backbone runs in train mode (shift learning).
    pub fn freeze_backbone(&self) {
        for (_, t) in self.part_variables(Part::Backbone) {
            let _ = t.set_requires_grad(false);
        }
    }

    /// Number of trainable scalars in a part (for comparison with PyTorch's count).
    pub fn parameter_count(&self, part: Part) -> i64 {
        self.part_variables(part)
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, t)| t.numel() as i64)
            .sum()
    }

    /// Copies named tensors into the variables of the given parts.
    ///
    /// Every variable of those parts must be present with the same shape; names of the parts
    /// that the network does not have are reported too. Tensors of other parts are ignored.
    ///
    /// # Errors
    /// The list of mismatched tensors: missing, unexpected, or of another shape.
    pub fn load_parts(&mut self, named: &BTreeMap<String, Tensor>, parts: &[Part]) -> Result<()> {
        let mut problems = Vec::new();
        let mut copies = Vec::new();
        for &part in parts {
            let vars = self.part_variables(part);
            for (name, var) in &vars {
                match named.get(name) {
                    None => problems.push(format!("{name}: missing")),
                    Some(t) if t.size() != var.size() => problems.push(format!(
                        "{name}: expected shape {:?}, found {:?}",
                        var.size(),
                        t.size()
                    )),
                    Some(t) => copies.push((var.shallow_clone(), t.shallow_clone())),
                }
            }
            for name in named.keys().filter(|k| k.starts_with(part.prefix())) {
                if !vars.iter().any(|(n, _)| n == name) {
                    problems.push(format!("{name}: not a tensor of {}", self.describe()));
                }
            }
        }
        if !problems.is_empty() {
            bail!(
                "does not fit {}: {} mismatched tensor(s): {}",
                self.describe(),
                problems.len(),
                problems.join("; ")
            );
        }
        tch::no_grad(|| {
            for (mut var, t) in copies {
                var.copy_(&t.to_kind(var.kind()).to_device(var.device()));
            }
        });
        Ok(())
    }

    /// "resnet32_fe with 10 classes".
    pub fn describe(&self) -> String {
        format!("{} with {} classes", self.backbone_name, self.num_classes)
    }

    /// The device of the variables.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Float kind of the variables.
    pub fn kind(&self) -> Kind {
        self.lws.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet32_shapes_and_names() {
        tch::manual_seed(0);
        let net = Network::new("resnet32_fe", 3, 10, Device::Cpu).unwrap();
        let x = Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let f = net.features(&x, false);
        assert_eq!(f.size(), vec![2, 64]);
        assert_eq!(net.scale(&net.classify(&f)).size(), vec![2, 10]);
        let names: Vec<_> = net
            .part_variables(Part::Backbone)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"model.layer3.4.bn2.running_var".to_string()));
        assert!(names.contains(&"model.layer2.0.conv1.weight".to_string()));
        // 1 conv + 1 bn (4 tensors) stem, 15 blocks × (2 conv + 2 bn × 4)
        assert_eq!(names.len(), 5 + 15 * 10);
    }

    #[test]
    fn batch_norm_starts_at_identity() {
        let net = Network::new("resnet32_fe", 1, 10, Device::Cpu).unwrap();
        let vars = net.vs.variables();
        assert_eq!(
            vars["model.bn1.weight"].sum(Kind::Float).double_value(&[]),
            16.0
        );
        assert_eq!(
            vars["model.bn1.bias"]
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        assert_eq!(vars["lws_model.learned_norm"].size(), vec![1, 10]);
    }

    #[test]
    fn load_parts_lists_mismatches() {
        let mut net = Network::new("resnet32_fe", 1, 10, Device::Cpu).unwrap();
        let other = Network::new("resnet32_fe", 1, 100, Device::Cpu).unwrap();
        let named: BTreeMap<_, _> = other.vs.variables().into_iter().collect();
        let err = net
            .load_parts(&named, &[Part::Backbone, Part::Classifier])
            .unwrap_err()
            .to_string();
        assert!(err.contains("classifier.fc.weight: expected shape [10, 64], found [100, 64]"));
        assert!(err.contains("classifier.fc.bias"));
        assert!(!err.contains("model."), "{err}");
    }
}
