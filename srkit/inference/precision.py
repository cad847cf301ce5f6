"""The precision inference runs in: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.

``auto`` is fp16 on CUDA; on the CPU, bf16 where the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16,
:func:`native_bf16`) *and* the bf16 fast path measured faster than the float32 one on that unit
(``BF16_FASTER_ON``); fp32 elsewhere. Upscaling defaults to ``auto``; evaluation (benchmark scores, the report)
stays fp32 unless asked, so the published numbers stay the authors'.

bf16 on the CPU runs the bf16 streamed kernels (srkit.inference.fast.cpu_bf16: bf16 activations and weights,
float32 sums; AMX tile products where the CPU has AMX-BF16, vdpbf16ps elsewhere) where they serve, oneDNN's
bf16 convolutions elsewhere, and the image-side convs in float32 (srkit.inference.fast). Measured on a 2-core
Xeon with AMX-BF16, 1280x720 output, fp32 / bf16 time of the prepared models in one process taking turns
(scripts/bench_bf16_kernels.py --cells):
1.4-4.1x on every registered model and scale (scripts/bench_inference.py --peers at both precisions agrees:
against OpenVINO's defaults the fp32 path ran 0.33-1.53x, the bf16 one 0.82-2.69x), so ``auto`` is bf16 there.
On AVX512-BF16 without AMX (AMD Zen 4) the vdpbf16ps kernels are unmeasured (on the Xeon, vdpbf16ps does half
the float32 FMA's multiply-adds a cycle, and those kernels lost to the float32 ones), so ``auto`` stays fp32.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo's names for the CPU's bf16 dot-product units
# the bf16 units on which the CPU's bf16 fast path measured faster than its float32 one: AMX-BF16 (1.4-4.1x,
# see above); not AVX512-BF16 alone (unmeasured with the bf16 kernels; oneDNN's bf16 there ran 0.5-0.8x)
BF16_FASTER_ON: tuple[str, ...] = ("amx_bf16",)


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> str:
    """The CPU's bf16 unit ("amx_bf16" or "avx512_bf16"), or "" where it has none. A forced fp32 build of the
    streamed kernels (``SRKIT_CPU_KERNELS=avx2|avx512``) stands for a CPU of that class, which has none."""
    if os.environ.get("SRKIT_CPU_KERNELS", "").lower() in ("avx2", "avx512"):
        return ""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        return ""
    flags = _cpu_flags()
    return next((f for f in BF16_FLAGS if f in flags), "")


def resolve(precision: str, device: torch.device, fast: bool = True) -> torch.dtype | None:
    """The dtype the fast path runs in for ``precision`` on ``device`` (None: float32). ValueError for a name
    not in ``PRECISIONS`` or a 16-bit precision asked of the plain forward (``fast=False``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if not fast:
            return None  # the plain forward is the authors' float32 one
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and native_bf16() in BF16_FASTER_ON else None
    dtype = DTYPES[precision]
    if dtype is not None and not fast:
        raise ValueError(f"{precision} runs on the fast path; drop --plain")
    return dtype
