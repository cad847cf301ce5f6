"""Inference speed: the authors' plain eager float32 forward vs this project's fast path, one process.

    python scripts/bench_inference.py [--models carn_m carn overnet] [--scales 2 3 4] [--runs 5]
    python scripts/bench_inference.py --ort --models carn_m carn overnet overnet_x4 --scales 2 3 4 --runs 3

``--ort`` compares the fast path with ONNX Runtime instead (see ``vs_ort``): each side in its own process.

For a 1280x720 output (input 1280/s x 720/s) prints ms per image (median of --runs after a warm-up; the two
paths alternate run by run so machine drift hits both), the speed-up, the max |fast - plain| difference, and
achieved Mult-Adds/s as a fraction of this machine's measured float32 peak (a large matmul timed in the same run).

On CPU it runs in two phases, because the allocator setting the fast path makes (srkit.memory) is
process-wide and cannot be undone:
1. glibc's default allocator, as the authors' code runs: plain vs the fast model rewrites (srkit.fast);
2. after ``retain_freed_memory()``: plain again, and the full fast path (rewrites + retained memory).
"speed-up" is phase-1 plain over phase-2 fast (what a user of the authors' code gains by switching); the
other columns split it into the rewrites alone (phase 1) and the allocator alone (plain, phase 2 vs 1).
On CUDA there is one phase, and the fast path also runs in fp16.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from srkit import registry
from srkit.complexity import multadds_1280x720
from srkit.fast import prepare_fast, to_fast_input
from srkit.memory import retain_freed_memory


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, runs: int, device: torch.device) -> float:
    return time_alternating([fn], runs, device)[0]


def time_alternating(fns: list, runs: int, device: torch.device) -> list[float]:
    """Median seconds of each function; one warm-up each, then the functions take turns."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def peak_flops(device: torch.device, dtype=torch.float32) -> float:
    """Multiply-adds per second of a large matmul (the machine's practical peak: the best of 7 runs)."""
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.rand(n, n, device=device, dtype=dtype), torch.rand(n, n, device=device, dtype=dtype)
    best = float("inf")
    a @ b
    for _ in range(7):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return n ** 3 / best


def build(name: str, scale: float) -> torch.nn.Module:
    """A registered family's reference model with random weights: ``name`` is a model ("carn", "carn_m",
    "overnet"; a family with one example per scale, OverNet, uses the example made for ``scale``) or an
    example's name ("overnet_x4")."""
    by_name = {e.name: e for f in registry.families() for e in f.examples}
    if name in by_name:  # an example by name, e.g. overnet_x4 at x2 or x2.5 (overscaled from x5)
        ex, fam = by_name[name], registry.family_of_model(by_name[name].arch["model"])
    else:
        fam = registry.family_of_model(name)
        examples = [e for e in fam.examples if e.arch.get("model") == name]
        ex = next((e for e in examples if scale in e.scales), examples[0])
    torch.manual_seed(0)
    return fam.build(ex.arch).eval()


def _case(name: str, s: int, device: torch.device):
    net = build(name, s).to(device)
    x = torch.rand(1, 3, round(720 / s), round(1280 / s), device=device)
    return net, x, prepare_fast(net), to_fast_input(x)


def _pair(net, x, fast, xf, s: int, runs: int, device: torch.device) -> tuple[float, float, float]:
    """(plain s, fast s, max |fast - plain|). The plain forward runs under no_grad, as the authors' code does."""
    def plain():
        with torch.no_grad():
            return net(x, s)

    def quick():
        with torch.inference_mode():
            return fast(xf, s)

    plain_t, fast_t = time_alternating([plain, quick], runs, device)
    return plain_t, fast_t, (quick().float() - plain()).abs().max().item()


def _ort_worker(conn, onnx_path: str, threads: int, shape: tuple) -> None:
    """ONNX Runtime's side: one session, timed runs on request (see ``vs_ort``)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).numpy()
    _serve(conn, lambda: sess.run(None, {"lr": x})[0])


def _project_worker(conn, name: str, scale: int, threads: int, shape: tuple) -> None:
    """The project's side: the fast path with retained memory, as the command-line tools run it."""
    torch.set_num_threads(threads)
    retain_freed_memory()
    fast = prepare_fast(build(name, scale))
    x = to_fast_input(torch.rand(*shape, generator=torch.Generator().manual_seed(0)))

    def run():
        with torch.inference_mode():
            return fast(x, scale).numpy()
    _serve(conn, run)


def _serve(conn, fn) -> None:
    out = fn()  # warm-up
    conn.send(out)
    while conn.recv() == "run":
        t0 = time.perf_counter()
        fn()
        conn.send(time.perf_counter() - t0)


