//! ImageNet ResNet-50/101/152 feature extractors (He et al., 2016) with torchvision's layout and
//! parameter names (`torchvision/models/resnet.py`, "ResNet v1.5": the stride of a
//! downsampling Bottleneck is on its 3×3 convolution), as the reference's `models/resnet.py`
//! uses them, so that torchvision and reference state dicts map one to one.
//!
//! Stem: `conv1` 7×7/2 (64, no bias), `bn1`, ReLU, 3×3/2 max pooling (padding 1); then
//! `layer1`…`layer4` of Bottleneck blocks (64, 128, 256, 512 planes, expansion 4; strides 1,
//! 2, 2, 2), each block `conv1` 1×1, `bn1`, `conv2` 3×3/stride, `bn2`, `conv3` 1×1, `bn3`, plus
//! `downsample.0` (1×1/stride conv) and `downsample.1` (BatchNorm) on the first block of a
//! layer; global average pooling to 2048 features. Initialisation as torchvision: convolutions
//! Kaiming-normal with fan-out and gain √2 (`kaiming_normal_(mode="fan_out",
//! nonlinearity="relu")`), BatchNorm γ = 1, β = 0.
use super::resnet_cifar::batch_norm;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Output features of the extractors (512 planes × expansion 4).
pub const FEATURES: i64 = 2048;

/// Bottleneck expansion: output channels = planes · 4.
pub const EXPANSION: i64 = 4;

/// Blocks per layer of torchvision's ResNet-50, -101 and -152, or `None` for another name.
pub fn layers_of(backbone: &str) -> Option<[usize; 4]> {
    match backbone {
        "resnet50_fe" => Some([3, 4, 6, 3]),
        "resnet101_fe" => Some([3, 4, 23, 3]),
        "resnet152_fe" => Some([3, 8, 36, 3]),
        _ => None,
    }
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

/// torchvision's `Bottleneck` (groups 1, base width 64, dilation 1):
/// `[B, c_in, H, W]` → `[B, 4·planes, H/stride, W/stride]`.
#[derive(Debug)]
pub struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Bottleneck {
    /// A block under `p` (`conv1`, `bn1`, …, `downsample.0`, `downsample.1`); the downsample
    /// branch exists when `stride ≠ 1` or `c_in ≠ 4·planes`, as in torchvision's `_make_layer`.
    pub fn new(p: nn::Path, c_in: i64, planes: i64, stride: i64) -> Self {
        let out = planes * EXPANSION;
        let downsample = (stride != 1 || c_in != out).then(|| {
            let d = &p / "downsample";
            (
                conv(&d / "0", c_in, out, 1, stride, 0),
                batch_norm(&d / "1", out),
            )
        });
        Bottleneck {
            conv1: conv(&p / "conv1", c_in, planes, 1, 1, 0),
            bn1: batch_norm(&p / "bn1", planes),
            conv2: conv(&p / "conv2", planes, planes, 3, stride, 1),
            bn2: batch_norm(&p / "bn2", planes),
            conv3: conv(&p / "conv3", planes, out, 1, 1, 0),
            bn3: batch_norm(&p / "bn3", out),
            downsample,
        }
    }
}

impl ModuleT for Bottleneck {
    /// torchvision's `Bottleneck.forward`, with its in-place ReLUs and `out += identity` (no
    /// extra activation tensors; BatchNorm's backward needs its input, not its output).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let out = relu_(x.apply(&self.conv1).apply_t(&self.bn1, train));
        let out = relu_(out.apply(&self.conv2).apply_t(&self.bn2, train));
        let mut out = out.apply(&self.conv3).apply_t(&self.bn3, train);
        match &self.downsample {
            Some((c, bn)) => out += x.apply(c).apply_t(bn, train),
            None => out += x,
        }
        relu_(out)
    }
}

/// torchvision's ResNet without `avgpool`'s flatten and `fc`: see the module documentation.
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<Bottleneck>,
}

impl ResNet {
    /// A ResNet with `layers[i]` Bottleneck blocks in `layer{i+1}`, under `p`, for
    /// `in_channels`-channel images.
    pub fn new(p: nn::Path, in_channels: i64, layers: [usize; 4]) -> Self {
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (l, (&n, (planes, stride))) in layers
            .iter()
            .zip([(64, 1), (128, 2), (256, 2), (512, 2)])
            .enumerate()
        {
            let layer = &p / format!("layer{}", l + 1);
            for i in 0..n {
                let s = if i == 0 { stride } else { 1 };
                blocks.push(Bottleneck::new(&layer / i, c_in, planes, s));
                c_in = planes * EXPANSION;
            }
        }
        ResNet {
            conv1: conv(&p / "conv1", in_channels, 64, 7, 2, 3),
            bn1: batch_norm(&p / "bn1", 64),
            blocks,
        }
    }

    /// The last feature map, `[B, C_in, H, W]` → `[B, 2048, ⌈H/32⌉, ⌈W/32⌉]` (the input of
    /// torchvision's `avgpool`).
    pub fn feature_map(&self, x: &Tensor, train: bool) -> Tensor {
        let mut out = relu_(x.apply(&self.conv1).apply_t(&self.bn1, train)).max_pool2d(
            [3, 3],
            [2, 2],
            [1, 1],
            [1, 1],
            false,
        );
        for b in &self.blocks {
            out = b.forward_t(&out, train);
        }
        out
    }
}

/// Global average pooling `[B, C, H, W]` → `[B, C]` (`AdaptiveAvgPool2d((1, 1))` + flatten).
pub fn global_average_pool(x: &Tensor) -> Tensor {
    x.mean_dim([2i64, 3].as_slice(), false, x.kind())
}

impl ModuleT for ResNet {
    /// `[B, C_in, H, W]` → `[B, 2048]` features.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        global_average_pool(&self.feature_map(x, train))
    }
}

/// ReLU in place (`nn.ReLU(inplace=True)`), returning the tensor.
fn relu_(mut t: Tensor) -> Tensor {
    let _ = t.relu_();
    t
}
