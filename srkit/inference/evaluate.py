"""The benchmark loop of every sample front-end: score a model on benchmark folders, write what it made.

For each benchmark folder and scale: load (HR, LR) pairs in a background thread, run the model (tiled,
optionally self-ensembled), quantize SR by rounding, write SR and HR PNGs to
``<run_dir>/<dataset>/x<s>/SR|HR/``, score exactly those uint8 images (Y-channel PSNR/SSIM,
border = ceil(scale)), and write a per-image ``metrics.csv`` there plus ``<run_dir>/summary.json``. Bad
images are reported by name and skipped; the exit status is non-zero if anything failed.

``run_dir`` is one checkpoint's folder (the front-end keys it by the checkpoint's name and hash), so two
checkpoints never share files. Within it, results are keyed by (dataset, scale): a second run of the same
checkpoint adds its datasets and scales to ``summary.json`` and replaces only the ones it ran again, saying
so. Two benchmark folders with the same name in one run get distinct labels (``A_Set5``, ``B_Set5``).
Evaluations running at once into one folder merge their rows: ``summary.json`` is read, merged and written
under an exclusive lock (``flock`` on ``.summary.json.lock`` beside it; the OS releases it if a process dies),
so the second waits for the first's write and adds to it.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from srkit.core.atomic import atomic_write, write_text
from srkit.data import metrics
from srkit.data.benchmark import DatasetError, Pair, check_sr_names, find_pairs, load_pair, scale_tag, sr_name
from srkit.data.imageio import DEFAULT_MAX_PIXELS, ImageError, failure, write_png
from srkit.inference.predictor import Predict, to_tensor

CSV_ERRORS = "surrogateescape"  # file names that are not valid UTF-8 keep their bytes in metrics.csv


@dataclass
class Result:
    dataset: str
    scale: float
    rows: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # each row's index among the folder's pairs
    root: str = ""

    def summary(self) -> dict:
        n = len(self.rows)
        mean = lambda k: float(np.mean([r[k] for r in self.rows])) if n else None  # noqa: E731
        return {"dataset": self.dataset, "scale": self.scale, "images": n, "failed": len(self.errors),
                "psnr": mean("psnr"), "ssim": mean("ssim"), "sec_per_image": mean("seconds"), "root": self.root}


def dataset_labels(folders: list[str]) -> dict[str, str]:
    """A distinct label per benchmark folder: its name, or its parent's name and its own where names clash."""
    paths = [Path(d) for d in folders]
    labels = {}
    for p in paths:
        clash = [q for q in paths if q.name == p.name and q.resolve() != p.resolve()]
        label = p.name
        if clash:
            parts = p.resolve().parts
            label = "_".join(parts[-2:]) if len(parts) > 1 else p.name
        labels[str(p)] = label
    seen: dict[str, int] = {}
    for k, v in labels.items():  # still equal (a/b/Set5 and c/b/Set5): number them
        seen[v] = seen.get(v, 0) + 1
        if seen[v] > 1:
            labels[k] = f"{v}_{seen[v]}"
    return labels


def evaluate_folder(predict: Predict, root: Path, scale: float, out_dir: Path | None, device: torch.device,
                    test_y_channel: bool = True, progress: bool = True, shard: tuple[int, int] = (0, 1),
                    label: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Result:
    """Run one benchmark folder at one scale; see the module docstring. ``shard=(rank, world)`` runs only
    pairs rank, rank + world, ... (merge the ranks' results with :func:`gather_result`). PNGs go to
    ``out_dir``; the CSV is written by :func:`write_metrics`."""
    res = Result(label or root.name, scale, root=str(Path(root).resolve()))
    try:
        pairs, _ = find_pairs(root, scale)
        check_sr_names(pairs)
    except DatasetError as e:
        if shard[0] == 0:
            res.errors.append(str(e))
        return res
    index = list(range(len(pairs)))[shard[0]::shard[1]]
    pairs = [pairs[i] for i in index]
    border = math.ceil(scale)
    with ThreadPoolExecutor(max_workers=2) as pool:
        loads = [pool.submit(load_pair, p, scale, max_pixels) for p in pairs[:2]]
        posts: list[tuple[Future, Pair, int]] = []
        bar = tqdm(pairs, desc=f"{res.dataset} {scale_tag(scale)}", unit="img", disable=not progress, leave=False)
        for i, pair in enumerate(bar):
            fut = loads[i]
            if i + 2 < len(pairs):
                loads.append(pool.submit(load_pair, pairs[i + 2], scale, max_pixels))
            try:
                hr, lr = fut.result()
                if min(lr.shape[:2]) < 2 or min(hr.shape[:2]) < 2 * border + 11:
                    raise ImageError(f"{pair.hr}: too small to score ({hr.shape[1]}x{hr.shape[0]} HR; needs at "
                                     f"least {2 * border + 11} px per side for a border of {border} and SSIM)")
                x = to_tensor(lr, device)
                t0 = time.perf_counter()
                sr8 = predict.uint8(x, scale)
                secs = time.perf_counter() - t0
            except Exception as e:  # noqa: BLE001 - one bad file never stops the rest
                res.errors.append(failure(pair.hr, e, *([pair.lr] if pair.lr else [])))
                tqdm.write(f"error: {res.errors[-1]}", file=sys.stderr)
                continue
            posts.append((pool.submit(_score_and_write, pair, sr8, hr, border, test_y_channel, out_dir, secs),
                          pair, index[i]))
        for f, pair, i in posts:
            try:
                row, problem = f.result()
            except Exception as e:  # noqa: BLE001 - scoring or writing one image failed: that image only
                res.errors.append(failure(pair.hr, e))
                tqdm.write(f"error: {res.errors[-1]}", file=sys.stderr)
                continue
            res.rows.append(row)
            res.order.append(i)
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
                  [i for i, _ in rows], res.root)


