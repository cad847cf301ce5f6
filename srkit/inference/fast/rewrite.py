"""The fast inference path's rewrite: same outputs (within ``FAST_PATH_ATOL`` of the plain float32 forward),
less time.

``prepare_fast(model)`` returns a frozen copy of the model, rewritten as the model and its blocks declare
(``srkit.core.layers``: ``FastPath``, ``Fusion``; written down in docs/adding-a-model.md), into the modules of
``srkit.inference.fast.modules``:

- the frozen ``add_mean`` 1x1 conv becomes a bias folded into the declared exit conv (exact: it is the
  identity plus a constant) and ``sub_mean`` a plain subtraction (folding it into the padded entry conv would
  change border pixels);
- weight normalization is baked into plain conv weights;
- weights and activations are channels_last (NHWC) where the device's backends want it (``nhwc_for``);
- with ``fuse=True`` (the default): a ``Fusion.CONV_RELU`` block and every conv + ReLU run as one fused call,
  a ``Fusion.RESIDUAL_RELU`` block's last conv with its ``+ x`` and ReLU, a ``Fusion.SE_SCALED_RESIDUAL``
  block's gate and scales as one per-channel factor; cascades write every block's output once into one NHWC
  buffer and run their 1x1 fusions as matrix products on its channel prefixes; pixel shuffle gathers whole
  channel runs because the conv before it emits its channels in shuffle order; where the model declares that
  its exit conv reads the upsampler's output as it is, the exit conv moves into each branch of the upsampler
  and a branch's last x2 stage runs as one sub-pixel conv; where it declares a resize after the upsampler
  instead, the last pixel shuffle, the resize and the exit conv run as one pass;
- every part runs on the best backend that takes its input (``srkit.inference.fast.backends``): on a CPU
  with AVX-512 or AVX2, the streamed kernels (``cpu_fp32``) for 64-channel residual blocks, the cascades'
  1x1 fusions, x2 tails and other dense 3x3 convs from 64 channels; oneDNN's fused primitives (``onednn``)
  for the rest and wherever a kernel declines; cuDNN on CUDA (``cuda``);
- optionally weights are cast to half precision (``half=``: fp16 on CUDA, bf16 on the CPU, where oneDNN runs
  bf16 on the CPU's bf16 units; it changes numerics); in bf16 the image-side convs keep float32, and a
  global mean of a bf16 map is summed in float32 in one pass (``ChannelMean``).

Every module of the prepared model takes and returns tensors. Run it under ``torch.inference_mode()`` with
inputs from ``to_fast_input``. ``fuse=False`` keeps only the portable rewrites (ONNX export uses that).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from srkit.core.layers import BicubicResize, FastPath, Fusion, GlobalAvgPool, MeanShift
from srkit.inference.fast import cpu_bf16, cpu_fp32, cuda
from srkit.inference.fast.cpu_fp32 import StreamedShuffleExit, StreamedShuffleResize, StreamedTail, StreamedWideBody
from srkit.inference.fast.modules import (CascadeFuse, ChannelMean, FusedConv, FusedResidual, SEScaledResidual,
                                          ShuffleExit, ShuffleResize, SubPixelExit, SubPixelTail, WideBody, Workspace,
                                          _fuse_sequence, _ShuffleNHWC, _Subtract)


def _shuffle_into_resize(fast: nn.Module, name: str, upsampler: nn.Module, exit_name: str | None) -> None:
    """Hand the declared resize ``name`` the upsampler's output before its last shuffle (one branch only), and
    the exit conv after it (``exit_name``) where the streamed kernel takes it."""
    branches = [m for m in upsampler.modules() if isinstance(m, nn.Sequential)]
    if len(branches) != 1 or len(branches[0]) < 2 or not isinstance(branches[0][-1], _ShuffleNHWC):
        return
    seq = branches[0]
    shuffle, conv = seq[-1], seq[-2]
    del seq[len(seq) - 1]
    streamed = StreamedShuffleResize(shuffle.r, shuffle.groups) \
        if isinstance(conv, FusedConv) and cpu_fp32.serves(conv.weight) else None
    exit_conv = getattr(fast, exit_name, None) if exit_name else None
    if streamed is None or not isinstance(exit_conv, (nn.Conv2d, FusedConv)) or not streamed.with_exit(exit_conv):
        exit_conv = None
    else:  # the model's own call of its exit conv now passes the 3-channel output through
        setattr(fast, exit_name, nn.Identity())
    setattr(fast, name, ShuffleResize(shuffle, getattr(fast, name), streamed, exit_conv))


def _shuffle_stages(seq: nn.Module) -> bool:
    """Whether ``seq`` is an upsampling branch of [conv, ReLU, PixelShuffle(r)] stages."""
    mods = list(seq) if isinstance(seq, nn.Sequential) else []
    return bool(mods) and len(mods) % 3 == 0 and all(
        isinstance(mods[i], nn.Conv2d) and isinstance(mods[i + 1], nn.ReLU) and isinstance(mods[i + 2], nn.PixelShuffle)
        for i in range(0, len(mods), 3))


def _move_exit_into_branches(upsampler: nn.Module, exit_conv: nn.Conv2d) -> bool:
    """Give every branch of ``upsampler`` the exit conv at its end (a last x2 stage becomes a SubPixelTail).
    False (nothing changed) unless every ``nn.Sequential`` in it is such a branch."""
    branches = [m for m in upsampler.modules() if isinstance(m, nn.Sequential)]
    if not branches or not all(_shuffle_stages(b) for b in branches):
        return False
    for seq in branches:
        mods = list(seq)
        conv, shuffle = mods[-3], mods[-1]
        if shuffle.upscale_factor == 2:
            mods[-3:] = [SubPixelTail(conv, exit_conv)]
        else:
            mods.append(copy.deepcopy(exit_conv))
        for i in range(len(seq)):
            del seq[0]
        for m in mods:
            seq.append(m)
    return True


def _first_weight(seq: nn.Module) -> torch.Tensor:
    return next(iter(seq.parameters()), next(iter(seq.buffers()), torch.empty(0)))


def _fuse(module: nn.Module, nhwc: bool) -> None:
    """Rewrite, in place, every part whose forward matches a fused kernel (see each block's class attribute)."""
    for name, child in list(module.named_children()):
        fusion = getattr(type(child), "fusion", None)
        if fusion is Fusion.CONV_RELU:
            conv = child.conv
            pointwise = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1
            new: nn.Module = CascadeFuse(conv, True) if pointwise else FusedConv(conv, True)
        elif fusion is Fusion.RESIDUAL_RELU:
            new = FusedResidual(child.body)
        elif fusion is Fusion.SE_SCALED_RESIDUAL:
            _fuse(child, nhwc)  # its body and gate first
            new = SEScaledResidual(child)
        elif isinstance(child, (FusedConv, SubPixelTail, SubPixelExit, WideBody, SEScaledResidual, ShuffleExit)):
            continue
        elif isinstance(child, nn.Sequential):
            _fuse(child, nhwc)
            streamed = StreamedWideBody.from_body(list(child)) if cpu_fp32.serves(_first_weight(child)) else None
            new = nn.Sequential(*_fuse_sequence(list(child), nhwc))
            if streamed is not None:
                new = WideBody(streamed, new)
        else:
            _fuse(child, nhwc)
            continue
        setattr(module, name, new)


def _bake_weight_norm(model: nn.Module) -> None:
    """Replace every weight-normalized conv (a Conv2d subclass with ``effective_weight()``) by a plain one."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and callable(getattr(child, "effective_weight", None)):
                w = child.effective_weight()
                conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                 child.padding, groups=child.groups, bias=child.bias is not None,
                                 device=w.device, dtype=w.dtype)
                with torch.no_grad():
                    conv.weight.copy_(w)
                    if child.bias is not None:
                        conv.bias.copy_(child.bias)
                setattr(parent, name, conv)


def nhwc_for(device: torch.device, half: torch.dtype | None) -> bool:
    """The default activation layout: what the backends for ``device`` declare (channels_last on the CPU, and
    on CUDA in half precision only: ``cuda``)."""
    return cuda.nhwc(half) if device.type == "cuda" else device.type == "cpu"


def prepare_fast(model: nn.Module, half: torch.dtype | None = None, fuse: bool = True,
                 nhwc: bool | None = None) -> nn.Module:
    """A frozen inference copy of ``model`` (see the module docstring); ``model`` itself is not changed.
    ``nhwc``: the activation layout (None: :func:`nhwc_for` the model's device); inputs must be given in it
    (``to_fast_input(x, half, nhwc)``)."""
    fast = copy.deepcopy(model).eval()
    _bake_weight_norm(fast)
    spec = getattr(type(model), "fast_path", None) or FastPath()
    exit_conv = getattr(fast, spec.exit_conv, None) if spec.exit_conv else None
    if isinstance(getattr(fast, "add_mean", None), MeanShift) and isinstance(exit_conv, nn.Conv2d) \
            and exit_conv.bias is not None:
        with torch.no_grad():
            exit_conv.bias.add_(fast.add_mean.shifter.bias)
        fast.add_mean = nn.Identity()
    if isinstance(getattr(fast, "sub_mean", None), MeanShift):
        fast.sub_mean = _Subtract(fast.sub_mean)
    upsampler = getattr(fast, spec.upsampler, None) if spec.upsampler else None
    resize = getattr(fast, spec.resize, None) if spec.resize else None
    if fuse and resize is None and isinstance(upsampler, nn.Module) and isinstance(exit_conv, nn.Conv2d) \
            and exit_conv.kernel_size == (3, 3) and exit_conv.padding == (1, 1) and exit_conv.groups == 1 \
            and _move_exit_into_branches(upsampler, exit_conv):
        setattr(fast, spec.exit_conv, nn.Identity())
    if nhwc is None:
        nhwc = nhwc_for(next(iter(model.parameters()), torch.empty(0)).device, half)
    if fuse:
        _fuse(fast, nhwc)
        if isinstance(resize, BicubicResize) and isinstance(upsampler, nn.Module):
            _shuffle_into_resize(fast, spec.resize, upsampler, spec.exit_conv)
        # the global means an SE-scaled residual does not take itself
        _replace_children(fast, lambda parent, child: isinstance(child, GlobalAvgPool)
                          and not isinstance(parent, SEScaledResidual), ChannelMean)
    if nhwc:
        fast = fast.to(memory_format=torch.channels_last)
    fast.workspace = Workspace()
    for m in fast.modules():  # the cascades and the streamed kernels take their memory from it
        if hasattr(m, "workspace") and m is not fast:
            m.workspace = fast.workspace
    if half is not None:
        # bf16 (8 mantissa bits) would round the image itself: an output level of 0.5..1 to 1/256, a grey level.
        # The convs that read or write the image's channels, and the mean subtraction, keep float32 (a few
        # percent of the Mult-Adds); the 64-channel features between them run in bf16.
        if half == torch.bfloat16:
            # an entry conv left plain becomes a FusedConv to be kept float32
            _replace_children(fast, lambda _, child: type(child) is nn.Conv2d and child.padding_mode == "zeros"
                              and not isinstance(child.padding, str) and _image_side(FusedConv(child, False)),
                              lambda child: FusedConv(child, False))
        edges = [m for m in fast.modules() if half == torch.bfloat16 and _image_side(m)]
        if half == torch.bfloat16 and cpu_bf16.available():
            # the float32 streamed kernels where their bf16 form is absent or declines (the x3 shuffle exit where
            # AMX runs) read a float32 copy of their bf16 input (modules._float_for), and the shuffle + resize
            # (+ exit) reads the bf16 map itself: their weights stay float32. Measured faster than oneDNN's bf16
            # upsampling conv + the float32 exit.
            edges += [m for m in fast.modules() if isinstance(m, (StreamedTail, StreamedShuffleExit, StreamedShuffleResize))]
        kept = [{k: b for k, b in m._buffers.items()} for m in edges]
        fast = fast.to(half)
        for m, bufs in zip(edges, kept):
            m._buffers.update(bufs)
            if isinstance(m, FusedConv):
                m.float32, m.out_dtype = True, half if m.weight.shape[1] * m.groups == 3 else None
                m.streamed = None  # its packed weights were cast; none of the image-side convs has one anyway
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


def _replace_children(model: nn.Module, pick, make) -> None:
    """Every child ``c`` of a module ``p`` of ``model`` with ``pick(p, c)`` becomes ``make(c)``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if pick(parent, child):
                setattr(parent, name, make(child))


def _image_side(m: nn.Module) -> bool:
    """The mean subtraction, and a conv from the image's 3 channels or to 3 per sub-pixel phase (3 r^2)."""
    if isinstance(m, _Subtract):
        return True
    if not isinstance(m, FusedConv):
        return False
    out, into = m.weight.shape[0], m.weight.shape[1] * m.groups
    return into == 3 or out in (3 * r * r for r in range(1, 5))


def to_fast_input(x: torch.Tensor, dtype: torch.dtype | None = None, nhwc: bool | None = None) -> torch.Tensor:
    """``x`` as the prepared model of ``prepare_fast(model, half=dtype, nhwc=nhwc)`` on ``x.device`` takes it
    (a bf16 model reads float32: its image-side convs keep float32)."""
    if nhwc_for(x.device, dtype) if nhwc is None else nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    return x if dtype in (None, torch.bfloat16) else x.to(dtype)
