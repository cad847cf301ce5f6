"""Inference speed, 1280x720 output (input 1280/s x 720/s), median of --runs after a warm-up.

    python scripts/bench_inference.py                              # plain eager forward vs the fast path
    python scripts/bench_inference.py --peers --json out.json      # the project vs ONNX Runtime and OpenVINO
    python scripts/bench_inference.py --peers --project fast --kernels off

Without ``--peers``: the authors' plain eager float32 forward and the fast path (srkit.inference.fast) in one
process, taking turns run by run so drift hits both; the speed-up, the max |fast - plain| and the achieved
Mult-Adds/s as a share of this machine's float32 matmul peak (measured in the same run). On CUDA the fast path
also runs in fp16.

``--peers`` (CPU): every side in its own process with the same thread count, taking turns, one run each:
- the project as a user calls it: ``--project api`` (the default) is ``srkit.api``'s ``Upscaler`` with its
  defaults (tiles chosen per image, fast path) on a tensor; ``--project fast`` forces the fast path on the whole
  image (``prepare_fast``);
- ONNX Runtime's CPU provider on the project's own ONNX export of the same weights (dynamic shapes);
- OpenVINO (``pip install -r requirements-bench.txt``) on the same export, reshaped to the input's static
  shape (its best configuration): ``openvino`` float32 (``INFERENCE_PRECISION_HINT=f32``), ``openvino_default``
  as its users run it, with no hint (bf16 on a CPU with native bf16; the precision it reports is printed).
``--precision`` is the project's (default: ``auto``, the API's default); the precision each side ran is printed
and stored.
Outputs are compared. ``--kernels`` sets the project's streamed CPU kernels: auto (the best this CPU runs),
avx512, avx2 (forced), off (oneDNN only). ``--json`` writes the results with the machine (date, CPU model, ISA,
library versions) for scripts/perf_page.py, which makes docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from srkit.core import registry
from srkit.core.complexity import multadds_1280x720
from srkit.inference.fast import prepare_fast, to_fast_input
from srkit.inference.precision import NAMES, PRECISIONS, resolve

ALL_CELLS = [(m, s) for m in ("carn_m", "carn", "overnet") for s in (2, 3, 4)] + [("overnet_x4", 2), ("overnet_x4", 3)]
KERNEL_ENV = {"auto": {}, "avx512": {"SRKIT_CPU_KERNELS": "avx512"}, "avx2": {"SRKIT_CPU_KERNELS": "avx2"},
              "off": {"SRKIT_CPU_KERNELS": "off"}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


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


def build(name: str, scale: float) -> tuple[torch.nn.Module, dict]:
    """A registered family's reference model with random weights and its arch: ``name`` is a model (a family
    with one example per scale uses the example made for ``scale``) or an example's name."""
    by_name = {e.name: e for f in registry.families() for e in f.examples}
    if name in by_name:  # an example by name, e.g. one overscaling model at a lower or real scale
        ex, fam = by_name[name], registry.family_of_model(by_name[name].arch["model"])
    else:
        fam = registry.family_of_model(name)
        examples = [e for e in fam.examples if e.arch.get("model") == name]
        ex = next((e for e in examples if scale in e.scales), examples[0])
    torch.manual_seed(0)
    return fam.build(ex.arch).eval(), {"family": fam.name, **ex.arch}


def shape_of(scale: float) -> tuple[int, int, int, int]:
    return (1, 3, round(720 / scale), round(1280 / scale))


# ---- without --peers: plain vs fast in one process ---------------------------------------------------------

