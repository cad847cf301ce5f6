"""CUDA: cuDNN through PyTorch, in float32 (NCHW: cuDNN's float32 kernels with TF32 off ran slower in
channels_last on an H200, docs/performance.md) and in fp16 / bf16 (channels_last, for the tensor cores).
The streamed CPU kernels and the cascade buffer are not used there: a cascade concatenates, which is cheap on
a GPU, where the buffer's strided reads are not (``srkit.core.layers.plain_cascade``)."""
from __future__ import annotations

import torch

from srkit.inference.fast.backends import Backend, register


def _why_not() -> str:
    return "" if torch.cuda.is_available() else "no CUDA device"


BACKEND_FP32 = register(Backend("cuda_fp32", "cuda", (torch.float32,), "CUDA, cuDNN", "convs as cuDNN calls",
                                False, _why_not))
BACKEND_HALF = register(Backend("cuda_half", "cuda", (torch.float16, torch.bfloat16), "CUDA, cuDNN",
                                "convs as cuDNN calls on the tensor cores", True, _why_not))


def nhwc(dtype: torch.dtype | None) -> bool:
    """The activation layout for ``dtype`` (None: float32) on CUDA."""
    return (BACKEND_HALF if dtype in BACKEND_HALF.dtypes else BACKEND_FP32).nhwc
