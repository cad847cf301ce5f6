"""Training data path and step rate, measured in one process.

    python scripts/bench_training.py [--h5 datasets/DIV2K_train.h5] [--steps 60]

Prints loader patches/s with 2 worker processes for CARN-M's recipe (patch 48, batch 16) single-scale (x2),
multi-scale (--scale 0: one scale per step, only that scale cropped), and the authors' multi-scale cropping
(all three scales cropped for every sample, two thrown away), as ratios; then CPU training steps/s for
CARN-M single-scale and multi-scale; then the loader's resident memory against the h5 size.
Without --h5, a DIV2K-sized synthetic h5 (2040x1356 HR, 24 images) is made in a temporary folder.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

from carn import CARN_M
from srkit.data.train_data import StepBatches
from srkit.training.trainer import _as_is, loader_worker_init as _one_thread


class AuthorsCropping(StepBatches):
    """The authors' multi-scale loader: every sample crops x2, x3 and x4; the step keeps one."""

    def _batch(self, step, s, salt):
        out = {k: StepBatches._batch(self, step, k, salt + k) for k in (2, 3, 4)}
        return out[s]


def _rss_mb() -> float:
    """Current resident set size of this process (Linux)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_h5(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for g in ("HR", "X2", "X3", "X4"):
            f.create_group(g)
        for i in range(n):
            hr = rng.integers(0, 256, (1356, 2040, 3), dtype=np.uint8)
            f["HR"].create_dataset(str(i), data=hr)
            for s in (2, 3, 4):
                f[f"X{s}"].create_dataset(str(i), data=hr[::s, ::s][: 1356 // s, : 2040 // s])


def loader_rate(ds: StepBatches, steps: int) -> float:
    dl = DataLoader(ds, batch_size=None, sampler=range(steps), num_workers=2, collate_fn=_as_is,
                    worker_init_fn=_one_thread)
    it = iter(dl)
    next(it)  # workers started
    t0 = time.perf_counter()
    n = 0
    for batch in it:
        n += batch[0][0].shape[0]
    return n / (time.perf_counter() - t0)


def train_rate(h5: Path, scales: tuple[int, ...], steps: int) -> float:
    torch.manual_seed(0)
    net = CARN_M(multi_scale=True)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    ds = StepBatches(h5, scales, 48, 16)
    dl = DataLoader(ds, batch_size=None, sampler=range(steps + 2), num_workers=2, collate_fn=_as_is,
                    worker_init_fn=_one_thread)
    t0 = None
    for i, [(hr, lr, s)] in enumerate(dl):
        if i == 2:
            t0 = time.perf_counter()
        loss = torch.nn.functional.l1_loss(net(lr, s), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--h5", type=Path, default=None)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--train_steps", type=int, default=10)
    a = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    h5 = a.h5
    if h5 is None:
        h5 = Path(tmp.name) / "synthetic.h5"
        synthetic_h5(h5, 24)
    size_gb = h5.stat().st_size / 2**30
    print(f"h5: {h5} ({size_gb:.2f} GB); CPU threads {torch.get_num_threads()}; patch 48, batch 16, 2 workers")
    before = _rss_mb()
    ds = StepBatches(h5, (2, 3, 4), 48, 16)
    for step in range(200):
        ds[step]
    print(f"loader memory: resident set {before:.0f} MB before and {_rss_mb():.0f} MB after reading 200 batches "
          f"in-process from a {size_gb:.2f} GB h5 (patches are read from the file; no copy is held)")
    single = loader_rate(StepBatches(h5, (2,), 48, 16), a.steps)
    multi = loader_rate(StepBatches(h5, (2, 3, 4), 48, 16), a.steps)
    authors = loader_rate(AuthorsCropping(h5, (2, 3, 4), 48, 16), a.steps)
    print(f"loader patches/s: single-scale x2 {single:.0f}; --scale 0 (ours) {multi:.0f}; "
          f"authors' all-scales cropping {authors:.0f}; ours/authors {multi / authors:.2f}x")
    t_single = train_rate(h5, (2,), a.train_steps)
    t_multi = train_rate(h5, (2, 3, 4), a.train_steps)
    print(f"CARN-M training steps/s on CPU: single-scale x2 {t_single:.2f}; --scale 0 {t_multi:.2f} "
          f"(loader capacity is {single / 16:.0f} / {multi / 16:.0f} steps/s)")



if __name__ == "__main__":
    main()