def plain_vs_fast(models: list[str], scales: list[float], runs: int, device: torch.device) -> list[dict]:
    peak = peak_flops(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; measured fp32 matmul peak {peak / 1e9:.1f} G mult-adds/s", flush=True)
    print(f"{'model':<11}{'scale':>6}{'plain ms':>10}{'fast ms':>10}{'speed-up':>10}{'max diff':>10}{'fast %peak':>11}"
          + (f"{'fp16 ms':>10}{'fp16 x':>8}" if device.type == "cuda" else ""))
    rows = []
    for m in models:
        for s in scales:
            net, _ = build(m, s)
            net = net.to(device)
            x = torch.rand(*shape_of(s), device=device)
            fast, xf = prepare_fast(net), to_fast_input(x)

            def plain():
                with torch.no_grad():
                    return net(x, s)

            def quick():
                with torch.inference_mode():
                    return fast(xf, s)
            fns = [plain, quick]
            if device.type == "cuda":
                half, xh = prepare_fast(net, half=torch.float16), to_fast_input(x, torch.float16)

                def halfp():
                    with torch.inference_mode():
                        return half(xh, s)
                fns.append(halfp)
            t = time_alternating(fns, runs, device)
            diff = (quick().float() - plain()).abs().max().item()
            ma = multadds_1280x720(build(m, s)[0], s, exact_input=False) * 1e9
            row = {"model": m, "scale": s, "plain_ms": t[0] * 1e3, "fast_ms": t[1] * 1e3, "max_diff": diff}
            line = (f"{m:<11}{s:>6g}{t[0] * 1e3:>10.1f}{t[1] * 1e3:>10.1f}{t[0] / t[1]:>9.2f}x{diff:>10.1e}"
                    f"{100 * ma / t[1] / peak:>10.1f}%")
            if device.type == "cuda":
                row["fp16_ms"] = t[2] * 1e3
                line += f"{t[2] * 1e3:>10.1f}{t[0] / t[2]:>7.2f}x"
            print(line, flush=True)
            rows.append(row)
    return rows


# ---- --tiles: the API's default tile choice against the whole image ------------------------------------------

def tiles_vs_whole(cells: list[tuple[str, float]], runs: int) -> list[dict]:
    from srkit.api import Upscaler
    rows = []
    for m, s in cells:
        net, arch = build(m, s)
        default, whole = Upscaler(net, arch, torch.device("cpu")), Upscaler(net, arch, torch.device("cpu"), tile=0)
        x = torch.rand(*shape_of(s))
        tiles = default.predict.tiles(*shape_of(s)[2:], s)
        t = time_alternating([lambda: default(x, s), lambda: whole(x, s)], runs, torch.device("cpu"))
        rows.append({"model": m, "scale": s, "tiles": "whole image" if tiles == (0, 0) else f"{tiles[1]}x{tiles[0]}",
                     "default_ms": t[0] * 1e3, "whole_ms": t[1] * 1e3})
        print(f"{m:<11} x{s:<5g} tiles {rows[-1]['tiles']:>12}  default {t[0] * 1e3:7.0f} ms  whole {t[1] * 1e3:7.0f} ms"
              f"  cost {100 * (t[0] / t[1] - 1):+.1f}%", flush=True)
    return rows


# ---- --peers: one process per side --------------------------------------------------------------------------

def _serve(conn, fn, info=None) -> None:
    """Warm up, then time ``fn`` at each "run"; at "stop", send ``info()`` (None without it)."""
    out = fn()  # warm-up
    conn.send(out)
    while conn.recv() == "run":
        time.sleep(0.5)  # the side before may leave threads spinning after its turn: let them go idle first
        t0 = time.perf_counter()
        fn()
        conn.send(time.perf_counter() - t0)
    conn.send(info() if info is not None else None)


def _input(shape) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


def _ort_worker(conn, onnx_path: str, threads: int, shape: tuple) -> None:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    # no busy-waiting between runs: the sides take turns, and an idle side must not hold the cores
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    x = _input(shape).numpy()
    _serve(conn, lambda: sess.run(None, {"lr": x})[0])


def _openvino_worker(conn, onnx_path: str, threads: int, shape: tuple, hint: str | None = "f32") -> None:
    """OpenVINO on the export; ``hint``: its INFERENCE_PRECISION_HINT (None: its default, bf16 on a CPU with
    native bf16). Sends the precision it reports with its timings."""
    import openvino as ov
    core = ov.Core()
    model = core.read_model(onnx_path)
    model.reshape({model.input(0): list(shape)})
    config = {"INFERENCE_NUM_THREADS": str(threads), **({"INFERENCE_PRECISION_HINT": hint} if hint else {})}
    compiled = core.compile_model(model, "CPU", config)
    reported = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    request = compiled.create_infer_request()
    x = _input(shape).numpy()

    def run():
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()
    _serve(conn, run, lambda: reported)


def _project_worker(conn, name: str, scale: float, threads: int, shape: tuple, how: str, env: dict,
                    precision: str = "auto") -> None:
    os.environ.update(env)  # this process only: the kernel choice is read when the kernels are first used
    torch.set_num_threads(threads)
    net, arch = build(name, scale)
    x = _input(shape)
    if how == "api":  # what a user of the three-line API gets: its defaults, on a tensor
        from srkit.api import Upscaler
        up = Upscaler(net, arch, torch.device("cpu"), precision=precision)
        tiles: list[tuple[int, int]] = []  # what the default chose at each call (memory available then)

        def run():
            tiles.append(up.predict.tiles(*x.shape[2:], scale))
            return up(x, scale).numpy()
        _serve(conn, run, lambda: {"precision": up.predict.precision_name,
                                   "tiles": sorted({"whole image" if t == (0, 0) else f"{t[1]}x{t[0]}" for t in tiles})})
        return
    dtype = resolve(precision, torch.device("cpu"))
    fast, xf = prepare_fast(net, half=dtype), to_fast_input(x, dtype)

    def run():
        with torch.inference_mode():
            return fast(xf, scale).float().clamp(0, 1).numpy()
    _serve(conn, run, lambda: {"precision": NAMES[dtype]})


PEERS = ("onnxruntime", "openvino", "openvino_default")


def peers(name: str, s: float, runs: int, how: str, kernels: str, sides: tuple[str, ...],
          precision: str = "auto") -> dict:
    """Median ms of each side for a 1280x720 output, and max |project - peer|."""
    from srkit.inference.export_onnx import export
    threads = torch.get_num_threads()
    shape = shape_of(s)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        net, arch = build(name, s)
        path = export(net, s, Path(tmp) / "model.onnx", fixed_hw=None if float(s).is_integer() else shape[2:], arch=arch)
        targets = {"project": (_project_worker, (name, s, threads, shape, how, KERNEL_ENV[kernels], precision)),
                   "onnxruntime": (_ort_worker, (str(path), threads, shape)),
                   "openvino": (_openvino_worker, (str(path), threads, shape, "f32")),
                   "openvino_default": (_openvino_worker, (str(path), threads, shape, None))}
        procs = {}
        for side in ("project", *sides):
            target, args = targets[side]
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, *args), daemon=True)
            proc.start()
            procs[side] = (parent, proc)
        outs = {side: conn.recv() for side, (conn, _) in procs.items()}  # all warmed up
        times: dict[str, list[float]] = {side: [] for side in procs}
        for _ in range(runs):
            for side, (conn, _) in procs.items():
                conn.send("run")
                times[side].append(conn.recv())
        info = {}
        for side, (conn, proc) in procs.items():
            conn.send("stop")
            info[side] = conn.recv()
            proc.join()
    row = {"model": name, "scale": s, **{f"{k}_ms": statistics.median(v) * 1e3 for k, v in times.items()}}
    row["project_precision"] = info["project"]["precision"]
    if "tiles" in info["project"]:
        row["project_tiles"] = ", ".join(info["project"]["tiles"])
    for side in sides:
        if side.startswith("openvino"):
            row[f"{side}_precision"] = info[side]
    for side in sides:
        row[f"{side}_diff"] = float(abs(outs["project"] - outs[side]).max())
        row[f"project_vs_{side}"] = row[f"{side}_ms"] / row["project_ms"]
    return row


