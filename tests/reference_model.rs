//! Our ResNet-32 against PyTorch's: the venv's PyTorch builds the reference architecture
//! (`resnet32_fe` + `Classifier` of the MiSLAS release), saves a checkpoint the way the release
//! does (`torch.save` of DataParallel state dicts in a `.pth.tar`), an input batch and its eval-mode
//! logits; mislas loads the checkpoint, must count the same parameters and compute the same
//! logits. `mislas eval` then evaluates that checkpoint end to end.
mod common;

use common::python;
use mislas::checkpoint::{self, Origin};
use mislas::model::{Network, Part};
use std::path::Path;
use std::process::Command;
use tch::{Device, Kind, Tensor};

/// The reference's CIFAR ResNet (option-A shortcuts) and classifier, written out in PyTorch.
const SCRIPT: &str = r#"
import sys, json, torch, torch.nn as nn, torch.nn.functional as F, numpy as np
out = sys.argv[1]
in_ch = int(sys.argv[2])

class Lambda(nn.Module):
    def __init__(self, f):
        super().__init__(); self.f = f
    def forward(self, x):
        return self.f(x)

class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = Lambda(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0))
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))

class ResNetFE(nn.Module):
    def __init__(self, n=5):
        super().__init__()
        self.cin = 16
        self.conv1 = nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make(16, n, 1)
        self.layer2 = self._make(32, n, 2)
        self.layer3 = self._make(64, n, 2)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
    def _make(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.cin, planes, s)); self.cin = planes
        return nn.Sequential(*layers)
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return out.view(out.size(0), -1)

class Classifier(nn.Module):
    def __init__(self, feat_in, num_classes):
        super().__init__()
        self.fc = nn.Linear(feat_in, num_classes)
        nn.init.kaiming_normal_(self.fc.weight)
    def forward(self, x):
        return self.fc(x)

torch.manual_seed(0)
model, clf = ResNetFE(), Classifier(64, 10)
# Move BatchNorm statistics away from their initial values, as training would.
model.train()
with torch.no_grad():
    for _ in range(3):
        model(torch.randn(16, in_ch, 28, 28) * 2 + 0.5)
model.eval(); clf.eval()
x = torch.randn(4, in_ch, 28, 28)
with torch.no_grad():
    logits = clf(model(x))
torch.save({'epoch': 200,
            'state_dict_model': nn.DataParallel(model).state_dict(),
            'state_dict_classifier': nn.DataParallel(clf).state_dict(),
            'best_acc1': torch.tensor(55.5),
            'its_ece': 12.25}, out + '/model_best.pth.tar')
np.save(out + '/x.npy', x.numpy())
np.save(out + '/logits.npy', logits.numpy())
json.dump({'model_params': sum(p.numel() for p in model.parameters()),
           'classifier_params': sum(p.numel() for p in clf.parameters())},
          open(out + '/counts.json', 'w'))
"#;

fn write_reference(dir: &Path, in_channels: usize) {
    python(SCRIPT, &[dir.to_str().unwrap(), &in_channels.to_string()]);
}

#[test]
fn resnet32_matches_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    write_reference(dir.path(), 1);
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("counts.json")).unwrap())
            .unwrap();
    let mut net = Network::new("resnet32_fe", 1, 10, Device::Cpu).unwrap();
    assert_eq!(
        net.parameter_count(Part::Backbone),
        counts["model_params"].as_i64().unwrap()
    );
    assert_eq!(
        net.parameter_count(Part::Classifier),
        counts["classifier_params"].as_i64().unwrap()
    );

    let ck = checkpoint::load(&dir.path().join("model_best.pth.tar")).unwrap();
    assert_eq!(ck.origin, Origin::Reference);
    net.load_parts(&ck.tensors, &[Part::Backbone, Part::Classifier])
        .unwrap();
    let x = Tensor::read_npy(dir.path().join("x.npy")).unwrap();
    let expected = Tensor::read_npy(dir.path().join("logits.npy")).unwrap();
    let logits = tch::no_grad(|| net.scale(&net.classify(&net.features(&x, false))));
    let diff = (&logits - &expected).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "logits differ from PyTorch's by {diff}");
    assert_eq!(logits.kind(), Kind::Float);
}

#[test]
fn reference_checkpoint_of_other_class_count_lists_tensors() {
    let dir = tempfile::tempdir().unwrap();
    write_reference(dir.path(), 1);
    let ck = checkpoint::load(&dir.path().join("model_best.pth.tar")).unwrap();
    let mut net = Network::new("resnet32_fe", 1, 100, Device::Cpu).unwrap();
    let err = format!(
        "{:#}",
        net.load_parts(&ck.tensors, &[Part::Backbone, Part::Classifier])
            .unwrap_err()
    );
    assert!(
        err.contains("classifier.fc.weight: expected shape [100, 64], found [10, 64]")
            && err.contains("classifier.fc.bias: expected shape [100], found [10]"),
        "{err}"
    );
}

#[test]
fn eval_command_reads_reference_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    write_reference(dir.path(), 1);
    let ckpt = dir.path().join("model_best.pth.tar");
    let out = Command::new(env!("CARGO_BIN_EXE_mislas"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "eval",
            "--cfg",
            "presets/fashion_mnist/fashion_mnist_imb001_stage2_mislas.yaml",
            "resume",
            ckpt.to_str().unwrap(),
            "device",
            "cpu",
            "eval_batch_size",
            "1000",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("* Acc@1 ") && stdout.contains("* ECE "),
        "{stdout}"
    );
    let json = stdout.lines().last().unwrap();
    let report: mislas::metrics::EvalReport = serde_json::from_str(json).unwrap();
    assert_eq!(report.samples, 10_000);
    assert_eq!(report.bins.len(), 15);
    let binned: usize = report.bins.iter().map(|b| b.count).sum();
    assert_eq!(binned, 10_000);
}
