#!/usr/bin/env python3
"""One epoch of MiSLAS's stage 2 in plain PyTorch, from a mislas stage-1 checkpoint on
Fashion-MNIST-LT: an independent replica of what `mislas train` does with
presets/fashion_mnist/fashion_mnist_imb001_stage2_mislas.yaml and `num_epochs 1`.

    .venv/bin/python scripts/stage2_torch.py STAGE1.safetensors RUN_FOLDER SEED [LR]

As the reference's train_stage2.py (Zhong et al., CVPR 2021): the backbone frozen but in train
mode (shift learning: BatchNorm statistics follow the class-balanced batches), the classifier
at lr × lr_factor (0.5) and the LWS scales (`LearnableWeightScaling`, logits = s ⊙ (W f + b),
s = 1 at the start) at lr, SGD with momentum 0.9 and weight decay 2e-4, label-aware smoothing
(concave, ε 0.3 at the head → 0 at the tail), class-aware batches of 128 (4 images of a class
drawn uniformly at a time), RandomCrop(28, padding 4) and horizontal flips; the cosine
schedule of a 1-epoch run keeps lr constant over the epoch (the reference sets it per epoch).
The training images are the run folder's `train_subset_indices.txt`. The random draws are
PyTorch's/NumPy's (seeded with SEED), not mislas's: batches differ, the recipe does not.
Prints the loss and the largest |scale| every 40 steps, then test top-1, mean NLL and the scales.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from per_image_nll import MEAN, STD, ResNet32, read_idx, read_safetensors  # noqa: E402

ckpt, run, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 0.1
torch.manual_seed(seed); rng = np.random.default_rng(seed)
D = '/usr/share/datasets/fashion-mnist'
t = read_safetensors(ckpt)
model = ResNet32(1); model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith('model.')}, strict=False)
fc = torch.nn.Linear(64, 10); fc.weight.data = t['classifier.fc.weight'].float().clone(); fc.bias.data = t['classifier.fc.bias'].float().clone()
s = torch.nn.Parameter(torch.ones(1, 10))
idx = np.array([int(l) for l in open(os.path.join(run, 'train_subset_indices.txt')) if l.strip()])
X = read_idx(D + '/train-images-idx3-ubyte.gz')[idx]; Y = read_idx(D + '/train-labels-idx1-ubyte.gz')[idx].astype(np.int64)
counts = np.bincount(Y, minlength=10); n1, nK = counts.max(), counts.min()
eps = 0.0 + 0.3 * np.sin((counts - nK) * np.pi / (2 * (n1 - nK))); eps = torch.tensor(eps, dtype=torch.float32)
def las(x, y):
    lp = x.log_softmax(-1); e = eps[y]
    return ((1 - e) * -lp.gather(1, y[:, None]).squeeze(1) + e * -lp.mean(-1)).mean()
opt = torch.optim.SGD([{'params': fc.parameters(), 'lr': lr * 0.5}, {'params': [s], 'lr': lr}], lr, momentum=0.9, weight_decay=2e-4)
by_class = [np.flatnonzero(Y == c) for c in range(10)]
steps = int(math.ceil(len(Y) / 128))
model.train()
def batch():
    ids = []
    while len(ids) < 128:
        c = rng.integers(10); ids += list(rng.choice(by_class[c], 4))
    ids = np.array(ids[:128]); img = torch.from_numpy(X[ids].astype(np.float32) / 255.)[:, None]
    img = F.pad(img, (4, 4, 4, 4)); out = torch.empty(128, 1, 28, 28)
    for i in range(128):
        a, b = rng.integers(9, size=2); out[i] = img[i, :, a:a + 28, b:b + 28]
        if rng.random() < 0.5: out[i] = out[i].flip(-1)
    return (out - MEAN) / STD, torch.from_numpy(Y[ids])
for it in range(steps + 1):
    x, y = batch()
    with torch.no_grad(): f = model(x)
    loss = las(fc(f) * s, y)
    opt.zero_grad(); loss.backward(); opt.step()
    if it % 40 == 0 or it == steps: print(f'it {it} loss {loss.item():.3f} max|s| {s.abs().max().item():.2f}', flush=True)
model.eval()
xt = (torch.from_numpy(read_idx(D + '/t10k-images-idx3-ubyte.gz').astype(np.float32) / 255.)[:, None] - MEAN) / STD
yt = torch.from_numpy(read_idx(D + '/t10k-labels-idx1-ubyte.gz').astype(np.int64))
with torch.no_grad():
    lg = torch.cat([fc(model(xt[i:i + 500])) * s for i in range(0, 10000, 500)])
nll = -lg.log_softmax(1).gather(1, yt[:, None]).squeeze(1)
print(f'seed {seed} lr {lr}: test top-1 {(lg.argmax(1) == yt).float().mean().item() * 100:.2f} NLL {nll.mean().item():.3f} scales {[round(v, 2) for v in s.detach().flatten().tolist()]}')
