"""The fast inference path: same outputs (within 1e-4 of the plain float32 forward), less time.

``prepare_fast(model)`` returns a copy of the model that
- replaces the frozen ``add_mean`` 1x1 conv by a bias folded into the exit conv (exact: it is the identity
  plus a constant) and ``sub_mean`` by a plain subtraction (it cannot be folded into the padded entry conv
  without changing border pixels);
- bakes weight normalization (OverNet) into plain conv weights;
- stores weights channels_last (NHWC), the layout oneDNN / cuDNN convolutions run fastest in;
- optionally casts to fp16/bf16 on CUDA (``half=``, opt-in: it changes numerics).
Run it under ``torch.inference_mode()`` with channels_last inputs (``to_fast_input``).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from srkit.layers import MeanShift


class _Subtract(nn.Module):
    def __init__(self, shift: MeanShift) -> None:
        super().__init__()
        self.register_buffer("bias", shift.shifter.bias.detach().clone().view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


def _bake_weight_norm(model: nn.Module) -> None:
    from overnet.ops import WNConv2d  # local import: srkit does not depend on overnet otherwise

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, WNConv2d):
                conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                 child.padding, groups=child.groups, bias=child.bias is not None)
                with torch.no_grad():
                    conv.weight.copy_(child.effective_weight())
                    if child.bias is not None:
                        conv.bias.copy_(child.bias)
                setattr(parent, name, conv)


def prepare_fast(model: nn.Module, half: torch.dtype | None = None) -> nn.Module:
    fast = copy.deepcopy(model).eval()
    _bake_weight_norm(fast)
    exit_name = "exit" if hasattr(fast, "exit") else "exit1"
    exit_conv = getattr(fast, exit_name)
    if isinstance(getattr(fast, "add_mean", None), MeanShift) and isinstance(exit_conv, nn.Conv2d):
        with torch.no_grad():
            exit_conv.bias.add_(fast.add_mean.shifter.bias)
        fast.add_mean = nn.Identity()
    if isinstance(getattr(fast, "sub_mean", None), MeanShift):
        fast.sub_mean = _Subtract(fast.sub_mean)
    fast = fast.to(memory_format=torch.channels_last)
    if half is not None:
        fast = fast.to(half)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


def to_fast_input(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)
    return x if dtype is None else x.to(dtype)
