"""The evaluation loop of every sample front-end (srkit.sample_cli), and the Predictor that runs a model.

For each benchmark folder and scale: load (HR, LR) pairs in a background thread, run the model (tiled,
optionally self-ensembled), quantize SR by rounding, write SR and HR PNGs to
``<sample_dir>/<model>/<dataset>/x<s>/SR|HR/``, score exactly those uint8 images (Y-channel PSNR/SSIM,
border = ceil(scale)), and write per-image CSVs plus a JSON summary. Bad images are reported by name and
skipped; the exit status is non-zero if anything failed.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from srkit import metrics
from srkit.benchmark import DatasetError, Pair, find_pairs, load_pair, scale_tag
from srkit.imageio import ImageError, quantize, write_png
from srkit.imresize import imresize
from srkit.resize import sr_size
from srkit.fast import prepare_fast, to_fast_input
from srkit.memory import retain_freed_memory
from srkit.tiling import forward_tiled, self_ensemble


def pick_device(force_cpu: bool) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() and not force_cpu else "cpu")


def to_tensor(img: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).to(device).permute(2, 0, 1)[None].float().div_(255)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) float in [0,1] -> HxWx3 uint8, rounded (the authors' save_image truncates)."""
    return quantize(t[0].permute(1, 2, 0).float().cpu().numpy())


@dataclass
class Predictor:
    """model(x, scale) wrapped with tiling and self-ensemble; ``__call__`` takes and returns NCHW tensors.
    ``fast=True`` runs the fast path of srkit.fast (within ``FAST_PATH_ATOL`` of the plain forward, tested).
    ``retain_memory=True`` (opt-in: process-wide, cannot be undone) makes a CPU fast path keep freed memory in
    the process for reuse (srkit.memory); the CLIs ask for it. ``half=True`` (opt-in, changes outputs) runs
    fp16 on CUDA, bf16 on CPU; outputs are float32."""
    model: torch.nn.Module
    tile: int = 512
    overlap: int = 20
    ensemble: bool = False
    fast: bool = True
    retain_memory: bool = False
    half: bool = False

    def __post_init__(self) -> None:
        device = next(self.model.parameters()).device
        self.dtype: torch.dtype | None = None
        if self.half:
            if not self.fast:
                raise ValueError("half precision runs on the fast path; drop --plain")
            self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        self.net = prepare_fast(self.model, half=self.dtype) if self.fast else self.model.eval()
        if self.fast and self.retain_memory and device.type == "cpu":
            retain_freed_memory()

    @torch.inference_mode()
    def uint8(self, x: torch.Tensor, scale: float) -> np.ndarray:
        """SR of one image (1,3,H,W) as HxWx3 uint8, quantized tile by tile as tiles finish: memory is one
        tile's working set plus the uint8 output, whatever the image size. Equal to ``to_uint8(self(x))``."""
        if self.ensemble:
            return to_uint8(self(x, scale))
        if self.fast:
            x = to_fast_input(x, self.dtype)
        else:
            x = x.to(next(self.net.parameters()).dtype)
        h, w = x.shape[-2:]
        out = np.empty((sr_size(h, scale), sr_size(w, scale), 3), np.uint8)

        def sink(y0: int, y1: int, x0: int, x1: int, core: torch.Tensor) -> None:
            out[y0:y1, x0:x1] = quantize(core[0].permute(1, 2, 0).float().cpu().numpy())
        forward_tiled(self.net, x, scale, self.tile, self.overlap, sink=sink)
        return out

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        if self.fast:
            x = to_fast_input(x, self.dtype)
        else:  # the plain forward runs in the model's own dtype (float64 in --debug_float64 training)
            x = x.to(next(self.net.parameters()).dtype)
        run = lambda t: forward_tiled(self.net, t, scale, self.tile, self.overlap)  # noqa: E731
        return (self_ensemble(run, x) if self.ensemble else run(x)).float().contiguous()


