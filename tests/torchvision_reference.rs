//! The large-scale pieces against the venv's torchvision 0.26 and Pillow:
//! * the ImageNet transforms (resized crop, `Resize` + `CenterCrop`, ColorJitter's three
//!   operations, flip) are bit-identical to torchvision's on PIL images of the same pixels;
//! * JPEG decoding gives PIL's pixels (both use libjpeg-turbo with the same settings);
//! * ResNet-50 loads a torchvision state dict (`.pth` and safetensors), counts torchvision's
//!   parameters and computes torchvision's features within 1e-4;
//! * Places-LT's network (frozen ResNet-152 + extra Bottleneck) loads a reference-layout
//!   checkpoint with `state_dict_block` and computes the reference's logits.
mod common;

use common::python;
use mislas::checkpoint;
use mislas::data::files::decode_rgb;
use mislas::data::transforms::{
    adjust_brightness, adjust_contrast, adjust_saturation, flip_horizontal, resize_bilinear,
    resize_center_crop, Rect, RgbImage,
};
use mislas::model::{Network, Part};
use std::path::Path;
use tch::{Device, Tensor};

/// Writes a 97×61 RGB image of noise over gradients as PNG and torchvision's outputs on it.
const TRANSFORMS: &str = r#"
import sys, numpy as np, torch
from PIL import Image
import torchvision.transforms.functional as F
from torchvision import transforms as T
out = sys.argv[1]
rng = np.random.RandomState(3)
h, w = 61, 97
yy, xx = np.mgrid[0:h, 0:w]
base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 255 / (w + h)], -1)
img = np.clip(base + rng.randint(-40, 41, size=(h, w, 3)), 0, 255).astype(np.uint8)
pil = Image.fromarray(img, 'RGB')
pil.save(out + '/src.png')
def save(name, im):
    open(out + '/' + name, 'wb').write(np.asarray(im, dtype=np.uint8).tobytes())
# resized_crop(top, left, height, width, size): down, up, and mixed scaling.
save('rc_a', F.resized_crop(pil, 5, 7, 50, 80, [24, 24], T.InterpolationMode.BILINEAR))
save('rc_b', F.resized_crop(pil, 0, 0, 61, 97, [13, 29], T.InterpolationMode.BILINEAR))
save('rc_c', F.resized_crop(pil, 20, 30, 9, 11, [32, 32], T.InterpolationMode.BILINEAR))
# Evaluation: Resize(40) + CenterCrop(35); and Resize(64) + CenterCrop(56) (upscaling).
save('eval_a', T.Compose([T.Resize(40), T.CenterCrop(35)])(pil))
save('eval_b', T.Compose([T.Resize(64), T.CenterCrop(56)])(pil))
save('bright', F.adjust_brightness(pil, 1.37))
save('dark', F.adjust_brightness(pil, 0.61))
save('contrast_hi', F.adjust_contrast(pil, 1.33))
save('contrast_lo', F.adjust_contrast(pil, 0.64))
save('sat_hi', F.adjust_saturation(pil, 1.29))
save('sat_lo', F.adjust_saturation(pil, 0.66))
save('flip', F.hflip(pil))
# A JPEG of a smooth image, and PIL's decoding of it.
smooth = np.clip(base + 10 * np.sin(xx / 5.0)[..., None], 0, 255).astype(np.uint8)
Image.fromarray(smooth, 'RGB').save(out + '/smooth.jpg', quality=90)
save('smooth_pil', Image.open(out + '/smooth.jpg').convert('RGB'))
"#;

fn read_raw(dir: &Path, name: &str, w: usize, h: usize) -> RgbImage {
    let data = std::fs::read(dir.join(name)).unwrap();
    assert_eq!(data.len(), w * h * 3, "{name}");
    RgbImage {
        width: w,
        height: h,
        data,
    }
}

fn assert_same(ours: &RgbImage, theirs: &RgbImage, what: &str) {
    assert_eq!(
        (ours.width, ours.height),
        (theirs.width, theirs.height),
        "{what}"
    );
    let diffs = ours
        .data
        .iter()
        .zip(&theirs.data)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(diffs, 0, "{what}: {diffs} values differ from torchvision's");
}

