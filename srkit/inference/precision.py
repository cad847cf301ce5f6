"""The precision inference runs in: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.

``auto`` is fp16 on CUDA; on the CPU, bf16 where the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16,
:func:`native_bf16`) *and* the bf16 fast path measured faster than the float32 one on that unit and CPU family
(``BF16_FASTER_ON``, :func:`bf16_faster`); fp32 elsewhere. Upscaling defaults to ``auto``; evaluation
(benchmark scores, the report) stays fp32 unless asked, so the published numbers stay the authors'.

bf16 on the CPU runs the bf16 streamed kernels (srkit.inference.fast.cpu_bf16: bf16 activations and weights,
float32 sums; AMX tile products where the CPU has AMX-BF16, vdpbf16ps elsewhere) where they serve, oneDNN's
bf16 convolutions elsewhere, and the image-side convs in float32 (srkit.inference.fast). fp32 / bf16 time of
the prepared models at 1280x720 output, in one process taking turns (scripts/bench_bf16_kernels.py --cells):
- a 2-core Xeon with AMX-BF16: 1.4-4.1x on every registered model and scale (scripts/bench_inference.py
  --peers at both precisions agrees: against OpenVINO's defaults the fp32 path ran 0.33-1.53x, the bf16 one
  0.82-2.69x), so ``auto`` is bf16 there;
- a 2-core AMD EPYC Zen 5 (family 26: AVX512-BF16, no AMX): 1.21-1.98x on every registered model and scale,
  so ``auto`` is bf16 there too;
- not on AVX512-BF16 alone elsewhere: on the Xeon with AMX turned off, vdpbf16ps does half the float32 FMA's
  multiply-adds a cycle and its kernels lost to the float32 ones; Zen 4 (family 25) is unmeasured.
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
# where the CPU's bf16 fast path measured faster than its float32 one (see above): a bf16 unit anywhere
# ("amx_bf16"), or a unit on one CPU family ("avx512_bf16@AuthenticAMD:26", vendor and family as /proc/cpuinfo
# gives them)
BF16_FASTER_ON: tuple[str, ...] = ("amx_bf16", "avx512_bf16@AuthenticAMD:26")


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=None)
def _cpu_family() -> str:
    """"vendor:family" as /proc/cpuinfo gives them (e.g. "AuthenticAMD:26"), or "" where it does not."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("vendor_id", "cpu family"):
                fields.setdefault(key.strip(), value.strip())
            if len(fields) == 2:
                return f"{fields['vendor_id']}:{fields['cpu family']}"
    except OSError:
        pass
    return ""


def bf16_faster() -> bool:
    """Whether this CPU has a native bf16 unit on which the bf16 fast path measured faster (``BF16_FASTER_ON``)."""
    unit = native_bf16()
    return bool(unit) and (unit in BF16_FASTER_ON or f"{unit}@{_cpu_family()}" in BF16_FASTER_ON)


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
        return torch.bfloat16 if device.type == "cpu" and bf16_faster() else None
    dtype = DTYPES[precision]
    if dtype is not None and not fast:
        raise ValueError(f"{precision} runs on the fast path; drop --plain")
    return dtype
