"""The evaluation / sampling loop shared by carn/sample.py and overnet/sample.py.

For each benchmark folder and scale: load (HR, LR) pairs in a background thread, run the model (tiled,
optionally self-ensembled), quantize SR by rounding, write SR and HR PNGs to
``<sample_dir>/<model>/<dataset>/x<s>/SR|HR/``, score exactly those uint8 images (Y-channel PSNR/SSIM,
border = ceil(scale)), and write per-image CSVs plus a JSON summary. Bad images are reported by name and
skipped; the exit status is non-zero if anything failed.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from srkit import metrics
from srkit.benchmark import DatasetError, Pair, find_pairs, load_pair, scale_tag
from srkit.imageio import ImageError, quantize, write_png
from srkit.fast import prepare_fast, to_fast_input
from srkit.memory import retain_freed_memory
from srkit.tiling import forward_tiled, self_ensemble


def add_inference_args(p: argparse.ArgumentParser) -> None:
    """Flags every sample.py shares (names as in the authors' READMEs where they exist)."""
    p.add_argument("--ckpt_path", required=True, help="checkpoint file (state dict or training checkpoint)")
    p.add_argument("--test_data_dir", nargs="+", default=["datasets/benchmark/Set5"],
                   help="one or more benchmark folders (x<s>/ HR+LR pairs, DIV2K valid, or HR images only)")
    p.add_argument("--sample_dir", default="sample", help="where SR/HR images, CSVs and summary.json go")
    p.add_argument("--shave", type=int, default=20, help="tile overlap in LR pixels (the authors' chop shave)")
    p.add_argument("--tile", type=int, default=512, help="tile size in LR pixels; 0 = whole image at once")
    p.add_argument("--self_ensemble", action="store_true", help="geometric x8 self-ensemble")
    p.add_argument("--rgb", action="store_true", help="score RGB instead of the Y channel")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if CUDA is available")
    p.add_argument("--no_save", action="store_true", help="score only, write no PNGs")
    p.add_argument("--input", nargs="+", default=None,
                   help="images or folders to upscale (no HR, no metrics); written to <sample_dir>/<model>/upscaled/x<s>/")
    p.add_argument("--plain", action="store_true", help="the plain eager float32 forward instead of the fast path")
    p.add_argument("--half", action="store_true",
                   help="opt-in half precision (changes outputs): fp16 on CUDA, bf16 on CPU (fast only on CPUs "
                        "with AVX512-BF16/AMX)")


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
    ``fast=True`` runs the fast path of srkit.fast (same outputs within 1e-4, measured in the tests) and, on CPU,
    ``retain_memory=True`` keeps freed memory in the process for reuse (srkit.memory; process-wide).
    ``half=True`` (opt-in, changes outputs) runs fp16 on CUDA, bf16 on CPU; outputs are float32."""
    model: torch.nn.Module
    tile: int = 512
    overlap: int = 20
    ensemble: bool = False
    fast: bool = True
    retain_memory: bool = True
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
    def __call__(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        if self.fast:
            x = to_fast_input(x, self.dtype)
        run = lambda t: forward_tiled(self.net, t, scale, self.tile, self.overlap)  # noqa: E731
        return (self_ensemble(run, x) if self.ensemble else run(x)).float().contiguous()


def predictor_from_args(net: torch.nn.Module, args: argparse.Namespace) -> tuple[Predictor, torch.device] | None:
    """The Predictor the inference flags (``add_inference_args``) ask for, on the device they pick; None, after
    printing why, when the flags contradict each other."""
    device = pick_device(args.cpu)
    try:
        return Predictor(net.to(device), tile=args.tile, overlap=args.shave, ensemble=args.self_ensemble,
                         fast=not args.plain, half=args.half), device
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


@dataclass
class Result:
    dataset: str
    scale: float
    rows: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        n = len(self.rows)
        mean = lambda k: float(np.mean([r[k] for r in self.rows])) if n else math.nan  # noqa: E731
        return {"dataset": self.dataset, "scale": self.scale, "images": n, "failed": len(self.errors),
                "psnr": mean("psnr"), "ssim": mean("ssim"), "sec_per_image": mean("seconds")}


def evaluate_folder(predict: Callable[[torch.Tensor, float], torch.Tensor], root: Path, scale: float,
                    out_dir: Path | None, device: torch.device, test_y_channel: bool = True,
                    progress: bool = True) -> Result:
    """Run one benchmark folder at one scale; see the module docstring."""
    res = Result(root.name, scale)
    try:
        pairs, _ = find_pairs(root, scale)
    except DatasetError as e:
        res.errors.append(str(e))
        return res
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
                sr = predict(x, scale)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                secs = time.perf_counter() - t0
                sr8 = to_uint8(sr)
            except (ImageError, ValueError, RuntimeError) as e:
                res.errors.append(str(e))
                tqdm.write(f"error: {e}", file=sys.stderr)
                continue
            posts.append(pool.submit(_score_and_write, pair, sr8, hr, border, test_y_channel, out_dir, secs))
        for f in posts:
            res.rows.append(f.result())
    if out_dir is not None and res.rows:
        _write_csv(out_dir / "metrics.csv", res.rows)
    return res


def _score_and_write(pair: Pair, sr: np.ndarray, hr: np.ndarray, border: int, y: bool, out_dir: Path | None,
                     secs: float) -> dict:
    if out_dir is not None:
        write_png(out_dir / "SR" / pair.name.replace("_HR", "_SR"), sr)
        write_png(out_dir / "HR" / pair.name, hr)
    return {"image": pair.name, "psnr": metrics.psnr(sr, hr, border, y), "ssim": metrics.ssim(sr, hr, border, y),
            "seconds": secs}


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def run_benchmarks(predict: Predictor, model_name: str, datasets: list[str], scales: list[float],
                   sample_dir: str, device: torch.device, test_y_channel: bool = True, save: bool = True,
                   config: dict | None = None) -> int:
    """Evaluate every dataset at every scale; print and save a summary. Returns the exit status."""
    base = Path(sample_dir) / model_name
    results = []
    for d in datasets:
        for s in scales:
            root = Path(d)
            out = base / root.name / scale_tag(s) if save else None
            results.append(evaluate_folder(predict, root, s, out, device, test_y_channel))
    summary = [r.summary() for r in results]
    errors = [e for r in results for e in r.errors]
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "summary.json", "w") as f:
        json.dump({"model": model_name, "config": config or {}, "results": summary, "errors": errors}, f, indent=2)
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