#[test]
fn transforms_are_bit_identical_to_torchvision_on_pil() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    python(TRANSFORMS, &[d.to_str().unwrap()]);
    let src = decode_rgb(&d.join("src.png")).unwrap();
    assert_eq!((src.width, src.height), (97, 61));
    let full = |w, h| Rect { x: 0, y: 0, w, h };
    let rc = |r: Rect, w, h| resize_bilinear(&src, r, w, h, full(w, h));
    assert_same(
        &rc(
            Rect {
                x: 7,
                y: 5,
                w: 80,
                h: 50,
            },
            24,
            24,
        ),
        &read_raw(d, "rc_a", 24, 24),
        "resized crop 80×50 → 24×24",
    );
    assert_same(
        &rc(full(97, 61), 29, 13),
        &read_raw(d, "rc_b", 29, 13),
        "resize 97×61 → 29×13",
    );
    assert_same(
        &rc(
            Rect {
                x: 30,
                y: 20,
                w: 11,
                h: 9,
            },
            32,
            32,
        ),
        &read_raw(d, "rc_c", 32, 32),
        "resized crop 11×9 → 32×32",
    );
    assert_same(
        &resize_center_crop(&src, 40, 35),
        &read_raw(d, "eval_a", 35, 35),
        "Resize(40) + CenterCrop(35)",
    );
    assert_same(
        &resize_center_crop(&src, 64, 56),
        &read_raw(d, "eval_b", 56, 56),
        "Resize(64) + CenterCrop(56)",
    );
    type Op = fn(&mut RgbImage, f64);
    let ops: [(&str, Op, f64); 6] = [
        ("bright", adjust_brightness, 1.37),
        ("dark", adjust_brightness, 0.61),
        ("contrast_hi", adjust_contrast, 1.33),
        ("contrast_lo", adjust_contrast, 0.64),
        ("sat_hi", adjust_saturation, 1.29),
        ("sat_lo", adjust_saturation, 0.66),
    ];
    for (name, op, factor) in ops {
        let mut img = src.clone();
        op(&mut img, factor);
        assert_same(&img, &read_raw(d, name, 97, 61), name);
    }
    let mut img = src.clone();
    flip_horizontal(&mut img);
    assert_same(&img, &read_raw(d, "flip", 97, 61), "hflip");

    // JPEG: libjpeg-turbo with PIL's settings, so PIL's pixels exactly (tests/jpeg_pil.rs
    // checks every subsampling, grey and CMYK).
    let ours = decode_rgb(&d.join("smooth.jpg")).unwrap();
    let theirs = read_raw(d, "smooth_pil", 97, 61);
    assert_same(&ours, &theirs, "JPEG decoding against PIL's");
}

/// torchvision's ResNet-50 with BatchNorm statistics and affine parameters moved away from
/// their initial values, its state dict (`.pth` and a hand-written safetensors file), an input
/// and its 2048 features in eval mode.
const RESNET50: &str = r#"
import sys, json, struct, numpy as np, torch, torchvision
out = sys.argv[1]
torch.manual_seed(0)
m = torchvision.models.resnet50()
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.uniform_(-0.2, 0.2)
m.eval()
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    f = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
    feats = torch.flatten(m.avgpool(f), 1)
sd = m.state_dict()
torch.save(sd, out + '/resnet50.pth')
# safetensors by hand: u64 header length, JSON header, raw little-endian data.
header, blobs, off = {}, [], 0
for k, v in sd.items():
    a = v.contiguous().numpy()
    dt = {'float32': 'F32', 'int64': 'I64'}[str(a.dtype)]
    b = a.tobytes()
    header[k] = {'dtype': dt, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
    blobs.append(b); off += len(b)
h = json.dumps(header).encode()
h += b' ' * ((8 - len(h) % 8) % 8)
with open(out + '/resnet50.safetensors', 'wb') as fh:
    fh.write(struct.pack('<Q', len(h))); fh.write(h)
    for b in blobs: fh.write(b)
np.save(out + '/x.npy', x.numpy())
np.save(out + '/feats.npy', feats.numpy())
n = sum(p.numel() for k, p in m.named_parameters() if not k.startswith('fc.'))
json.dump({'backbone_params': n}, open(out + '/counts.json', 'w'))
"#;

#[test]
fn resnet50_matches_torchvision() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    python(RESNET50, &[d.to_str().unwrap()]);
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("counts.json")).unwrap()).unwrap();
    let x = Tensor::read_npy(d.join("x.npy")).unwrap();
    let expected = Tensor::read_npy(d.join("feats.npy")).unwrap();
    for file in ["resnet50.pth", "resnet50.safetensors"] {
        tch::manual_seed(1);
        let mut net = Network::new("resnet50_fe", 3, 10, Device::Cpu).unwrap();
        assert_eq!(
            net.parameter_count(Part::Backbone),
            counts["backbone_params"].as_i64().unwrap()
        );
        net.load_pretrained_backbone(&d.join(file)).unwrap();
        let feats = tch::no_grad(|| net.features(&x, false));
        assert_eq!(feats.size(), [2, 2048]);
        let diff = (&feats - &expected).abs().max().double_value(&[]);
        assert!(
            diff < 1e-4,
            "{file}: features differ from torchvision's by {diff}"
        );
    }
}

