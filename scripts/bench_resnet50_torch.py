"""PyTorch's stage-1 training step on ResNet-50, for comparison with `mislas bench` on the same
model: torchvision's resnet50 trunk (2048 features) + Linear(2048, K), mixup (λ ~ Beta(0.2, 0.2)
and a random pairing per batch), cross-entropy, SGD(lr 0.1, momentum 0.9, weight decay 5e-4),
on batches made beforehand (the bare loop). Prints images/s over the timed steps and the
process's peak resident memory.

Usage: .venv/bin/python scripts/bench_resnet50_torch.py [batch] [timed_steps] [device] [amp] [channels_last]
  defaults: batch 32, 5 timed steps (after 3 warm-up steps), cpu, amp 0, channels_last 0.
"""
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 32
timed = int(sys.argv[2]) if len(sys.argv) > 2 else 5
device = torch.device(sys.argv[3] if len(sys.argv) > 3 else "cpu")
amp = len(sys.argv) > 4 and sys.argv[4] == "1"
channels_last = len(sys.argv) > 5 and sys.argv[5] == "1"
warm = 3
classes = 12
size = 224

torch.manual_seed(0)
trunk = torchvision.models.resnet50()
trunk.fc = nn.Identity()
head = nn.Linear(2048, classes)
model = nn.Sequential(trunk, head).to(device)
if channels_last:
    model = model.to(memory_format=torch.channels_last)
model.train()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
scaler = torch.amp.GradScaler("cuda", enabled=amp)
criterion = nn.CrossEntropyLoss()
rng = np.random.default_rng(0)
batches = [
    (torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,)))
    for _ in range(warm + timed)
]


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


for i, (x, y) in enumerate(batches):
    if i == warm:
        sync()
        t0 = time.perf_counter()
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    lam = float(rng.beta(0.2, 0.2))
    index = torch.randperm(batch, device=device)
    mixed = lam * x + (1 - lam) * x[index]
    with torch.autocast(device.type, enabled=amp):
        out = model(mixed)
        loss = lam * criterion(out, y) + (1 - lam) * criterion(out, y[index])
    opt.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
sync()
rate = timed * batch / (time.perf_counter() - t0)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
print(
    f"torch {torch.__version__} ResNet-50 stage-1 step, batch {batch} at {size} on {device} "
    f"({'amp fp16' if amp else 'fp32'}{', channels-last' if channels_last else ''}, "
    f"{torch.get_num_threads()} threads): {rate:.1f} images/s over {timed} steps; "
    f"peak resident memory {peak_mb:.0f} MB"
)
if device.type == "cuda":
    print(f"  peak CUDA memory allocated {torch.cuda.max_memory_allocated() / 1e6:.0f} MB")
