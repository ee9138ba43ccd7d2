//! The network of both stages: backbone (feature extractor) → linear classifier → learnable
//! weight scaling (LWS).
//!
//! All variables live in one [`nn::VarStore`] under prefixes that mirror the reference's
//! checkpoint dictionaries: `model.` (`state_dict_model`), `classifier.` (`state_dict_classifier`),
//! `lws_model.` (`state_dict_lws_model`) and, for Places-LT, `block.` (`state_dict_block`).
//!
//! Places-LT (reference `train_stage1.py` with `dataset == 'places'`): the backbone is an
//! ImageNet-pretrained ResNet-152, frozen and always in eval mode; its last feature map goes
//! through one extra Bottleneck (2048 → 512 → 2048, no downsampling) that stage 1 trains with
//! the classifier, then global average pooling; stage 2's shift learning runs that block (not
//! the backbone) in train mode.
pub mod pth;
pub mod resnet;
pub mod resnet_cifar;

use crate::config::ClassifierKind;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

/// The feature extractor of a [`Network`].
#[derive(Debug)]
enum Backbone {
    /// ResNet-32 for small images.
    Cifar(resnet_cifar::ResNetCifar),
    /// ResNet-50/101/152.
    ImageNet(resnet::ResNet),
}

/// The scale s of the normalised classifier's cosine logits: s = 30 of LDAM-DRW's `LDAMLoss`
/// (Cao et al., NeurIPS 2019, §3; `losses.py`, `s=30`).
pub const NORMED_SCALE: f64 = 30.0;

/// The classifier of a [`Network`].
#[derive(Debug)]
enum Classifier {
    /// `nn.Linear(F, K)`: `classifier.fc.weight` `[K, F]`, `classifier.fc.bias` `[K]`.
    Linear(nn::Linear),
    /// LDAM-DRW's `NormedLinear` (`models/resnet_cifar.py`): `classifier.fc.weight` `[K, F]`, no
    /// bias; logits s·cos(x, w_c) with s = [`NORMED_SCALE`]. The authors keep the weight as
    /// `[F, K]` and apply s inside `LDAMLoss`; here it is stored `[K, F]` like the linear one and
    /// s is part of the logits, so that evaluation's softmax (NLL, ECE) sees the logits the loss
    /// sees — the loss and its gradients are the same.
    Normed(Tensor),
}

impl Backbone {
    /// The backbone named `backbone` under `path` (`model.`), with its feature width F.
    ///
    /// # Errors
    /// An unknown backbone.
    fn new(path: nn::Path, backbone: &str, in_channels: i64) -> Result<(Self, i64)> {
        Ok(match (backbone, resnet::layers_of(backbone)) {
            ("resnet32_fe", _) => (
                Backbone::Cifar(resnet_cifar::ResNetCifar::new(path, in_channels, 5)),
                resnet_cifar::FEATURES,
            ),
            (_, Some(layers)) => (
                Backbone::ImageNet(resnet::ResNet::new(path, in_channels, layers)),
                resnet::FEATURES,
            ),
            (other, None) => bail!(
                "unknown backbone '{other}' (resnet32_fe, resnet50_fe, resnet101_fe, \
                 resnet152_fe)"
            ),
        })
    }
}

impl Classifier {
    /// A freshly drawn classifier of `kind` from F = `feat` features to K = `num_classes`
    /// logits under `path` (`classifier.fc`); see [`Network::build_with`].
    fn new(path: nn::Path, feat: i64, num_classes: i64, kind: ClassifierKind) -> Self {
        match kind {
            ClassifierKind::Linear => {
                let bound = 1.0 / (feat as f64).sqrt();
                Classifier::Linear(nn::linear(
                    path,
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
                ))
            }
            ClassifierKind::Normed => {
                let w = (path).var(
                    "weight",
                    &[num_classes, feat],
                    nn::Init::Uniform { lo: -1.0, up: 1.0 },
                );
                tch::no_grad(|| {
                    let unit = &w / w.norm_scalaropt_dim(2, [1], true);
                    w.shallow_clone().copy_(&unit);
                });
                Classifier::Normed(w)
            }
        }
    }
}

