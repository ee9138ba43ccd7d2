"""PyTorch's loading speed on the tree that `examples/large_scale_bench.rs` writes: images/s of
one process (DataLoader with num_workers=0, so one core decodes and transforms) with PIL and
the reference's torchvision transforms, training and evaluation, at 224.

Usage: .venv/bin/python scripts/bench_loader_torch.py DIR [batch]
"""
import os
import sys
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

root = sys.argv[1]
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
torch.set_num_threads(1)
normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
train_tf = T.Compose([
    T.RandomResizedCrop(224),
    T.RandomHorizontalFlip(),
    T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0),
    T.ToTensor(),
    normalize,
])
eval_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize])


class Listed(Dataset):
    """The reference's LT_Dataset: `os.path.join(root, path)`, PIL `convert('RGB')`."""

    def __init__(self, tf):
        with open(os.path.join(root, "ImageNet_LT_train.txt")) as f:
            self.items = [(os.path.join(root, l.split()[0]), int(l.split()[1])) for l in f if l.strip()]
        self.tf = tf

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        with open(path, "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.tf(img), label


for what, tf in [("training", train_tf), ("evaluation", eval_tf)]:
    loader = DataLoader(Listed(tf), batch_size=batch, shuffle=False, num_workers=0)
    t = time.perf_counter()
    n = 0
    for x, y in loader:
        n += x.shape[0]
    rate = n / (time.perf_counter() - t)
    print(f"torch DataLoader, 1 process, {what} transforms at 224: {rate:.1f} images/s ({n} images)")
