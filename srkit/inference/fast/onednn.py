"""oneDNN's fused convolutions (conv + ReLU / + residual + ReLU as one primitive) through PyTorch: the CPU
backend for every conv the streamed kernels do not take, in float32 on any x86 CPU and in bf16 on a CPU with
native bf16 units (oneDNN's bf16 kernels refuse other CPUs; ``F.conv2d`` would emulate them slowly).

It is the kernel PyTorch's own CPU compiler emits (``torch.ops.mkldnn._convolution_pointwise``); absent from
builds without oneDNN, where the fused modules run plain ops. Whether a fused form runs for a conv is probed
once on a tiny input (``probe``); only a failure there counts as unavailable."""
from __future__ import annotations

import warnings

import torch

from srkit.inference.fast.backends import Backend, register
from srkit.inference.precision import native_bf16

BUILD = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class OneDNNFallbackWarning(RuntimeWarning):
    """A fused oneDNN kernel is not available for a conv on this CPU / build; that conv runs plain ops."""


def _why_not(dtype: torch.dtype) -> str:
    if not BUILD:
        return "this PyTorch build has no oneDNN fused convolution"
    if dtype == torch.bfloat16 and not native_bf16():
        return "this CPU has no native bf16 units (AVX512-BF16 or AMX-BF16)"
    return ""


BACKEND_FP32 = register(Backend(
    "onednn_fp32", "cpu", (torch.float32,), "oneDNN (x86-64)", "fused conv + ReLU / + residual + ReLU",
    True, lambda: _why_not(torch.float32)))
BACKEND_BF16 = register(Backend(
    "onednn_bf16", "cpu", (torch.bfloat16,), "oneDNN on AVX512-BF16 or AMX-BF16",
    "fused conv + post-ops in bf16, fp32 accumulation", True, lambda: _why_not(torch.bfloat16)))


def serves(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fused primitive may run for ``x`` against ``weight``: the CPU, one dtype that oneDNN serves
    natively here, no autograd."""
    return (x.device.type == "cpu" and x.dtype == weight.dtype and not torch.is_grad_enabled()
            and (BACKEND_FP32 if x.dtype == torch.float32 else BACKEND_BF16).serves("cpu", x.dtype))


def conv(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor | None,
         padding: list[int], stride: list[int], dilation: list[int], groups: int, relu: bool) -> torch.Tensor:
    """``conv(x)`` (+ ``residual``), ReLU'd when ``relu``, as one oneDNN primitive."""
    args = (weight, bias, padding, stride, dilation, groups)
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(x, *args, "relu" if relu else "none", [], "")
    return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, *args, "add", None,
                                                           "relu" if relu else None, [], "")


def probe(run, x: torch.Tensor, residual: torch.Tensor | None) -> bool:
    """Run ``run(x, residual)`` once on a tiny input; False (with one warning) when the kernel is unavailable
    there. A failure on real inputs afterwards (out of memory, ...) is the caller's to raise."""
    try:
        run(x, residual)
        return True
    except RuntimeError as e:
        warnings.warn(f"oneDNN fused convolution unavailable here ({str(e).splitlines()[0]}); "
                      f"this conv runs plain ops", OneDNNFallbackWarning, stacklevel=5)
        return False
