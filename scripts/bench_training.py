"""Training data path and step rate, measured in one process, as ratios against today's h5 reads.

    python scripts/bench_training.py [--images 200] [--h5 datasets/DIV2K_train.h5] [--batches 20]

Makes a synthetic DIV2K-sized h5 (``--images`` random 2040x1356 HR images with their x2/x3/x4 LR) unless
``--h5`` is given, then prints:

- loader patches/s per core (one process, no workers) at patch 64, batch 16, for x2, x3 and x4: today's h5
  hyperslab reads (float32 made on the host), the shared-memory loader (a worker's part: uint8 windows and
  their moves; the flips, turns and float are made on the device; also shown with those done on the host), and an in-RAM loader written the authors' way (``[v[:] for v in h5f["HR"].values()]``,
  their random_crop / random_flip_and_rotate / ToTensor per sample, stacked as their DataLoader collates);
- the proportional set size (PSS, /proc/<pid>/smaps_rollup) of 4 loader workers and the main process, against
  the images' bytes: one copy is shared, not one per worker;
- CARN-M training steps/s on the CPU (patch 48, batch 16, x2) fed by 2 workers of the real loader, against
  the same loop on one synthetic batch held in memory.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

from carn import CARN_M
from srkit.data.train_data import StepBatches, as_float
from srkit.training.trainer import _as_is, loader_worker_init

PATCH, BATCH = 64, 16


def synthetic_h5(path: Path, n: int) -> None:
    """n DIV2K-sized images: random HR, LR by striding (the loader's cost does not depend on the pixels)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for g in ("HR", "X2", "X3", "X4"):
            f.create_group(g)
        for i in range(n):
            hr = rng.integers(0, 256, (1356, 2040, 3), dtype=np.uint8)
            f["HR"].create_dataset(str(i), data=hr)
            for s in (2, 3, 4):
                f[f"X{s}"].create_dataset(str(i), data=np.ascontiguousarray(hr[::s, ::s][: 1356 // s, : 2040 // s]))


class AuthorsInRAM:
    """The authors' TrainDataset (CARN's dataset.py) for one scale: images decoded into lists at start."""

    def __init__(self, h5: Path, scale: int, size: int) -> None:
        with h5py.File(h5, "r") as f:
            self.hr = [v[:] for v in f["HR"].values()]
            self.lr = [v[:] for v in f[f"X{scale}"].values()]
        self.scale, self.size = scale, size

    def __len__(self) -> int:
        return len(self.hr)

    def sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        hr, lr, size, scale = self.hr[index], self.lr[index], self.size, self.scale
        h, w = lr.shape[:-1]
        x, y = random.randint(0, w - size), random.randint(0, h - size)
        crop_lr = lr[y:y + size, x:x + size].copy()
        crop_hr = hr[y * scale:(y + size) * scale, x * scale:(x + size) * scale].copy()
        if random.random() < 0.5:
            crop_hr, crop_lr = np.flipud(crop_hr), np.flipud(crop_lr)
        if random.random() < 0.5:
            crop_hr, crop_lr = np.fliplr(crop_hr), np.fliplr(crop_lr)
        angle = random.choice([0, 1, 2, 3])
        crop_hr, crop_lr = np.rot90(crop_hr, angle).copy(), np.rot90(crop_lr, angle).copy()

        def to_tensor(a: np.ndarray) -> torch.Tensor:  # torchvision's ToTensor on a uint8 HWC array
            return torch.from_numpy(a).permute(2, 0, 1).contiguous().float().div(255)
        return to_tensor(crop_hr), to_tensor(crop_lr)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        picked = np.random.default_rng(step).permutation(len(self))[:BATCH]
        hrs, lrs = zip(*(self.sample(int(i)) for i in picked))
        return torch.stack(hrs), torch.stack(lrs)


def rate(fn, batches: int) -> float:
    """Patches/s of ``fn(step)`` in this process (one core: torch and numpy threads limited to 1)."""
    fn(0)
    t0 = time.perf_counter()
    for step in range(1, batches + 1):
        fn(step)
    return batches * BATCH / (time.perf_counter() - t0)


def pss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def worker_pss(data: StepBatches) -> tuple[list[int], int]:
    """PSS (KiB) of each of 4 persistent workers after 40 batches, and of this process."""
    loader = DataLoader(data.uint8_steps(), batch_size=None, sampler=range(10 ** 6), num_workers=4,
                        collate_fn=_as_is, worker_init_fn=loader_worker_init, persistent_workers=True)
    it = iter(loader)
    for _ in range(40):
        next(it)
    pids = [w.pid for w in it._workers]
    out = [pss_kib(p) for p in pids], pss_kib(os.getpid())
    del it
    return out


def train_rate(h5: Path, steps: int, real: bool) -> float:
    torch.manual_seed(0)
    net = CARN_M(multi_scale=True)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    data = StepBatches(h5, (2,), 48, 16, ram_budget=None)
    if real:
        source = iter(DataLoader(data.uint8_steps(), batch_size=None, sampler=range(steps + 2), num_workers=2,
                                 collate_fn=_as_is, worker_init_fn=loader_worker_init, persistent_workers=True,
                                 prefetch_factor=4))
    else:
        fixed = data.uint8(0)
        source = iter([fixed] * (steps + 2))
    t0 = None
    for i, [(hr, lr, s)] in enumerate(source):
        if i == 2:
            t0 = time.perf_counter()
        hr, lr = as_float(hr), as_float(lr)
        loss = torch.nn.functional.l1_loss(net(lr, s), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--h5", type=Path, default=None)
    p.add_argument("--images", type=int, default=200, help="synthetic 2K images to make (without --h5)")
    p.add_argument("--batches", type=int, default=20, help="batches of 16 timed per loader and scale")
    p.add_argument("--train_steps", type=int, default=6)
    a = p.parse_args()
    tmp = tempfile.TemporaryDirectory()
    h5 = a.h5
    if h5 is None:
        h5 = Path(tmp.name) / "synthetic.h5"
        t0 = time.perf_counter()
        synthetic_h5(h5, a.images)
        print(f"made {a.images} synthetic 2040x1356 images with x2/x3/x4 in {time.perf_counter() - t0:.0f} s")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print(f"h5: {h5} ({h5.stat().st_size / 2**30:.2f} GiB); patch {PATCH}, batch {BATCH}, one core per loader")
    for s in (2, 3, 4):
        today = StepBatches(h5, (s,), PATCH, BATCH, ram_budget=0)
        ram = StepBatches(h5, (s,), PATCH, BATCH, ram_budget=None)
        authors = AuthorsInRAM(h5, s, PATCH)
        r_today = rate(lambda t: today[t], a.batches)
        r_new = rate(lambda t: ram.crops(t), a.batches)  # a worker's part; flips and turns are the device's
        r_host = rate(lambda t: ram.uint8(t), a.batches)
        r_authors = rate(authors.batch, a.batches)
        print(f"x{s}: patches/s per core: h5 reads (today) {r_today:.0f}; shared-memory uint8 loader "
              f"{r_new:.0f} ({r_new / r_today:.1f}x today, {r_new / r_authors:.2f}x the authors'; flipped and "
              f"turned on the host too: {r_host:.0f}); "
              f"authors' in-RAM loader {r_authors:.0f} ({r_authors / r_today:.1f}x today)")
        del today, ram, authors
    data = StepBatches(h5, (2, 3, 4), PATCH, BATCH, ram_budget=None)
    images = data.memory.nbytes / 2**20
    workers, main_pss = worker_pss(data)
    total = sum(workers) / 1024 + main_pss / 1024
    print(f"PSS: images {images:.0f} MiB in shared memory; 4 workers {', '.join(f'{w / 1024:.0f}' for w in workers)} "
          f"MiB + main {main_pss / 1024:.0f} MiB = {total:.0f} MiB, {total / images:.2f}x one copy "
          f"(one copy per worker would be {4 * images + main_pss / 1024:.0f} MiB)")
    del data
    torch.set_num_threads(threads)
    real, synth = train_rate(h5, a.train_steps, True), train_rate(h5, a.train_steps, False)
    print(f"CARN-M steps/s on CPU (patch 48, batch 16, x2, {torch.get_num_threads()} threads): real loader "
          f"{real:.2f}; one synthetic batch {synth:.2f}; real/synthetic {real / synth:.2f}")


if __name__ == "__main__":
    main()
