"""The bf16 streamed kernels (srkit/inference/fast/cpu_bf16.py) per block, at one size: each against the plain
float32 ops (max |difference|), and timed, taking turns, against the float32 streamed kernel and oneDNN's bf16
convs through PyTorch (what the bf16 path ran before).

    python scripts/bench_bf16_kernels.py                 # 640x360 (a x2 CARN's body at 1280x720 output)
    python scripts/bench_bf16_kernels.py --hw 180 320 --runs 9
    SRKIT_BF16_AMX=0 python scripts/bench_bf16_kernels.py   # the AVX512-BF16 path on a CPU with AMX

On the AMX path the dense convs run directly whatever "winograd" says (the two lines then time the same kernel).

    python scripts/bench_bf16_kernels.py --cells carn_m:2 carn:4 overnet_x4:3   # whole models instead

``--cells``: each model (random weights, scripts/bench_inference.py's build) prepared in fp32 and in bf16, timed
taking turns in this process at 1280x720 output: the fp32 / bf16 time and each one's max |difference| from the
plain float32 forward.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from srkit.inference.fast import cpu_fp32 as cpu_kernels
from srkit.inference.fast import FusedResidual, cpu_bf16


def timed(fns: dict, runs: int) -> dict:
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def body(kind: str) -> nn.Sequential:
    g = 4 if kind == "grouped" else 1
    mods = [nn.Conv2d(64, 64, 3, 1, 1, groups=g), nn.ReLU(), nn.Conv2d(64, 64, 3, 1, 1, groups=g)]
    if kind == "grouped":
        mods += [nn.ReLU(), nn.Conv2d(64, 64, 1)]
    seq = nn.Sequential(*mods)
    for m in seq:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=(2 / (m.in_channels // m.groups * m.kernel_size[0] ** 2)) ** 0.5 * 0.5)
            nn.init.normal_(m.bias, std=0.05)
    return seq


def models(cells: list[str], runs: int) -> None:
    """fp32 vs bf16 prepared models, taking turns in this process."""
    from bench_inference import build, shape_of  # this script's folder is on the path when it runs
    from srkit.inference.fast import prepare_fast, to_fast_input
    for cell in cells:
        name, s = cell.split(":")
        s = int(s)
        net, _ = build(name, s)
        x = torch.rand(shape_of(s))
        sides = {"fp32": (prepare_fast(net), to_fast_input(x)),
                 "bf16": (prepare_fast(net, half=torch.bfloat16), to_fast_input(x, torch.bfloat16))}
        with torch.inference_mode():
            ref = net(x, s)
            err = {k: (f(xi, s).float() - ref).abs().max().item() for k, (f, xi) in sides.items()}
            t = timed({k: (lambda f=f, xi=xi: f(xi, s)) for k, (f, xi) in sides.items()}, runs)
        print(f"{name} x{s}: fp32 {t['fp32'] * 1e3:.0f} ms, bf16 {t['bf16'] * 1e3:.0f} ms, fp32 / bf16 "
              f"{t['fp32'] / t['bf16']:.2f}; max |diff| from the plain forward: fp32 {err['fp32']:.1e}, "
              f"bf16 {err['bf16']:.1e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", type=int, nargs=2, default=(360, 640))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--cells", nargs="+", default=None, help="model:scale ... (whole models instead of blocks)")
    args = ap.parse_args()
    if args.cells:
        models(args.cells, args.runs)
        return
    h, w = args.hw
    lib = cpu_bf16._library()
    if lib is None:
        raise SystemExit(f"the bf16 kernels do not run here: {cpu_bf16.unavailable_reason()}")
    print("bf16 path:", "AMX-BF16" if cpu_bf16._use_amx(lib) else "AVX512-BF16")
    torch.manual_seed(0)
    x = torch.rand(1, 64, h, w).contiguous(memory_format=torch.channels_last)
    xb = x.to(torch.bfloat16)
    with torch.inference_mode():
        for kind in ("dense", "grouped"):
            seq = body(kind)
            ref = torch.relu(seq(xb.float()) + xb.float())
            fp32 = cpu_kernels.StreamedResidual.from_body(list(seq))
            out32 = torch.empty_like(x)
            onednn = FusedResidual(seq).to(torch.bfloat16).to(memory_format=torch.channels_last)
            fns = {"fp32 kernel": lambda: fp32(x, out32), "oneDNN bf16": lambda: onednn(xb)}
            outb = torch.empty_like(xb)
            for wino in ((False, True) if kind == "dense" else (False,)):
                k = cpu_bf16.ResidualBF16.from_body(list(seq))
                k.winograd = wino
                assert k(xb, outb)
                err = (outb.float() - ref).abs().max().item()
                print(f"{kind} bf16 {'winograd' if wino else 'direct'}: max |bf16 - fp32 ops| = {err:.3g} "
                      f"(output max {ref.abs().max().item():.3g})")
                fns[f"bf16 {'winograd' if wino else 'direct'}"] = (lambda k=k: k(xb, outb))
            t = timed(fns, args.runs)
            print(f"{kind} block {h}x{w}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items()))
        # the cascade fusions: 1x1 over 2..4 blocks of the buffer
        for n in (2, 3, 4):
            buf = torch.rand(h * w, 64 * 4)
            conv = nn.Conv2d(64 * n, 64, 1)
            rows32 = buf[:, :64 * n]
            rowsb = buf.to(torch.bfloat16)[:, :64 * n]
            ref = torch.relu(rowsb.float() @ conv.weight.view(64, -1).t() + conv.bias)
            pb, bb = cpu_bf16.pack_fuse(conv.weight), cpu_bf16.float_bits(conv.bias)
            p32 = cpu_kernels.pack_fuse(conv.weight)
            y = cpu_bf16.fuse1x1(rowsb, pb, bb)
            err = (y.float() - ref).abs().max().item()
            wb = conv.weight.view(64, -1).to(torch.bfloat16)
            fns = {"fp32 kernel": lambda: cpu_kernels.fuse1x1(rows32, p32, conv.bias),
                   "bf16 kernel": lambda: cpu_bf16.fuse1x1(rowsb, pb, bb),
                   "torch bf16 addmm": lambda: torch.addmm(conv.bias.to(torch.bfloat16), rowsb, wb.t()).relu_()}
            t = timed(fns, args.runs)
            print(f"fuse {n}x64 -> 64: max err {err:.3g}; " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items()))
        # a dense upsampling conv 64 -> 256 (+ ReLU)
        conv = nn.Conv2d(64, 256, 3, 1, 1)
        ref = torch.relu(F.conv2d(xb.float(), conv.weight, conv.bias, padding=1))
        fp32 = cpu_kernels.StreamedConv3x3.from_conv(conv, True)
        fns = {"fp32 kernel": lambda: fp32(x)}
        for wino in (False, True):
            k = cpu_bf16.ConvBF16.from_conv(conv, True)
            k.winograd = wino
            err = (k(xb).float() - ref).abs().max().item()
            print(f"conv 64 -> 256 bf16 {'winograd' if wino else 'direct'}: max err {err:.3g}")
            fns[f"bf16 {'winograd' if wino else 'direct'}"] = (lambda k=k: k(xb))
        wb, bb = conv.weight.to(torch.bfloat16).contiguous(memory_format=torch.channels_last), conv.bias.to(torch.bfloat16)
        fns["oneDNN bf16"] = lambda: torch.ops.mkldnn._convolution_pointwise(xb, wb, bb, [1, 1], [1, 1], [1, 1], 1,
                                                                             "relu", [], "")
        t = timed(fns, args.runs)
        print(f"conv 64 -> 256 {h}x{w}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items()))


if __name__ == "__main__":
    main()