def machine() -> dict:
    import numpy as np
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "threads": torch.get_num_threads(), "isa": torch.backends.cpu.get_cpu_capability()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for mod in ("onnxruntime", "openvino"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    from srkit.inference.fast import backends, cpu_fp32
    info["kernels"] = cpu_fp32.variant() or f"none ({cpu_fp32.unavailable_reason()})"
    info["backends"] = [b["name"] for b in backends.describe() if b["available"]]
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["carn_m", "carn"])
    p.add_argument("--scales", type=float, nargs="+", default=[2, 3, 4])
    p.add_argument("--all_cells", action="store_true",
                   help="every model at its scales and one overscaling model at lower ones (" +
                        ", ".join(f"{m} x{s}" for m, s in ALL_CELLS) + ")")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--peers", action="store_true", help="the project vs ONNX Runtime and OpenVINO (CPU)")
    p.add_argument("--tiles", action="store_true", help="the API's default tiles vs the whole image (CPU)")
    p.add_argument("--project", choices=["api", "fast"], default="api")
    p.add_argument("--kernels", choices=sorted(KERNEL_ENV), default="auto")
    p.add_argument("--sides", nargs="+", choices=PEERS, default=list(PEERS),
                   help="openvino: INFERENCE_PRECISION_HINT=f32; openvino_default: no hint (bf16 where the CPU "
                        "has native bf16)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="the project's (the API's default: auto)")
    p.add_argument("--json", type=Path, default=None, help="also write the results and the machine here")
    p.add_argument("--label", default="", help="a name for this run in the JSON (e.g. 'API defaults, AVX-512')")
    args = p.parse_args(argv)
    args.scales = [int(s) if float(s).is_integer() else s for s in args.scales]
    if args.tiles:
        cells = ALL_CELLS if args.all_cells else [(m, s) for m in args.models for s in args.scales]
        result = {"kind": "tiles", "label": args.label, "runs": args.runs, "rows": tiles_vs_whole(cells, args.runs)}
    elif args.peers:
        cases = ALL_CELLS if args.all_cells else [(m, s) for m in args.models for s in args.scales]
        print(f"the project ({args.project}, kernels {args.kernels}) vs {', '.join(args.sides)}, "
              f"{torch.get_num_threads()} threads each, 1280x720 output, median of {args.runs} alternating runs")
        rows = []
        for m, s in cases:
            row = peers(m, s, args.runs, args.project, args.kernels, tuple(args.sides), args.precision)
            rows.append(row)
            print(f"{m:<11} x{s:<5g} project ({row['project_precision']}) {row['project_ms']:>7.0f} ms  " + "  ".join(
                f"{side}{' (' + row[f'{side}_precision'] + ')' if f'{side}_precision' in row else ''} "
                f"{row[f'{side}_ms']:>7.0f} ms ({row[f'project_vs_{side}']:.2f}x, diff "
                f"{row[f'{side}_diff']:.1e})" for side in args.sides)
                + (f"  tiles: {row['project_tiles']}" if "project_tiles" in row else ""), flush=True)
        result = {"kind": "peers", "label": args.label, "project": args.project, "kernels": args.kernels,
                  "precision": args.precision, "runs": args.runs, "rows": rows}
    else:
        device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
        result = {"kind": "plain_vs_fast", "label": args.label, "device": str(device), "runs": args.runs,
                  "rows": plain_vs_fast(args.models, args.scales, args.runs, device)}
    if args.json:
        result["machine"] = machine()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
