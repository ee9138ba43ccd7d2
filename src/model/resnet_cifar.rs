//! ResNet-32 feature extractor for small images (He et al., 2016, §4.2; the reference's
//! `resnet32_fe` in `models/resnet_cifar.py`).
//!
//! 3 stages of 5 basic blocks with 16/32/64 channels, option-A shortcuts (stride-2 subsampling
//! plus zero channel padding, no parameters), Kaiming-normal initialisation of every convolution
//! (`kaiming_normal_` default: fan-in, gain √2), BatchNorm γ = 1 and β = 0 as PyTorch initialises
//! them, global average pooling to 64 features. Parameter names follow the reference
//! (`conv1`, `bn1`, `layer1.0.conv1`, …) so its state dicts map one to one.
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Output features of the extractor.
pub const FEATURES: i64 = 64;

fn conv3x3(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ws_init: nn::init::DEFAULT_KAIMING_NORMAL,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, 3, cfg)
}

/// BatchNorm2d initialised as PyTorch does (γ = 1, β = 0, momentum 0.1, ε = 1e-5).
pub fn batch_norm(p: nn::Path, c: i64) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(p, c, cfg)
}

#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    /// Option-A shortcut: channels to pad on each side, when the block changes shape.
    pad: Option<i64>,
}

impl BasicBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        BasicBlock {
            conv1: conv3x3(&p / "conv1", c_in, c_out, stride),
            bn1: batch_norm(&p / "bn1", c_out),
            conv2: conv3x3(&p / "conv2", c_out, c_out, 1),
            bn2: batch_norm(&p / "bn2", c_out),
            pad: (stride != 1 || c_in != c_out).then_some(c_out / 4),
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let out = x
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        let shortcut = match self.pad {
            // F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
            Some(pad) => x
                .slice(2, 0, None, 2)
                .slice(3, 0, None, 2)
                .constant_pad_nd([0, 0, 0, 0, pad, pad]),
            None => x.shallow_clone(),
        };
        (out + shortcut).relu()
    }
}

/// ResNet-32 without its classifier: `[B, C_in, H, W]` → `[B, 64]`.
#[derive(Debug)]
pub struct ResNetCifar {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<BasicBlock>,
}

impl ResNetCifar {
    /// Builds ResNet-(6n+2) with `n` blocks per stage (n = 5 for ResNet-32) under `p`.
    pub fn new(p: nn::Path, in_channels: i64, n: usize) -> Self {
        let mut blocks = Vec::with_capacity(3 * n);
        let mut c_in = 16;
        for (stage, (c_out, stride)) in [(16, 1), (32, 2), (64, 2)].into_iter().enumerate() {
            let layer = &p / format!("layer{}", stage + 1);
            for i in 0..n {
                let s = if i == 0 { stride } else { 1 };
                blocks.push(BasicBlock::new(&layer / i, c_in, c_out, s));
                c_in = c_out;
            }
        }
        ResNetCifar {
            conv1: conv3x3(&p / "conv1", in_channels, 16, 1),
            bn1: batch_norm(&p / "bn1", 16),
            blocks,
        }
    }
}

impl ModuleT for ResNetCifar {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut out = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        for b in &self.blocks {
            out = b.forward_t(&out, train);
        }
        // F.avg_pool2d(out, out.size()[3]) then flatten: global average pooling.
        out.mean_dim([2i64, 3].as_slice(), false, out.kind())
    }
}
