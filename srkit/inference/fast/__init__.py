"""The fast inference path: ``prepare_fast(model)`` is a frozen copy of ``model`` that computes the same
outputs (within ``FAST_PATH_ATOL``) in less time; ``to_fast_input(x)`` is its input. docs/fast-path.md.

- ``rewrite``: what replaces which part of a model, as the model declares it (``srkit.core.layers``);
- ``modules``: the replacement parts, each run on the best backend that takes its input;
- ``backends``: what each backend serves (device, dtype, instruction set), declared once per backend;
- one module per backend and precision: ``cpu_fp32`` (streamed float32 kernels, AVX-512F / AVX2),
  ``cpu_bf16`` (streamed bf16 kernels, AVX512-BF16 / AMX-BF16), ``onednn`` (oneDNN's fused primitives, float32
  and bf16), ``cuda`` (cuDNN); C sources in ``csrc/``, one file per instruction set.
"""
from srkit.inference.fast import backends, cpu_bf16, cpu_fp32, cuda, onednn  # noqa: F401 - each registers its backend
from srkit.inference.fast.modules import (CascadeFuse, FusedConv, FusedResidual, OneDNNFallbackWarning,
                                          SEScaledResidual, ShuffleExit, ShuffleResize, StreamedOrPlain,
                                          SubPixelExit, SubPixelTail, WideBody, Workspace, shuffle_order)
from srkit.inference.fast.rewrite import nhwc_for, prepare_fast, to_fast_input

__all__ = ["CascadeFuse", "FusedConv", "FusedResidual", "OneDNNFallbackWarning", "SEScaledResidual", "ShuffleExit",
           "ShuffleResize", "StreamedOrPlain", "SubPixelExit", "SubPixelTail", "WideBody", "Workspace",
           "backends", "nhwc_for", "prepare_fast", "shuffle_order", "to_fast_input"]