/// Backbone, classifier and LWS of one experiment (and the extra block of Places-LT).
#[derive(Debug)]
pub struct Network {
    /// All variables (`model.*`, `classifier.*`, `lws_model.*`, `block.*`).
    pub vs: nn::VarStore,
    backbone: Backbone,
    /// Places-LT's extra Bottleneck on the frozen backbone's feature map.
    block: Option<resnet::Bottleneck>,
    classifier: Classifier,
    /// LWS scales s ∈ R^K, shape `[1, K]`, initialised to ones (reference
    /// `LearnableWeightScaling.learned_norm`).
    lws: Tensor,
    /// Number of classes K.
    pub num_classes: i64,
    /// Backbone name (`resnet32_fe`, `resnet50_fe`, …).
    pub backbone_name: String,
    /// Convolution weights and inputs in channels-last layout ([`Network::to_channels_last`]).
    channels_last: bool,
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
    /// `block.`: Places-LT's extra Bottleneck (`conv1`, `bn1`, …, `bn3`).
    Block,
}

impl Part {
    /// Variable-name prefix of the part.
    pub fn prefix(self) -> &'static str {
        match self {
            Part::Backbone => "model.",
            Part::Classifier => "classifier.",
            Part::Lws => "lws_model.",
            Part::Block => "block.",
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
    /// An unknown backbone.
    pub fn new(backbone: &str, in_channels: i64, num_classes: i64, device: Device) -> Result<Self> {
        Self::build(backbone, in_channels, num_classes, false, device)
    }

    /// As [`Network::build`] with the classifier `kind`: [`ClassifierKind::Normed`] is
    /// LDAM-DRW's cosine classifier (see [`NORMED_SCALE`]), its weight drawn as the authors'
    /// `uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)`: each class vector uniform in [−1, 1]^F
    /// scaled to norm 1.
    ///
    /// # Errors
    /// As [`Network::build`].
    pub fn build_with(
        backbone: &str,
        in_channels: i64,
        num_classes: i64,
        extra_block: bool,
        kind: ClassifierKind,
        device: Device,
    ) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (net, feat) = Backbone::new(&root / "model", backbone, in_channels)?;
        if extra_block && feat != resnet::FEATURES {
            bail!("the Places-LT block needs a 2048-feature backbone, not {backbone}");
        }
        let block = extra_block
            .then(|| resnet::Bottleneck::new(&root / "block", feat, feat / resnet::EXPANSION, 1));
        let classifier = Classifier::new(&root / "classifier" / "fc", feat, num_classes, kind);
        let lws = (&root / "lws_model").ones("learned_norm", &[1, num_classes]);
        let net = Network {
            vs,
            backbone: net,
            block,
            classifier,
            lws,
            num_classes,
            backbone_name: backbone.to_owned(),
            channels_last: false,
        };
        if net.block.is_some() {
            net.freeze(Part::Backbone);
        }
        Ok(net)
    }

    /// As [`Network::new`]; with `extra_block` the network is Places-LT's: frozen backbone,
    /// extra Bottleneck(2048, 512) under `block.` (see the module documentation).
    ///
    /// # Errors
    /// An unknown backbone, or `extra_block` with `resnet32_fe` (the block needs 2048 input
    /// channels).
    pub fn build(
        backbone: &str,
        in_channels: i64,
        num_classes: i64,
        extra_block: bool,
        device: Device,
    ) -> Result<Self> {
        Self::build_with(
            backbone,
            in_channels,
            num_classes,
            extra_block,
            ClassifierKind::Linear,
            device,
        )
    }

    /// Features `[B, F]` of images `[B, C, H, W]`; `train` selects BatchNorm's batch
    /// statistics (and updates its running statistics) instead of the running ones.
    ///
    /// With Places-LT's extra block, the backbone runs in eval mode without gradient whatever
    /// `train` says (reference: `model.eval()`, `with torch.no_grad(): feat_a = model(images)`)
    /// and `train` applies to the block.
    pub fn features(&self, images: &Tensor, train: bool) -> Tensor {
        let converted;
        let images = if self.channels_last && images.dim() == 4 {
            converted = channels_last(images);
            &converted
        } else {
            images
        };
        match (&self.backbone, &self.block) {
            (Backbone::Cifar(n), _) => n.forward_t(images, train),
            (Backbone::ImageNet(n), None) => n.forward_t(images, train),
            (Backbone::ImageNet(n), Some(block)) => {
                let map = tch::no_grad(|| n.feature_map(images, false));
                resnet::global_average_pool(&block.forward_t(&map, train))
            }
        }
    }

