"""Training data path and step rate, measured in one process, as ratios against the h5 reads.

    python scripts/bench_training.py [--images 200] [--h5 datasets/DIV2K_train.h5] [--batches 10] [--rounds 3]
        [--json assets/perf/training_loader.json] [--docs docs/training.md]

Makes a synthetic DIV2K-sized h5 (``--images`` random 2040x1356 HR images with their x2/x3/x4 LR) unless
``--h5`` is given, then prints:

- the proportional set size (PSS, /proc/<pid>/smaps_rollup) of 4 persistent loader workers and their main
  process, measured in a fresh process (this one's own leftovers are not the loader's), each worker having
  mapped every page of the images: the total against the images' bytes, and the images' shared memory
  (``Pss_Shmem``) counted over all five processes: one copy, not one per worker;
- loader patches/s per core (one process, one thread, no workers) at patch 64, batch 16, for x2, x3 and x4,
  the loaders taking turns: the h5 hyperslab reads (``--data_ram_gb 0``, every patch's cost before the
  shared-memory loader; float32 made on the host), the shared-memory loader (a worker's part: uint8 windows
  and their moves; the flips, turns and float are made on the device; also shown with those done on the
  host), and an in-RAM loader written the authors' way (``[v[:] for v in h5f["HR"].values()]``, their
  random_crop / random_flip_and_rotate / ToTensor per sample, stacked as their DataLoader collates);
- CARN-M training steps/s on the CPU (patch 48, batch 16, x2) fed by 2 workers of the real loader, against
  the same loop on one step's windows held in memory.

``--json`` keeps the figures; ``--docs`` writes them into the page between its ``bench_training`` markers
(``render`` makes them from the JSON, so a test can check the page).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info

from carn import CARN_M
from srkit.core.atomic import write_text
from srkit.core.text import replace_block
from srkit.data.train_data import StepBatches, as_float, place
from srkit.training.trainer import _as_is, loader_worker_init

PATCH, BATCH = 64, 16
BLOCK = "bench_training"


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


def in_ram(h5: Path, scales: tuple[int, ...], patch: int, batch: int) -> StepBatches:
    """The shared-memory loader, whatever the RAM budget would say: the trainer's default (half the available
    RAM) falls back to h5 reads on a busy machine, which would time the wrong loader. Out of memory is an error."""
    data = StepBatches(h5, scales, patch, batch, ram_budget=1 << 62)
    assert data.memory is not None
    return data


def rates(loaders: dict[str, Callable[[int], object]], batches: int, rounds: int) -> dict[str, float]:
    """Patches per CPU second of each ``fn(step)`` in this process, which runs one thread (torch and numpy
    threads limited to 1): patches/s per core, whatever else the machine runs (the process's CPU time, the
    kernel's part of an h5 read included). The loaders take turns, ``rounds`` times ``batches`` batches each;
    the median of the rounds."""
    for fn in loaders.values():
        fn(0)
    got: dict[str, list[float]] = {k: [] for k in loaders}
    step = 1
    for _ in range(rounds):
        for name, fn in loaders.items():
            t0 = time.process_time()
            for t in range(step, step + batches):
                fn(t)
            got[name].append(batches * BATCH / (time.process_time() - t0))
        step += batches
    return {k: statistics.median(v) for k, v in got.items()}


def smaps(pid: int) -> dict[str, int]:
    """The KiB figures of /proc/<pid>/smaps_rollup (Rss, Pss, Pss_Anon, Pss_File, Pss_Shmem ...)."""
    out = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            out[parts[0][:-1]] = int(parts[1])
    if "Pss" not in out:
        raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")
    return out


def _touch_images(worker_id: int) -> None:
    """A worker maps every page of the shared images (one byte per page), as a long run's worker ends up
    doing, so its PSS shows its part of all of them."""
    loader_worker_init(worker_id)
    memory = get_worker_info().dataset.data.memory
    for g in memory.groups.values():
        int(g.flat.numpy()[::4096].sum())


def _pss_here(h5: Path, patch: int, workers: int) -> dict:
    """smaps_rollup of this process and of ``workers`` persistent workers of the real loader (every scale's
    images in shared memory, each worker having mapped all of them), after 40 batches."""
    data = in_ram(h5, (2, 3, 4), patch, BATCH)
    loader = DataLoader(data.uint8_steps(), batch_size=None, sampler=range(10 ** 6), num_workers=workers,
                        collate_fn=_as_is, worker_init_fn=_touch_images, persistent_workers=True)
    it = iter(loader)
    try:
        for _ in range(40):
            next(it)
        return {"image_bytes": data.memory.nbytes, "main": smaps(os.getpid()),
                "workers": [smaps(w.pid) for w in it._workers]}
    finally:
        it._shutdown_workers()


def loader_pss(h5: Path, patch: int = PATCH, workers: int = 4) -> dict:
    """``_pss_here`` in a fresh process: what this one allocated and freed before (a benchmark's other phases,
    glibc keeping freed memory) is then not in the figures, and not inherited by the workers."""
    root = str(Path(__file__).resolve().parents[1])  # this checkout's srkit, whatever the caller's path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([sys.executable, __file__, "--h5", str(h5), "--patch", str(patch), "--pss_only", str(workers)],
                       capture_output=True, text=True, check=False, env=env)
    if r.returncode:
        raise RuntimeError(f"the PSS measurement failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.splitlines()[-1])


def pss_summary(p: dict) -> dict:
    """MiB: the images, every process's PSS and the total; the images' shared memory as counted over all of
    them (``Pss_Shmem``: one copy when shared), and what one copy per process would take."""
    mib = 1 / 1024
    procs = [p["main"], *p["workers"]]
    own = p["main"]["Pss"] - p["main"].get("Pss_Shmem", 0)
    return {"images": p["image_bytes"] / 2 ** 20, "main": p["main"]["Pss"] * mib,
            "workers": [w["Pss"] * mib for w in p["workers"]], "worker_rss": [w["Rss"] * mib for w in p["workers"]],
            "total": sum(q["Pss"] for q in procs) * mib, "shmem": sum(q.get("Pss_Shmem", 0) for q in procs) * mib,
            "copy_per_process": (sum(w["Pss"] - w.get("Pss_Shmem", 0) for w in p["workers"]) + own) * mib
            + (len(p["workers"]) + 1) * p["image_bytes"] / 2 ** 20}


def train_rate(h5: Path, steps: int, real: bool, workers: int = 2, patch: int = 48, batch: int = 16) -> float:
    """CARN-M steps/s on the CPU (x2), fed by ``workers`` persistent workers of the real loader or by one step's
    windows held in memory; the windows are flipped, turned and made float in the loop either way, as the
    trainer does on its device."""
    torch.manual_seed(0)
    net = CARN_M(multi_scale=True)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    data = in_ram(h5, (2,), patch, batch)
    if real:
        source = iter(DataLoader(data.uint8_steps(), batch_size=None, sampler=range(steps + 2), num_workers=workers,
                                 collate_fn=_as_is, worker_init_fn=loader_worker_init, persistent_workers=True,
                                 prefetch_factor=4))
    else:
        source = iter([data.crops(0)] * (steps + 2))
    t0 = time.perf_counter()
    try:
        for i, [crops] in enumerate(source):
            if i == 2:  # the first steps start the workers and warm the allocator
                t0 = time.perf_counter()
            hr, lr, s = place(*crops)
            hr, lr = as_float(hr), as_float(lr)
            loss = torch.nn.functional.l1_loss(net(lr, s), hr)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:  # persistent workers left running keep the process from exiting after an error
        if real:
            source._shutdown_workers()
    return steps / (time.perf_counter() - t0)


def cpu_name() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"


def measure(a: argparse.Namespace) -> dict:
    tmp = tempfile.TemporaryDirectory()
    h5 = a.h5
    out: dict = {"command": "python scripts/bench_training.py " + " ".join(sys.argv[1:]), "batches": a.batches,
                 "rounds": a.rounds, "patch": a.patch, "batch": BATCH, "synthetic": a.h5 is None}
    if h5 is None:
        h5 = Path(tmp.name) / "synthetic.h5"
        t0 = time.perf_counter()
        synthetic_h5(h5, a.images)
        print(f"made {a.images} synthetic 2040x1356 images with x2/x3/x4 in {time.perf_counter() - t0:.0f} s")
    with h5py.File(h5, "r") as f:
        out["images"] = len(f["HR"])
        out["hr_shape"] = list(f["HR"]["0"].shape)
    out["h5_gib"] = h5.stat().st_size / 2 ** 30
    # first, so that nothing this process allocates for the loaders below is in the way (it runs apart anyway)
    pss = pss_summary(loader_pss(h5, a.patch))
    out["pss"] = pss
    print(f"PSS of 4 workers and the main process: images {pss['images']:.0f} MiB in shared memory; workers "
          f"{', '.join(f'{w:.0f}' for w in pss['workers'])} MiB (each maps all of them: RSS "
          f"{', '.join(f'{w:.0f}' for w in pss['worker_rss'])} MiB) + main {pss['main']:.0f} MiB = "
          f"{pss['total']:.0f} MiB; the images' shared memory counted over all five: {pss['shmem']:.0f} MiB, "
          f"{pss['shmem'] / pss['images']:.2f} copies (one copy per process: {pss['copy_per_process']:.0f} MiB)",
          flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print(f"h5: {h5} ({out['h5_gib']:.2f} GiB); patch {a.patch}, batch {BATCH}, one core per loader", flush=True)
    out["scales"] = {}
    for s in (2, 3, 4):
        today = StepBatches(h5, (s,), a.patch, BATCH, ram_budget=0)
        ram = in_ram(h5, (s,), a.patch, BATCH)
        authors = AuthorsInRAM(h5, s, a.patch)
        r = rates({"h5": lambda t: today[t],
                   "shared": lambda t: ram.crops(t),  # a worker's part; flips and turns are the device's
                   "shared_host": lambda t: ram.uint8(t),
                   "authors": authors.batch}, a.batches, a.rounds)
        out["scales"][str(s)] = r
        print(f"x{s}: patches/s per core: h5 reads (today) {r['h5']:.0f}; shared-memory uint8 loader "
              f"{r['shared']:.0f} ({r['shared'] / r['h5']:.1f}x today, {r['shared'] / r['authors']:.2f}x the "
              f"authors'; flipped and turned on the host too: {r['shared_host']:.0f}, "
              f"{r['shared_host'] / r['authors']:.2f}x the authors'); authors' in-RAM loader {r['authors']:.0f} "
              f"({r['authors'] / r['h5']:.1f}x today)", flush=True)
        del today, ram, authors
    torch.set_num_threads(threads)
    got: dict[str, list[float]] = {"real": [], "synthetic": []}
    for _ in range(a.rounds):
        for key in got:
            got[key].append(train_rate(h5, a.train_steps, key == "real"))
    real, synth = (statistics.median(got[k]) for k in ("real", "synthetic"))
    out["train"] = {"steps": a.train_steps, "threads": torch.get_num_threads(), "real": real, "synthetic": synth}
    print(f"CARN-M steps/s on CPU (patch 48, batch 16, x2, {torch.get_num_threads()} threads, 2 loader workers; "
          f"median of {a.rounds}): real loader {real:.3f}; one step's windows held in memory {synth:.3f}; "
          f"real/synthetic {real / synth:.2f}", flush=True)
    out["machine"] = {"cpu": cpu_name(), "isa": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
                      "nice": os.nice(0), "torch": torch.__version__,
                      "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return out


def render(m: dict) -> str:
    """The page's figures of ``measure``'s JSON."""
    md, p, t = m["machine"], m["pss"], m["train"]
    hr = "x".join(str(v) for v in m["hr_shape"][1::-1])
    nice = f", the script at niceness {md['nice']}" if md.get("nice") else ""
    isa = f" ({md['isa']})" if md.get("isa") else ""
    lines = [f"`{m['command'].strip()}` ({md['date'][:10]}; {md['cpu']}{isa}, {md['cores']} cores{nice}; torch "
             f"{md['torch']}): {m['images']}{' synthetic' if m.get('synthetic', True) else ''} {hr} images with their "
             f"x2/x3/x4 LR ({m['h5_gib']:.2f} GiB of h5). Loaders in patches/s per core (one process, one thread, "
             f"patches per second of its CPU time; patch {m['patch']}, batch {m['batch']}; the loaders take turns, median of {m['rounds']} rounds of "
             f"{m['batches']} batches each; in brackets the ratio to the h5 reads):", "",
             "| scale | h5 reads (`--data_ram_gb 0`, before) | shared-memory loader (a worker's part) | the same, "
             "flipped and turned on the host | authors' in-RAM loader | shared-memory / authors' |",
             "|---|---|---|---|---|---|"]
    for s, r in m["scales"].items():
        lines.append(f"| x{s} | {r['h5']:.0f} | {r['shared']:.0f} ({r['shared'] / r['h5']:.1f}x) | "
                     f"{r['shared_host']:.0f} ({r['shared_host'] / r['h5']:.1f}x) | {r['authors']:.0f} "
                     f"({r['authors'] / r['h5']:.1f}x) | {r['shared'] / r['authors']:.2f}x (on the host "
                     f"{r['shared_host'] / r['authors']:.2f}x) |")
    x4 = m["scales"]["4"]
    met = x4["shared"] >= 10 * x4["h5"] and x4["shared"] >= x4["authors"]
    lines += ["", f"At x4 the shared-memory loader does {x4['shared'] / x4['h5']:.1f}x the h5 reads' patches per core "
              f"(the target: 10x) and {x4['shared'] / x4['authors']:.2f}x the authors' in-RAM loader's (the target: "
              f"1x; {x4['shared_host'] / x4['authors']:.2f}x with the flips and turns on the host too): "
              f"{'met' if met else 'NOT met'}."]
    lines += ["", f"PSS (`/proc/<pid>/smaps_rollup`, measured in a fresh process) of 4 workers, each having mapped "
              f"every page of the images, and the main process: {p['images']:.0f} MiB of images; workers "
              f"{', '.join(f'{w:.0f}' for w in p['workers'])} MiB (RSS {', '.join(f'{w:.0f}' for w in p['worker_rss'])} "
              f"MiB each), main {p['main']:.0f} MiB: {p['total']:.0f} MiB in all, of which the images' shared memory "
              f"{p['shmem']:.0f} MiB ({p['shmem'] / p['images']:.2f} copies). One copy per process would take "
              f"{p['copy_per_process']:.0f} MiB.", "",
              f"CARN-M training on the CPU (patch 48, batch 16, x2, {t['threads']} threads, median of {m['rounds']} "
              f"runs of {t['steps']} steps): {t['real']:.3f} steps/s fed by 2 workers of the real loader against "
              f"{t['synthetic']:.3f} on one step's windows held in memory ({t['real'] / t['synthetic']:.2f}x)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--h5", type=Path, default=None)
    p.add_argument("--images", type=int, default=200, help="synthetic 2K images to make (without --h5)")
    p.add_argument("--patch", type=int, default=PATCH)
    p.add_argument("--batches", type=int, default=10, help="batches of 16 timed per loader, scale and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds the loaders (and the training runs) take turns")
    p.add_argument("--train_steps", type=int, default=10)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--docs", type=Path, default=None, help="write them into this page's marked block")
    p.add_argument("--from_json", type=Path, default=None, help="render a --json file instead of measuring")
    p.add_argument("--pss_only", type=int, default=None, metavar="WORKERS", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.pss_only is not None:  # the fresh process of loader_pss
        print(json.dumps(_pss_here(a.h5, a.patch, a.pss_only)))
        return
    m = json.loads(a.from_json.read_text()) if a.from_json else measure(a)
    if a.json:
        write_text(a.json, json.dumps(m, indent=1) + "\n")
    if a.docs:
        write_text(a.docs, replace_block(a.docs.read_text(), BLOCK, render(m)))
        print(f"wrote the figures into {a.docs}")


if __name__ == "__main__":
    main()