def vs_ort(name: str, s: int, runs: int) -> tuple[float, float, float]:
    """(ORT s, project s, max |project - ORT|) for a 1280x720 output. Each side runs in its own process (same
    thread count; ORT runs the project's own ONNX export of the same weights), and the two take turns, one run
    each, so drift of the shared machine hits both; medians of ``runs``."""
    import multiprocessing as mp
    import tempfile
    from pathlib import Path

    from srkit.export_onnx import export
    threads = torch.get_num_threads()
    shape = (1, 3, round(720 / s), round(1280 / s))
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = export(build(name, s), s, Path(tmp) / "model.onnx", fixed_hw=None if float(s).is_integer() else shape[2:])
        sides = []
        for target, args in ((_ort_worker, (str(path), threads, shape)),
                             (_project_worker, (name, s, threads, shape))):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, *args), daemon=True)
            proc.start()
            sides.append((parent, proc))
        outs = [conn.recv() for conn, _ in sides]  # both warmed up
        times: list[list[float]] = [[], []]
        for _ in range(runs):
            for (conn, _), t in zip(sides, times):
                conn.send("run")
                t.append(conn.recv())
        for conn, proc in sides:
            conn.send("stop")
            proc.join()
    return statistics.median(times[0]), statistics.median(times[1]), float(abs(outs[1] - outs[0]).max())


def main_ort(models: list[str], scales: list[int], runs: int) -> None:
    print(f"ONNX Runtime (CPU provider) vs the project's fast path, {torch.get_num_threads()} threads each, "
          f"1280x720 output, median of {runs} alternating runs")
    print(f"{'model':<11}{'scale':>6}{'ORT ms':>10}{'project ms':>12}{'project/ORT':>13}{'max diff':>10}")
    for m in models:
        for s in scales:
            ort_t, ours, diff = vs_ort(m, s, runs)
            print(f"{m:<11}{s:>6}{ort_t * 1e3:>10.0f}{ours * 1e3:>12.0f}{ort_t / ours:>12.2f}x{diff:>10.1e}",
                  flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["carn_m", "carn"])
    p.add_argument("--scales", type=float, nargs="+", default=[2, 3, 4])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--ort", action="store_true", help="compare with ONNX Runtime instead (CPU; see vs_ort)")
    args = p.parse_args(argv)
    args.scales = [int(s) if float(s).is_integer() else s for s in args.scales]
    if args.ort:
        main_ort(args.models, args.scales, args.runs)
        return
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    peak = peak_flops(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; measured fp32 matmul peak {peak / 1e9:.1f} G mult-adds/s", flush=True)
    cases = [(m, s) for m in args.models for s in args.scales]
    if device.type == "cuda":
        print(f"{'model':<8}{'scale':>6}{'plain ms':>10}{'fast ms':>10}{'speed-up':>10}{'max diff':>10}"
              f"{'fast %peak':>11}{'fp16 ms':>10}{'fp16 x':>8}")
        for m, s in cases:
            net, x, fast, xf = _case(m, s, device)
            plain_t, fast_t, diff = _pair(net, x, fast, xf, s, args.runs, device)
            half = prepare_fast(net, half=torch.float16)
            xh = to_fast_input(x, torch.float16)
            with torch.inference_mode():
                h_t = _time(lambda: half(xh, s), args.runs, device)
            ma = multadds_1280x720(net.cpu(), s, exact_input=False) * 1e9
            print(f"{m:<8}{s:>6}{plain_t * 1e3:>10.1f}{fast_t * 1e3:>10.1f}{plain_t / fast_t:>9.2f}x{diff:>10.1e}"
                  f"{100 * ma / fast_t / peak:>10.1f}%{h_t * 1e3:>10.1f}{plain_t / h_t:>7.2f}x", flush=True)
        return
    phase1 = {}
    for m, s in cases:  # glibc's default allocator: how the authors' code runs
        phase1[m, s] = _pair(*_case(m, s, device), s, args.runs, device)
        print(f"  phase 1 {m} x{s}: plain {phase1[m, s][0] * 1e3:.0f} ms, rewrites {phase1[m, s][1] * 1e3:.0f} ms",
              flush=True)
    retained = retain_freed_memory()
    peak = max(peak, peak_flops(device))  # the machine's speed drifts: the better of two measurements
    print(f"retain_freed_memory(): {retained}; fp32 matmul peak, best of both measurements {peak / 1e9:.1f} G/s")
    print(f"{'model':<8}{'scale':>6}{'plain ms':>10}{'fast ms':>10}{'speed-up':>10}{'rewrites':>10}"
          f"{'allocator':>10}{'max diff':>10}{'fast %peak':>11}")
    for m, s in cases:
        net, x, fast, xf = _case(m, s, device)
        plain2, fast2, diff = _pair(net, x, fast, xf, s, args.runs, device)
        plain1, fast1, diff1 = phase1[m, s]
        ma = multadds_1280x720(net, s, exact_input=False) * 1e9
        print(f"{m:<8}{s:>6}{plain1 * 1e3:>10.0f}{fast2 * 1e3:>10.0f}{plain1 / fast2:>9.2f}x{plain1 / fast1:>9.2f}x"
              f"{plain1 / plain2:>9.2f}x{max(diff, diff1):>10.1e}{100 * ma / fast2 / peak:>10.1f}%", flush=True)


if __name__ == "__main__":
    main()