    /// Moves every 4-D variable (the convolution weights) to channels-last memory layout, in
    /// place, and makes [`Network::features`] convert its images likewise
    /// (`model.to(memory_format=torch.channels_last)` and the same on each batch). The values
    /// are unchanged; convolutions then run in NHWC, which cuDNN's Tensor Core kernels prefer,
    /// and the gradients and momentum buffers follow the weights' layout. Call it after the
    /// weights are loaded and before the optimizer takes the parameters.
    pub fn to_channels_last(&mut self) {
        tch::no_grad(|| {
            for (_, mut v) in self.vs.variables() {
                if v.dim() == 4 {
                    let nhwc = channels_last(&v);
                    v.set_data(&nhwc);
                }
            }
        });
        self.channels_last = true;
    }

    /// Whether [`Network::to_channels_last`] was applied.
    pub fn is_channels_last(&self) -> bool {
        self.channels_last
    }

    /// Whether the network has Places-LT's extra block (and a frozen backbone).
    pub fn has_block(&self) -> bool {
        self.block.is_some()
    }

    /// The parts this network has, without LWS: backbone, block (Places-LT), classifier.
    pub fn weight_parts(&self) -> Vec<Part> {
        let mut parts = vec![Part::Backbone];
        if self.block.is_some() {
            parts.push(Part::Block);
        }
        parts.push(Part::Classifier);
        parts
    }

    /// The parts stage 1 trains: backbone and classifier, or, with the extra block, block and
    /// classifier (reference: SGD over `block.parameters()` and `classifier.parameters()`).
    pub fn stage1_parts(&self) -> Vec<Part> {
        if self.block.is_some() {
            vec![Part::Block, Part::Classifier]
        } else {
            vec![Part::Backbone, Part::Classifier]
        }
    }

    /// Stops gradients to the variables of a part.
    pub fn freeze(&self, part: Part) {
        for (_, t) in self.part_variables(part) {
            let _ = t.set_requires_grad(false);
        }
    }

    /// Loads ImageNet-pretrained backbone weights (Places-LT): a torchvision ResNet state dict
    /// saved with `torch.save` (`.pth`, read by [`pth::read_pth`]) or as safetensors. Names
    /// are torchvision's (`conv1.weight`, `layer1.0.downsample.0.weight`, …), optionally with
    /// DataParallel's `module.` or a `state_dict_model.` prefix; `fc.*` and
    /// `num_batches_tracked` are ignored.
    ///
    /// # Errors
    /// The file is missing (the message says which file is expected and where to get it),
    /// unreadable, or its tensors do not fit the backbone (listed).
    pub fn load_pretrained_backbone(&mut self, path: &Path) -> Result<()> {
        if !path.is_file() {
            bail!(
                "pretrained_weights: no file at '{}'. Places-LT starts from an \
                 ImageNet-pretrained {}: torchvision's state dict, e.g. \
                 https://download.pytorch.org/models/resnet152-394f9c45.pth \
                 (ResNet152_Weights.IMAGENET1K_V1; the reference's resnet152-b121ed2d.pth \
                 works too), as .pth or .safetensors; set pretrained_weights to its path",
                path.display(),
                self.backbone_name
            );
        }
        let raw: Vec<(String, Tensor)> =
            if path.extension().and_then(|e| e.to_str()) == Some("safetensors") {
                Tensor::read_safetensors(path).with_context(|| {
                    format!(
                        "{}: expected a safetensors file of a torchvision ResNet",
                        path.display()
                    )
                })?
            } else {
                pth::read_pth(path)?.tensors
            };
        let mut named = BTreeMap::new();
        for (k, t) in raw {
            let k = k.strip_prefix("state_dict_model.").unwrap_or(&k);
            let k = k.strip_prefix("module.").unwrap_or(k);
            if k.starts_with("fc.") || k.ends_with("num_batches_tracked") {
                continue;
            }
            named.insert(format!("model.{k}"), t.to_kind(Kind::Float));
        }
        self.load_parts(&named, &[Part::Backbone])
            .with_context(|| format!("pretrained weights {}", path.display()))
    }