/// Places-LT as the reference builds it: torchvision's ResNet-152 (frozen, eval) → extra
/// Bottleneck(2048, 512) → global average pooling → Linear(2048, K), saved as the reference's
/// stage-1 checkpoint (`state_dict_model`, `state_dict_block`, `state_dict_classifier` under
/// DataParallel's `module.`), with an input and its eval-mode logits.
const PLACES: &str = r#"
import sys, numpy as np, torch, torchvision
from torchvision.models.resnet import Bottleneck
out = sys.argv[1]
torch.manual_seed(0)
model = torchvision.models.resnet152()
model.fc = torch.nn.Identity()
block = Bottleneck(2048, 512)
clf = torch.nn.Linear(2048, 7)
with torch.no_grad():
    for mod in list(model.modules()) + list(block.modules()):
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.uniform_(-0.2, 0.2)
model.eval(); block.eval(); clf.eval()
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    m = model
    fmap = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
    logits = clf(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(block(fmap), 1), 1))
dp = torch.nn.DataParallel
torch.save({'epoch': 30,
            'state_dict_model': dp(model).state_dict(),
            'state_dict_block': dp(block).state_dict(),
            'state_dict_classifier': {'module.fc.weight': clf.weight, 'module.fc.bias': clf.bias},
            'best_acc1': torch.tensor(40.0), 'its_ece': 10.0}, out + '/places.pth.tar')
np.save(out + '/x.npy', x.numpy())
np.save(out + '/logits.npy', logits.numpy())
"#;

#[test]
fn places_network_matches_the_reference_layout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    python(PLACES, &[d.to_str().unwrap()]);
    let ck = checkpoint::load(&d.join("places.pth.tar")).unwrap();
    assert!(ck.tensors.contains_key("block.conv2.weight"));
    let mut net = Network::build("resnet152_fe", 3, 7, true, Device::Cpu).unwrap();
    assert_eq!(
        net.weight_parts(),
        [Part::Backbone, Part::Block, Part::Classifier]
    );
    net.load_parts(&ck.tensors, &net.weight_parts()).unwrap();
    // The backbone is frozen from the start; stage 1 trains block and classifier.
    assert!(net
        .part_variables(Part::Backbone)
        .iter()
        .all(|(_, t)| !t.requires_grad()));
    assert!(!net.part_parameters(Part::Block).is_empty());
    let x = Tensor::read_npy(d.join("x.npy")).unwrap();
    let expected = Tensor::read_npy(d.join("logits.npy")).unwrap();
    let logits = tch::no_grad(|| net.classify(&net.features(&x, false)));
    let diff = (&logits - &expected).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "Places logits differ from PyTorch's by {diff}");
}

#[test]
fn missing_pretrained_weights_say_what_is_expected() {
    let mut net = Network::build("resnet50_fe", 3, 5, true, Device::Cpu).unwrap();
    let err = format!(
        "{:#}",
        net.load_pretrained_backbone(Path::new("/nonexistent/resnet152.pth"))
            .unwrap_err()
    );
    assert!(
        err.contains("/nonexistent/resnet152.pth")
            && err.contains("download.pytorch.org/models/resnet152")
            && err.contains("pretrained_weights"),
        "{err}"
    );
}
