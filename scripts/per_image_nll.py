#!/usr/bin/env python3
"""Per-image NLL of a mislas ResNet-32 checkpoint on Fashion-MNIST's test set, in PyTorch.

    .venv/bin/python scripts/per_image_nll.py CHECKPOINT.safetensors [DATA_PATH]

An independent check of the NLL `mislas` reports for a run (its `metrics.jsonl`): the venv's
PyTorch rebuilds the release's `resnet32_fe` + `Classifier` (option-A shortcuts; the same
architecture as tests/reference_model.rs), loads the checkpoint's tensors (`model.*`,
`classifier.fc.*`, and `lws_model.learned_norm` when the run is a MiSLAS or LWS stage 2:
logits = s ⊙ (W f + b), the reference's `LearnableWeightScaling`), evaluates the 10,000 test
images with the evaluation transform (`ToTensor()`, `Normalize(0.2860, 0.3530)`) in eval mode,
and prints the mean NLL (−log_softmax(logits)[y], nats) with where it comes from: the
quantiles of the per-image NLL, the share of the sum carried by the largest ones, the classes
those images are predicted as, and the classifier's scales and row norms.

DATA_PATH holds `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz` (default
/usr/share/datasets/fashion-mnist). The checkpoint is read with the standard library (the
safetensors layout: an 8-byte little-endian header length, a JSON header, the raw tensors).
"""
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
MEAN, STD = 0.2860, 0.3530


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, v in header.items():
        if name == "__metadata__" or v["dtype"] not in DTYPES:
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


class Block(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if (stride != 1 or cin != planes) else None

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


class ResNet32(nn.Module):
    def __init__(self, in_ch, n=5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin, layers = 16, []
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(Block(cin, planes, s))
                cin = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(out, out.size(3)).flatten(1)


def main():
    ckpt = sys.argv[1]
    data = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/datasets/fashion-mnist"
    t = read_safetensors(ckpt)
    model = ResNet32(in_ch=t["model.conv1.weight"].shape[1])
    state = {k[len("model.") :]: v for k, v in t.items() if k.startswith("model.")}
    missing = model.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys and all(
        k.endswith("num_batches_tracked") for k in missing.missing_keys
    ), missing
    model.eval()
    w, b = t["classifier.fc.weight"].float(), t["classifier.fc.bias"].float()
    scale = t.get("lws_model.learned_norm")
    images = read_idx(os.path.join(data, "t10k-images-idx3-ubyte.gz"))
    labels = torch.from_numpy(read_idx(os.path.join(data, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    x = (torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1) - MEAN) / STD
    with torch.no_grad():
        feats = torch.cat([model(x[i : i + 500]) for i in range(0, len(x), 500)])
        logits = feats @ w.t() + b
        if scale is not None:
            logits = logits * scale.float()
        nll = -logits.log_softmax(1).gather(1, labels[:, None]).squeeze(1).double()
    pred = logits.argmax(1)
    total = nll.sum().item()
    order = nll.argsort(descending=True)
    print(f"checkpoint: {ckpt}")
    print(f"images {len(nll)}  top-1 {100 * (pred == labels).double().mean().item():.2f} %  "
          f"mean NLL {nll.mean().item():.4f}  median {nll.median().item():.4f}  finite {bool(torch.isfinite(nll).all())}")
    qs = [0.5, 0.9, 0.99, 0.999]
    print("quantiles", {q: round(torch.quantile(nll, q).item(), 3) for q in qs}, "max", round(nll.max().item(), 1))
    for k in [10, 100, 1000]:
        share = nll[order[:k]].sum().item() / total
        print(f"largest {k:>4} images: {100 * share:.1f} % of the NLL sum; "
              f"predicted as {np.bincount(pred[order[:k]].numpy(), minlength=w.shape[0]).tolist()}")
    above = (nll > 10).sum().item()
    print(f"images with NLL > 10 nats: {above}; NLL of the others alone: "
          f"{nll[nll <= 10].mean().item():.4f}")
    print("|logit| max", round(logits.abs().max().item(), 1), " feature norm mean",
          round(feats.norm(dim=1).mean().item(), 2))
    if scale is not None:
        print("LWS scales", [round(v, 3) for v in scale.flatten().tolist()])
    print("classifier row norms", [round(v, 3) for v in w.norm(dim=1).tolist()])


if __name__ == "__main__":
    main()