    /// Draws the classifier anew, as [`Network::new`] does: the linear one's weight `[K, F]`
    /// Kaiming-normal (std √2/√F), bias `[K]` U(−1/√F, 1/√F) (PyTorch's `nn.Linear` default);
    /// the normed one's class vectors uniform in [−1, 1]^F scaled to norm 1 (LDAM-DRW's
    /// `NormedLinear`), from torch's generator. cRT's "re-initialise the classifier" (Kang et
    /// al., ICLR 2020, §4).
    pub fn reset_classifier(&mut self) {
        tch::no_grad(|| match &self.classifier {
            Classifier::Linear(linear) => {
                let mut weight = linear.ws.shallow_clone();
                let bound = 1.0 / (weight.size()[1] as f64).sqrt();
                nn::init::DEFAULT_KAIMING_NORMAL.set(&mut weight);
                if let Some(bias) = &linear.bs {
                    let _ = bias.shallow_clone().uniform_(-bound, bound);
                }
            }
            Classifier::Normed(w) => {
                let _ = w.shallow_clone().uniform_(-1.0, 1.0);
                let unit = w / w.norm_scalaropt_dim(2, [1], true);
                w.shallow_clone().copy_(&unit);
            }
        });
    }

    /// The kind of the classifier.
    pub fn classifier_kind(&self) -> ClassifierKind {
        match self.classifier {
            Classifier::Linear(_) => ClassifierKind::Linear,
            Classifier::Normed(_) => ClassifierKind::Normed,
        }
    }