class Rescaled:
    """A predictor for output scale ``out_scale`` that runs ``predict`` at ``model_scale`` (above it) and brings
    the result down to the exact size (``sr_size``) with the MATLAB-compatible bicubic imresize."""

    def __init__(self, predict: Callable[[torch.Tensor, float], torch.Tensor], model_scale: float,
                 out_scale: float) -> None:
        self.predict, self.model_scale, self.out_scale = predict, model_scale, out_scale

    def __call__(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        h, w = x.shape[-2:]
        big = self.predict(x, self.model_scale)
        out_hw = (sr_size(h, self.out_scale), sr_size(w, self.out_scale))
        frames = [imresize(f.permute(1, 2, 0).double().cpu().numpy(), scale=self.out_scale / self.model_scale,
                           output_shape=out_hw) for f in big]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().to(big.device)


@dataclass
class Result:
    dataset: str
    scale: float
    rows: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # each row's index among the folder's pairs

    def summary(self) -> dict:
        n = len(self.rows)
        mean = lambda k: float(np.mean([r[k] for r in self.rows])) if n else math.nan  # noqa: E731
        return {"dataset": self.dataset, "scale": self.scale, "images": n, "failed": len(self.errors),
                "psnr": mean("psnr"), "ssim": mean("ssim"), "sec_per_image": mean("seconds")}


def evaluate_folder(predict: Callable[[torch.Tensor, float], torch.Tensor], root: Path, scale: float,
                    out_dir: Path | None, device: torch.device, test_y_channel: bool = True,
                    progress: bool = True, shard: tuple[int, int] = (0, 1)) -> Result:
    """Run one benchmark folder at one scale; see the module docstring. ``shard=(rank, world)`` runs only
    pairs rank, rank + world, ... (merge the ranks' results with :func:`gather_result`). PNGs go to
    ``out_dir``; the CSV is written by :func:`write_metrics`."""
    res = Result(root.name, scale)
    try:
        pairs, _ = find_pairs(root, scale)
    except DatasetError as e:
        if shard[0] == 0:
            res.errors.append(str(e))
        return res
    index = list(range(len(pairs)))[shard[0]::shard[1]]
    pairs = [pairs[i] for i in index]
    border = math.ceil(scale)
    with ThreadPoolExecutor(max_workers=2) as pool:
        loads = [pool.submit(load_pair, p, scale) for p in pairs[:2]]
        posts: list[Future] = []
        bar = tqdm(pairs, desc=f"{root.name} {scale_tag(scale)}", unit="img", disable=not progress, leave=False)
        for i, pair in enumerate(bar):
            fut = loads[i]
            if i + 2 < len(pairs):
                loads.append(pool.submit(load_pair, pairs[i + 2], scale))
            try:
                hr, lr = fut.result()
                if min(lr.shape[:2]) < 2 or min(hr.shape[:2]) < 2 * border + 11:
                    raise ImageError(f"{pair.hr}: too small to score ({hr.shape[1]}x{hr.shape[0]} HR; needs at "
                                     f"least {2 * border + 11} px per side for a border of {border} and SSIM)")
                x = to_tensor(lr, device)
                t0 = time.perf_counter()
                sr8 = predict.uint8(x, scale) if isinstance(predict, Predictor) else to_uint8(predict(x, scale))
                secs = time.perf_counter() - t0
            except (ImageError, ValueError, RuntimeError) as e:
                res.errors.append(str(e))
                tqdm.write(f"error: {e}", file=sys.stderr)
                continue
            posts.append(pool.submit(_score_and_write, pair, sr8, hr, border, test_y_channel, out_dir, secs))
            res.order.append(index[i])
        for f in posts:
            row, problem = f.result()
            res.rows.append(row)
            if problem:
                res.errors.append(problem)
                tqdm.write(f"error: {problem}", file=sys.stderr)
    return res


def gather_result(res: Result) -> Result:
    """The whole folder's Result from every rank's shard (identity without a process group), rows in the
    folder's order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return res
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, res)
    rows = sorted((i, row) for part in parts for i, row in zip(part.order, part.rows))
    return Result(res.dataset, res.scale, [row for _, row in rows], [e for part in parts for e in part.errors],
                  [i for i, _ in rows])


def write_metrics(out_dir: Path | None, res: Result) -> None:
    """metrics.csv of a result (a failure to write it is one more error of the result)."""
    if out_dir is not None and res.rows:
        try:
            _write_csv(out_dir / "metrics.csv", res.rows)
        except OSError as e:
            res.errors.append(f"{out_dir / 'metrics.csv'}: cannot write ({e.strerror or e})")


def _score_and_write(pair: Pair, sr: np.ndarray, hr: np.ndarray, border: int, y: bool, out_dir: Path | None,
                     secs: float) -> tuple[dict, str | None]:
    """(the image's scores, or why its PNGs could not be written: the scores still count, they are of sr)."""
    row = {"image": pair.name, "psnr": metrics.psnr(sr, hr, border, y), "ssim": metrics.ssim(sr, hr, border, y),
           "seconds": secs}
    if out_dir is None:
        return row, None
    target = out_dir / "SR" / pair.name.replace("_HR", "_SR")
    try:
        write_png(target, sr)
        target = out_dir / "HR" / pair.name
        write_png(target, hr)
    except OSError as e:
        return row, f"{target}: cannot write the output image ({e.strerror or e})"
    return row, None


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run_benchmarks(predict: Callable | dict[float, Callable], model_name: str, datasets: list[str], scales: list[float],
                   sample_dir: str, device: torch.device, test_y_channel: bool = True, save: bool = True,
                   config: dict | None = None) -> int:
    """Evaluate every dataset at every scale; print and save a summary. Returns the exit status. Under a
    process group (torchrun) every rank runs its shard of the images and rank 0 writes the merged CSVs and
    summary, identical per image to a one-process run."""
    base = Path(sample_dir) / model_name
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    results = []
    for d in datasets:
        for s in scales:
            root = Path(d)
            out = base / root.name / scale_tag(s) if save else None
            run = predict[s] if isinstance(predict, dict) else predict  # a predictor per scale (--outscale)
            res = gather_result(evaluate_folder(run, root, s, out, device, test_y_channel,
                                                progress=rank == 0, shard=(rank, world)))
            if rank == 0:
                write_metrics(out, res)
            results.append(res)
    summary = [r.summary() for r in results]
    errors = [e for r in results for e in r.errors]
    if rank != 0:
        return 1 if errors else 0
    try:
        base.mkdir(parents=True, exist_ok=True)
        save_text(base / "summary.json", json.dumps({"model": model_name, "config": config or {}, "results": summary,
                                                     "errors": errors, "processes": world}, indent=2, default=str))
    except OSError as e:
        errors.append(f"{base / 'summary.json'}: cannot write ({e.strerror or e})")
    print(f"\n{'dataset':<12}{'scale':>6}{'PSNR':>9}{'SSIM':>8}{'images':>8}{'failed':>8}{'s/img':>8}")
    for r in summary:
        print(f"{r['dataset']:<12}{r['scale']:>6g}{r['psnr']:>9.3f}{r['ssim']:>8.4f}{r['images']:>8}"
              f"{r['failed']:>8}{r['sec_per_image']:>8.3f}")
    print(f"summary: {base / 'summary.json'}")
    if errors:
        print(f"\n{len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0


def save_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (a temporary name, then renamed; nothing half-written is left)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
