"""Where a full evaluation spends its time: the released CARN-M on Set5+Set14 at x2/x3/x4 (what CI runs).

    python scripts/bench_eval.py --ckpt_path checkpoint/carn_m.pth --benchmarks datasets/benchmark/Set5 datasets/benchmark/Set14

"before": a sequential loop as the authors' sample.py runs (read, plain eager forward, quantize, write PNGs,
score, one after the other). "after": this project's sampler (background loading and PNG writing/scoring
overlapped with the network, fast inference path). Prints total wall time and the share outside the forward.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from srkit.weights.load import load_model
from srkit.data import metrics
from srkit.data.benchmark import find_pairs, load_pair
from srkit.data.imageio import write_png
from srkit.inference.evaluate import evaluate_folder, write_metrics
from srkit.inference.predictor import Predictor, to_tensor, to_uint8


def sequential(net, benches, out: Path) -> tuple[float, float]:
    fwd, t0 = 0.0, time.perf_counter()
    for b in benches:
        for s in (2, 3, 4):
            for pair in find_pairs(b, s)[0]:
                hr, lr = load_pair(pair, s)
                t = time.perf_counter()
                with torch.no_grad():
                    sr = net(to_tensor(lr, torch.device("cpu")), s)
                fwd += time.perf_counter() - t
                sr8 = to_uint8(sr)
                write_png(out / b.name / f"x{s}" / "SR" / pair.name, sr8)
                write_png(out / b.name / f"x{s}" / "HR" / pair.name, hr)
                metrics.psnr(sr8, hr, s), metrics.ssim(sr8, hr, s)
    return time.perf_counter() - t0, fwd


def pipelined(net, benches, out: Path) -> tuple[float, float]:
    predict = Predictor(net)  # as the sample CLI runs it
    fwd, t0 = 0.0, time.perf_counter()
    for b in benches:
        for s in (2, 3, 4):
            r = evaluate_folder(predict, b, s, out / b.name / f"x{s}", torch.device("cpu"), progress=False)
            write_metrics(out / b.name / f"x{s}", r)
            fwd += sum(x["seconds"] for x in r.rows)
    return time.perf_counter() - t0, fwd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", required=True)
    p.add_argument("--benchmarks", nargs="+", type=Path, required=True)
    a = p.parse_args()
    net, _ = load_model(a.ckpt_path)
    with tempfile.TemporaryDirectory() as d:
        for label, fn in (("before (sequential, plain forward)", sequential), ("after (pipelined, fast path)", pipelined)):
            wall, fwd = fn(net, a.benchmarks, Path(d) / label[:5])
            print(f"{label:<38} total {wall:6.1f} s, forward {fwd:6.1f} s, outside the forward {100 * (wall - fwd) / wall:4.1f}%")


if __name__ == "__main__":
    main()
