"""Training throughput on this machine: data pipeline alone, model step alone, and both together.

    python tests/bench/bench_train.py [--arch resnet18] [--size 160] [--workers 1] [--batches 20]

The pipeline (uint8 cache -> augmentation -> normalisation, DataLoader with the default worker count)
should keep >= 90 % of the model-step throughput.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from cxrviewer.model.network import build_network
from cxrviewer.train.cache import build_cache
from cxrviewer.train.data import CachedImages
from cxrviewer.train.loop import TrainConfig, masked_bce, resolve_workers

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=TrainConfig.workers)
    ap.add_argument("--batches", type=int, default=20)
    a = ap.parse_args()
    a.workers = resolve_workers(a.workers, torch.device("cpu"))
    paths = sorted((SHARED / "nih" / "images").glob("*.png"))[: a.batch * (a.batches + 2)]
    cache = build_cache(paths, a.size, Path("cache"), progress=False).squares
    n, labels = len(paths), 11
    ds = CachedImages(cache, np.arange(n), np.zeros((n, labels)), np.ones((n, labels)), train=True)
    dl = DataLoader(ds, a.batch, shuffle=True, num_workers=a.workers, drop_last=True)

    t = time.perf_counter()
    count = sum(len(x) for x, *_ in dl)
    pipe = count / (time.perf_counter() - t)

    net = build_network(a.arch, labels).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    pw = torch.ones(labels)
    x = torch.randn(a.batch, 1, a.size, a.size).contiguous(memory_format=torch.channels_last)
    y, m = torch.zeros(a.batch, labels), torch.ones(a.batch, labels)

    def step(xb: torch.Tensor, yb: torch.Tensor, mb: torch.Tensor) -> None:
        loss = masked_bce(net(xb.contiguous(memory_format=torch.channels_last)), yb, mb, pw)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(x, y, m)
    t = time.perf_counter()
    for _ in range(a.batches):
        step(x, y, m)
    model = a.batch * a.batches / (time.perf_counter() - t)

    t, count = time.perf_counter(), 0
    for xb, yb, mb, _ in dl:
        step(xb, yb, mb)
        count += len(xb)
    both = count / (time.perf_counter() - t)
    print(f"{a.arch} {a.size}px batch {a.batch}, workers {a.workers}, torch threads {torch.get_num_threads()}")
    print(f"data pipeline alone: {pipe:8.1f} img/s")
    print(f"model step alone:    {model:8.1f} img/s")
    print(f"both together:       {both:8.1f} img/s  ({100 * both / model:.0f}% of the model step)")


if __name__ == "__main__":
    main()
