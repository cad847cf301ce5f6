"""Every loader mode gives the batches of the h5 reads bit for bit: shared-memory images, loader workers
handing over uint8, the device gather (--data_on_device, here on the CPU), and the float values the model
sees; an h5 file over the RAM budget falls back with one line."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from srkit.data.device_batches import DeviceBatches
from srkit.data.train_data import StepBatches, as_float, place
from srkit.training.trainer import _as_is, loader_worker_init
from train_fixtures import packed_div2k


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    return packed_div2k(tmp_path_factory.mktemp("eight"))


def reference(h5, scales, patch, batch, seed, rank, world, per_step, bgr, step):
    """The loader as it was: hyperslab reads, numpy flips and turns, float32 / 255 on the host."""
    d = StepBatches(h5, scales, patch, batch, seed=seed, rank=rank, world=world, per_step=per_step)
    out = []
    with h5py.File(h5, "r") as f:
        for s, salt in d.step_scales(step):
            picked, lrs, hrs = d.images(step, salt), [], []
            for i in range(d.first, d.first + d.local):
                rng = np.random.default_rng([seed, step, salt, i])
                lr_ds, hr_ds = f[f"X{s}"][str(int(picked[i]))], f["HR"][str(int(picked[i]))]
                y = int(rng.integers(0, lr_ds.shape[0] - patch + 1))
                x = int(rng.integers(0, lr_ds.shape[1] - patch + 1))
                lr, hr = lr_ds[y:y + patch, x:x + patch], hr_ds[y * s:(y + patch) * s, x * s:(x + patch) * s]
                if rng.random() < 0.5:
                    lr, hr = lr[:, ::-1], hr[:, ::-1]
                if rng.random() < 0.5:
                    lr, hr = lr[::-1], hr[::-1]
                k = int(rng.integers(4))
                lrs.append(np.rot90(lr, k))
                hrs.append(np.rot90(hr, k))

            def to_t(a):
                x = np.stack(a)
                x = x[..., ::-1] if bgr else x
                return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255)
            out.append((to_t(hrs), to_t(lrs), s))
    return out


def same(a, b):
    assert len(a) == len(b)
    for (h1, l1, s1), (h2, l2, s2) in zip(a, b):
        assert s1 == s2 and h1.dtype == h2.dtype and torch.equal(h1, h2) and torch.equal(l1, l2)
        assert h1.stride() == h2.stride() and l1.stride() == l2.stride()  # the layout the model sees, too


CASES = [((2, 3, 4), "one", False, 0, 1), ((2, 3, 4), "all", False, 1, 2), ((3,), "one", True, 0, 1),
         ((2, 4), "one", False, 1, 2)]


@pytest.mark.parametrize("scales,per_step,bgr,rank,world", CASES)
def test_every_mode_gives_the_h5_reads_batches_bit_for_bit(eight, scales, per_step, bgr, rank, world):
    order = "BGR" if bgr else "RGB"
    kw = dict(seed=5, rank=rank, world=world, per_step=per_step, channel_order=order)
    h5 = StepBatches(eight, scales, 16, 4, ram_budget=0, **kw)
    ram = StepBatches(eight, scales, 16, 4, ram_budget=None, **kw)
    assert h5.memory is None and ram.memory is not None
    dev = DeviceBatches(ram, torch.device("cpu"))
    steps = [0, 1, 2, 7, 1001, 123457]
    for step in steps:
        want = reference(eight, scales, 16, 4, 5, rank, world, per_step, bgr, step)
        same(h5[step], want)
        same(ram[step], want)
        same([(as_float(h), as_float(lr), s) for h, lr, s in ram.uint8(step)], want)
        got = dev[step]
        assert all(h.dtype == torch.uint8 for h, _, _ in got)
        same([(as_float(h), as_float(lr), s) for h, lr, s in got], want)
    # two persistent, prefetching workers hand over uint8 windows and moves, placed and made float here
    loader = DataLoader(ram.uint8_steps(), batch_size=None, sampler=steps, num_workers=2, collate_fn=_as_is,
                        worker_init_fn=loader_worker_init, persistent_workers=True, prefetch_factor=4)
    for step, batches in zip(steps, loader):
        assert all(h.dtype == torch.uint8 and lr.dtype == torch.uint8 for h, lr, _, _ in batches)
        placed = [place(*b, bgr=bgr) for b in batches]
        same([(as_float(h), as_float(lr), s) for h, lr, s in placed],
             reference(eight, scales, 16, 4, 5, rank, world, per_step, bgr, step))


def test_as_float_is_the_hosts_division_on_every_value():
    v = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(2, 3, 16, 16).contiguous()
    assert torch.equal(as_float(v), v.float() / 255)


def test_an_h5_over_the_ram_budget_says_so_in_one_line_and_reads_the_file(eight):
    lines = []
    d = StepBatches(eight, (2,), 16, 4, seed=1, ram_budget=1000, say=lines.append)
    assert d.memory is None and len(lines) == 1 and "over the RAM budget" in lines[0] and "h5 file" in lines[0]
    same(d[3], StepBatches(eight, (2,), 16, 4, seed=1, ram_budget=None)[3])


@pytest.mark.slow
def test_training_in_every_mode_takes_the_same_steps(div2k, tmp_path):
    """h5 reads in this process, shared images through two workers, the device gather: the same losses and
    weights, bit for bit."""
    from conftest import train_argv
    from srkit.cli.train import run
    h5, val, _ = div2k
    argv = ["--model", "carn_m", "--scale", "0"]
    modes = {"h5": (["--data_ram_gb", "0"], 0), "ram": ([], 2), "device": (["--data_on_device"], 0)}
    out = {m: run(argv + train_argv(h5, val, tmp_path / m, 3, extra, workers=w), "carn")
           for m, (extra, w) in modes.items()}
    assert out["ram"] == out["h5"] and out["device"] == out["h5"]
    weights = {m: torch.load(tmp_path / m / "run" / "step_0000003.pth.tar", weights_only=True)["model_state_dict"]
               for m in modes}
    assert all(torch.equal(weights[m][k], weights["h5"][k]) for m in ("ram", "device") for k in weights["h5"])