def write_metrics(out_dir: Path | None, res: Result, extra: dict | None = None) -> None:
    """metrics.csv of a result, each row with ``extra`` columns (the checkpoint that made it); a failure to
    write it is one more error of the result."""
    if out_dir is not None and res.rows:
        rows = [{**r, **(extra or {})} for r in res.rows]
        try:
            atomic_write(out_dir / "metrics.csv", lambda tmp: _write_csv(tmp, rows))
        except OSError as e:
            res.errors.append(f"{out_dir / 'metrics.csv'}: cannot write ({e.strerror or e})")


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8", errors=CSV_ERRORS) as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8", errors=CSV_ERRORS) as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _score_and_write(pair: Pair, sr: np.ndarray, hr: np.ndarray, border: int, y: bool, out_dir: Path | None,
                     secs: float) -> tuple[dict, str | None]:
    """(the image's scores, or why its PNGs could not be written: the scores still count, they are of sr)."""
    row = {"image": pair.name, "psnr": metrics.psnr(sr, hr, border, y), "ssim": metrics.ssim(sr, hr, border, y),
           "seconds": secs}
    if out_dir is None:
        return row, None
    target = out_dir / "SR" / sr_name(pair.name)
    try:
        write_png(target, sr)
        target = out_dir / "HR" / pair.name
        write_png(target, hr)
    except OSError as e:
        return row, f"{target}: cannot write the output image ({e.strerror or e})"
    return row, None


def _key(r: dict) -> tuple[str, float]:
    return r["dataset"], float(r["scale"])


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock for read-modify-writes of ``path``, held until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def merge_summary(path: Path, record: dict, results: list[dict], errors: list[str], world: int) -> list[str]:
    """``summary.json`` with this run's results added (a (dataset, scale) run again replaces its entry);
    returns notes on what was replaced. Runs at once merge (see the module docstring)."""
    with _locked(path):
        return _merge(path, record, results, errors, world)


def _merge(path: Path, record: dict, results: list[dict], errors: list[str], world: int) -> list[str]:
    old = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
    kept = [r for r in old.get("results", []) if _key(r) not in {_key(n) for n in results}]
    notes = [f"replaced the earlier results of {r['dataset']} x{float(r['scale']):g} in {path}"
             for r in old.get("results", []) if _key(r) in {_key(n) for n in results}]
    runs = [*old.get("runs", []), {**record, "processes": world}]
    for r in results:
        r["run"] = len(runs) - 1
    summary = {**{k: v for k, v in record.items() if k in ("checkpoint", "model")},
               "results": kept + results, "errors": errors, "runs": runs}
    write_text(path, json.dumps(summary, indent=2, default=str))
    return notes


def _cell(v: float | None, width: int, digits: int) -> str:
    return f"{v:>{width}.{digits}f}" if v is not None else f"{'-':>{width}}"


def run_benchmarks(predict: Predict | dict[float, Predict], run_dir: Path, datasets: list[str],
                   scales: list[float], device: torch.device, test_y_channel: bool = True, save: bool = True,
                   record: dict | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> int:
    """Evaluate every dataset at every scale; print and save a summary. Returns the exit status. Under a
    process group (torchrun) every rank runs its shard of the images and rank 0 writes the merged CSVs and
    summary, identical per image to a one-process run. ``record`` (the checkpoint, the command, versions) is
    stored in ``summary.json`` and each ``metrics.csv`` row."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    record = record or {}
    labels = dataset_labels(datasets)
    stamp = {k: v for k, v in (("checkpoint", record.get("checkpoint", {}).get("name")),
                               ("sha256", record.get("checkpoint", {}).get("sha256"))) if v}
    results = []
    for d in datasets:
        for s in scales:
            label = labels[str(Path(d))]
            out = run_dir / label / scale_tag(s) if save else None
            run = predict[s] if isinstance(predict, dict) else predict  # a predictor per scale (--outscale)
            res = gather_result(evaluate_folder(run, Path(d), s, out, device, test_y_channel, progress=rank == 0,
                                                shard=(rank, world), label=label, max_pixels=max_pixels))
            if rank == 0:
                write_metrics(out, res, stamp)
            results.append(res)
    summary = [r.summary() for r in results]
    errors = [e for r in results for e in r.errors]
    if rank != 0:
        return 1 if errors else 0
    notes: list[str] = []
    try:
        notes = merge_summary(run_dir / "summary.json", record, summary, errors, world)
    except OSError as e:
        errors.append(f"{run_dir / 'summary.json'}: cannot write ({e.strerror or e})")
    print(f"\n{'dataset':<14}{'scale':>6}{'PSNR':>9}{'SSIM':>8}{'images':>8}{'failed':>8}{'s/img':>8}")
    for r in summary:
        print(f"{r['dataset']:<14}{r['scale']:>6g}{_cell(r['psnr'], 9, 3)}{_cell(r['ssim'], 8, 4)}"
              f"{r['images']:>8}{r['failed']:>8}{_cell(r['sec_per_image'], 8, 3)}")
    for n in notes:
        print(f"note: {n}")
    print(f"summary: {run_dir / 'summary.json'}")
    if errors:
        print(f"\n{len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0
