"""Inference speed: the authors' plain eager float32 forward vs this project's fast path, same process.

    python scripts/bench_inference.py [--models carn_m carn overnet] [--scales 2 3 4] [--runs 5]

For a 1280x720 output (input 1280/s x 720/s) prints ms per image (median of --runs after a warm-up),
the speed-up, the max |fast - plain| difference, and achieved Mult-Adds/s as a fraction of this machine's
measured float32 peak (a large matmul timed in the same run). On CUDA the fast path also runs in fp16.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from carn import CARN, CARN_M  # noqa: E402
from overnet import OverNet  # noqa: E402
from srkit.complexity import multadds_1280x720  # noqa: E402
from srkit.fast import prepare_fast, to_fast_input  # noqa: E402


def _time(fn, runs: int, device: torch.device) -> float:
    fn()
    out = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def peak_flops(device: torch.device, dtype=torch.float32) -> float:
    """Multiply-adds per second of a large matmul (the machine's practical peak)."""
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.rand(n, n, device=device, dtype=dtype), torch.rand(n, n, device=device, dtype=dtype)
    t = _time(lambda: a @ b, 5, device)
    return n ** 3 / t


def build(name: str, scale: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return {"carn": lambda: CARN(), "carn_m": lambda: CARN_M(), "overnet": lambda: OverNet(upscale=scale + 1)}[name]().eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["carn_m", "carn"])
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    peak = peak_flops(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; measured fp32 matmul peak {peak / 1e9:.1f} G mult-adds/s")
    print(f"{'model':<8}{'scale':>6}{'plain ms':>10}{'fast ms':>10}{'speed-up':>10}{'max diff':>10}"
          f"{'fast %peak':>11}" + (f"{'fp16 ms':>10}{'fp16 x':>8}" if device.type == "cuda" else ""))
    for m in args.models:
        for s in args.scales:
            net = build(m, s).to(device)
            x = torch.rand(1, 3, 720 // s, 1280 // s, device=device)
            fast = prepare_fast(net)
            xf = to_fast_input(x)
            with torch.no_grad():
                plain_t = _time(lambda: net(x, s), args.runs, device)
                ref = net(x, s)
            with torch.inference_mode():
                fast_t = _time(lambda: fast(xf, s), args.runs, device)
                diff = (fast(xf, s).float() - ref).abs().max().item()
            ma = multadds_1280x720(net.cpu(), s, exact_input=False) * 1e9
            line = (f"{m:<8}{s:>6}{plain_t * 1e3:>10.1f}{fast_t * 1e3:>10.1f}{plain_t / fast_t:>9.2f}x"
                    f"{diff:>10.1e}{100 * ma / fast_t / peak:>10.1f}%")
            if device.type == "cuda":
                half = prepare_fast(net.to(device), half=torch.float16)
                xh = to_fast_input(x, torch.float16)
                with torch.inference_mode():
                    h_t = _time(lambda: half(xh, s), args.runs, device)
                line += f"{h_t * 1e3:>10.1f}{plain_t / h_t:>7.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