    /// Classifier logits `[B, K]` of features `[B, F]`: W·x + b, or for the normed classifier
    /// s·⟨x/‖x‖, w_c/‖w_c‖⟩ with s = [`NORMED_SCALE`] (LDAM-DRW's `NormedLinear`, whose
    /// `F.normalize` divides by max(‖·‖, 1e-12)).
    pub fn classify(&self, features: &Tensor) -> Tensor {
        match &self.classifier {
            Classifier::Linear(linear) => linear.forward(features),
            Classifier::Normed(w) => {
                let unit = |t: &Tensor| t / t.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
                unit(features).matmul(&unit(w).tr()) * NORMED_SCALE
            }
        }
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

    /// Stops gradients to the backbone and the extra block (stage 2). BatchNorm running
    /// statistics still move when they run in train mode (shift learning).
    pub fn freeze_backbone(&self) {
        self.freeze(Part::Backbone);
        self.freeze(Part::Block);
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
        if let Some(msg) = self.classifier_mismatch(named, parts) {
            bail!("{msg}");
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

    /// Tensors of the other classifier kind (a bias where this one has none, or none where it
    /// has one), said in words: the linear classifier has `classifier.fc.bias`, the normed one
    /// (LDAM) has not.
    fn classifier_mismatch(
        &self,
        named: &BTreeMap<String, Tensor>,
        parts: &[Part],
    ) -> Option<String> {
        let has_classifier = named
            .keys()
            .any(|k| k.starts_with(Part::Classifier.prefix()));
        if !parts.contains(&Part::Classifier) || !has_classifier {
            return None;
        }
        let theirs = if named.contains_key("classifier.fc.bias") {
            ClassifierKind::Linear
        } else {
            ClassifierKind::Normed
        };
        let ours = self.classifier_kind();
        (theirs != ours).then(|| {
            format!(
                "the checkpoint's classifier is {theirs} ({}) but this configuration builds a \
                 {ours} one: set classifier {theirs} (a shared key: the same in both stages)",
                match theirs {
                    ClassifierKind::Linear => "weight and bias",
                    ClassifierKind::Normed => "cosine classifier of loss ldam, no bias",
                }
            )
        })
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

/// The same `[N, C, H, W]` values in channels-last memory layout: strides
/// `[H·W·C, 1, W·C, C]` (`x.contiguous(memory_format=torch.channels_last)`, built here as a
/// permute to NHWC, a contiguous copy, and the inverse permute).
///
/// # Panics
/// If `x` is not 4-D.
pub fn channels_last(x: &Tensor) -> Tensor {
    assert_eq!(x.dim(), 4, "channels-last needs a 4-D tensor");
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
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

    #[test]
    fn channels_last_keeps_the_values_and_changes_the_layout() {
        tch::manual_seed(5);
        let mut net = Network::new("resnet32_fe", 3, 4, Device::Cpu).unwrap();
        let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let before = tch::no_grad(|| net.classify(&net.features(&x, false)));
        let w_before = net.vs.variables()["model.conv1.weight"].copy();
        net.to_channels_last();
        let w = &net.vs.variables()["model.conv1.weight"];
        // [16, 3, 3, 3] in NHWC order: strides [H·W·C, 1, W·C, C].
        assert_eq!(w.stride(), vec![27, 1, 9, 3]);
        assert_eq!(
            w.f_sub(&w_before).unwrap().abs().max().double_value(&[]),
            0.0
        );
        let after = tch::no_grad(|| net.classify(&net.features(&x, false)));
        // NHWC convolutions sum in another order: equal to float rounding, relative to the
        // logits' size.
        let diff = (&after - &before).abs().max().double_value(&[]);
        let size = before.abs().max().double_value(&[]);
        assert!(
            diff <= 1e-5 * size.max(1.0),
            "logits moved by {diff} (max |logit| {size})"
        );
        let y = channels_last(&x);
        assert_eq!(y.stride(), vec![768, 1, 48, 3]);
        assert_eq!(y.size(), x.size());
    }
}

#[cfg(test)]
mod normed_tests {
    use super::*;

    fn normed(classes: i64) -> Network {
        tch::manual_seed(1);
        Network::build_with(
            "resnet32_fe",
            1,
            classes,
            false,
            ClassifierKind::Normed,
            Device::Cpu,
        )
        .unwrap()
    }

    /// The normed classifier: one weight `[K, F]` of unit rows, no bias; logits 30·cos, checked
    /// by hand in f64 on two features.
    #[test]
    fn normed_logits_are_scaled_cosines() {
        let net = normed(3);
        let vars = net.part_variables(Part::Classifier);
        assert_eq!(vars.len(), 1);
        assert_eq!(vars[0].0, "classifier.fc.weight");
        let w = vars[0].1.to_kind(Kind::Double);
        for n in Vec::<f64>::try_from(w.norm_scalaropt_dim(2, [1], false)).unwrap() {
            assert!((n - 1.0).abs() < 1e-6, "{n}");
        }
        let x = Tensor::randn([2, 64], (Kind::Float, Device::Cpu));
        let z = Vec::<Vec<f64>>::try_from(net.classify(&x).to_kind(Kind::Double)).unwrap();
        let xs = Vec::<Vec<f64>>::try_from(x.to_kind(Kind::Double)).unwrap();
        let ws = Vec::<Vec<f64>>::try_from(w).unwrap();
        for (b, xb) in xs.iter().enumerate() {
            for (c, wc) in ws.iter().enumerate() {
                let dot: f64 = xb.iter().zip(wc).map(|(a, b)| a * b).sum();
                let nx = xb.iter().map(|a| a * a).sum::<f64>().sqrt();
                let nw = wc.iter().map(|a| a * a).sum::<f64>().sqrt();
                let want = NORMED_SCALE * dot / (nx * nw);
                assert!((z[b][c] - want).abs() < 1e-4, "{} vs {want}", z[b][c]);
            }
        }
        assert_eq!(net.classifier_kind(), ClassifierKind::Normed);
    }

    /// cRT's re-draw keeps unit rows; a checkpoint of the other classifier kind is refused
    /// naming the `classifier` key, both ways.
    #[test]
    fn normed_checkpoints_and_redraw() {
        let mut net = normed(4);
        let before = net.part_variables(Part::Classifier)[0].1.copy();
        net.reset_classifier();
        let after = net.part_variables(Part::Classifier)[0].1.copy();
        assert!(!after.equal(&before));
        let norms = Vec::<f64>::try_from(after.to_kind(Kind::Double).norm_scalaropt_dim(
            2,
            [1],
            false,
        ))
        .unwrap();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-6), "{norms:?}");
        let linear = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
        let named =
            |n: &Network| -> BTreeMap<String, Tensor> { n.vs.variables().into_iter().collect() };
        let parts = [Part::Backbone, Part::Classifier];
        let e = net
            .load_parts(&named(&linear), &parts)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("checkpoint's classifier is linear") && e.contains("set classifier linear"),
            "{e}"
        );
        let mut linear = linear;
        let e = linear
            .load_parts(&named(&net), &parts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("set classifier normed"), "{e}");
        // The same kind loads.
        let other = normed(4);
        net.load_parts(&named(&other), &parts).unwrap();
    }
}
