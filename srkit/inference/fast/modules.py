"""The fast path's modules: what ``rewrite.prepare_fast`` puts in place of a model's parts. Each computes
its part as the model does (within ``FAST_PATH_ATOL``), on the best backend that takes its input
(``backends``): a streamed CPU kernel (``cpu_fp32``), else oneDNN's fused primitive (``onednn``), else
plain PyTorch ops, which are also what runs on CUDA (``cuda``).
"""
from __future__ import annotations

import contextlib
import math
import threading
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from srkit.core.layers import POOL_STATS, CascadeRunner, GlobalAvgPool, MeanShift, plain_cascade
from srkit.inference.fast import cpu_bf16, cpu_fp32, onednn
from srkit.inference.fast.cpu_fp32 import (StreamedConv3x3, StreamedResidual, StreamedShuffleExit,
                                           StreamedShuffleResize, StreamedTail, StreamedWideBody)
from srkit.inference.fast.onednn import OneDNNFallbackWarning


class StreamedOrPlain(nn.Module):
    """A part with up to three forms, tried in order: ``streamed_bf16``, a bf16 kernel (cpu_bf16), for a bf16
    input; ``streamed``, a float32 kernel (cpu_fp32), which reads a float32 copy of a bf16 input where
    prepare_fast kept its weights float32 (``_float_for``); and ``plain(...)``, the modules it stands for. A
    kernel returns None for an input it does not take (and is None where none runs here); the next form runs.
    Subclasses set ``self.streamed`` (and ``self.streamed_bf16`` where there is one); a class attribute would
    hide the registered submodule."""

    def plain(self, *args):
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *args):
        bf16 = getattr(self, "streamed_bf16", None)
        y = bf16(x, *args) if bf16 is not None and x.dtype == torch.bfloat16 else None
        if y is None and self.streamed is not None:
            y = self.streamed(_float_for(self.streamed, x), *args)
        return self.plain(x, *args) if y is None else y


def _float_for(streamed: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` as a float32 streamed kernel without a bf16 form reads it: a float32 copy of a bf16 map where
    prepare_fast kept that kernel's weights float32 in a bf16 model (its output is the image, or feeds the
    image-side convs, which run float32 anyway) and the kernel does not read bf16 itself (``reads_bf16``), else
    ``x``."""
    keeps = all(b.dtype != torch.bfloat16 for b in streamed.buffers())
    return x.float() if x.dtype == torch.bfloat16 and keeps and not getattr(streamed, "reads_bf16", False) else x


class _Subtract(nn.Module):
    def __init__(self, shift: MeanShift) -> None:
        super().__init__()
        self.register_buffer("bias", shift.shifter.bias.detach().clone().view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class FusedConv(nn.Module):
    """``conv(x)``, ``relu(conv(x))`` (``relu=True``) or ``relu(conv(x) + residual)`` in one call: a streamed
    kernel (a dense 3x3 from 64 channels, ``cpu_fp32``) or oneDNN's fused primitive where one takes the input,
    else plain ops."""

    def __init__(self, conv: nn.Conv2d, relu: bool, out_order: torch.Tensor | None = None) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("FusedConv needs numeric zero padding")
        w, b = conv.weight.detach(), conv.bias.detach() if conv.bias is not None else None
        if out_order is not None:  # a permutation of the output channels (see _ShuffleNHWC)
            w, b = w[out_order], (b[out_order] if b is not None else None)
        self.register_buffer("weight", w.clone().contiguous())  # prepare_fast sets the memory format
        self.register_buffer("bias", b.clone() if b is not None else None)
        self.relu = relu
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self._kernel_ok: dict[bool, bool] = {}  # per form (with a residual or not), probed on first use
        # an image-side conv of a bf16 model keeps float32 (prepare_fast): it reads float32, and returns
        # ``out_dtype`` (None: float32)
        self.float32, self.out_dtype = False, None
        # a dense 3x3 conv from 64 channels streamed by cpu_fp32 (AVX-512 / AVX2 CPUs); None otherwise
        self.streamed = StreamedConv3x3.from_conv(self, relu) if cpu_fp32.serves(w) else None
        # its bf16 form (cpu_bf16, CPUs with AVX512-BF16 / AMX-BF16), for a bf16 model
        self.streamed_bf16 = cpu_bf16.ConvBF16.from_conv(self, relu) if cpu_bf16.serves(w) else None
        # its output in float32 when a float32 kernel reads it next (a bf16 model's x3 shuffle exit where AMX
        # runs, shuffle + resize): written once in float32 rather than in bf16 and then copied (_float_for)
        self.bf16_float_out = False

    def _onednn(self, x: torch.Tensor, binary: bool) -> bool:
        if not onednn.serves(x, self.weight):
            return False
        if binary not in self._kernel_ok:
            k = self.weight.shape[-2:]
            tiny = torch.zeros(1, self.weight.shape[1] * self.groups, k[0] + 1, k[1] + 1,
                               dtype=self.weight.dtype).contiguous(memory_format=torch.channels_last)
            self._kernel_ok[binary] = onednn.probe(
                self._call, tiny, torch.zeros_like(self._plain(tiny, None)) if binary else None)
        return self._kernel_ok[binary]

    def _call(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        return onednn.conv(x, residual, self.weight, self.bias, self.padding, self.stride, self.dilation,
                           self.groups, self.relu)

    def _plain(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y = y + residual
        return torch.relu(y) if self.relu else y

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.float32 and x.dtype != torch.float32:
            y = self.forward(x.float(), residual.float() if residual is not None else None)
            return y if self.out_dtype is None else y.to(self.out_dtype)
        if self.float32 and self.out_dtype is not None:
            return self._forward(x, residual).to(self.out_dtype)
        return self._forward(x, residual)

    def _forward(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        if residual is None and self.streamed is not None:
            y = self.streamed(x)
            if y is not None:
                return y
        if residual is None and self.streamed_bf16 is not None and x.dtype == torch.bfloat16:
            y = self.streamed_bf16(x, float_out=self.bf16_float_out)
            if y is not None:
                return y
        if self._onednn(x, residual is not None):
            if x.dtype != torch.bfloat16:
                return self._call(x, residual)
            try:  # oneDNN's bf16 binary post-op falls back, for some shapes, to an add_relu that lacks bf16
                return self._call(x, residual)
            except RuntimeError as e:
                self._kernel_ok[residual is not None] = False
                warnings.warn(f"oneDNN fused bf16 convolution declined this input ({str(e).splitlines()[0]}); "
                              f"this conv runs plain ops", OneDNNFallbackWarning, stacklevel=3)
        return self._plain(x, residual)


class Workspace:
    """Memory a prepared model keeps between calls, so that its largest tensors are not fresh pages each time
    (on the CPU every new large tensor is memory the kernel zero-fills page by page on first touch). It holds
    the cascade buffers, one per nesting depth (a global cascade runs local ones inside it), grown to the
    largest shape asked for; per thread, so one prepared model can serve several threads. It is freed with the
    model: nothing process-wide changes."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _state(self):
        st = self._local
        if not hasattr(st, "buffers"):
            st.buffers, st.depth = {}, 0
        return st

    def buffer(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A tensor of ``shape`` (contents undefined) for the cascade running at the current depth."""
        st = self._state()
        need = math.prod(shape)
        t = st.buffers.get(st.depth)
        if t is None or t.numel() < need or t.dtype != like.dtype or t.device != like.device:
            t = st.buffers[st.depth] = torch.empty(need, dtype=like.dtype, device=like.device)
        return t[:need].view(shape)

    def take(self, shape: tuple[int, ...], like: torch.Tensor,
             memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """A tensor of ``shape`` (contents undefined) from the pool: memory of an earlier output that nothing
        refers to any more, else new memory that joins the pool. An output a caller still holds (or any view
        of it) is never handed out again."""
        st = self._state()
        pool = st.__dict__.setdefault("pool", [])
        need = math.prod(shape)
        free = [t for t in pool if t.dtype == like.dtype and t.device == like.device and _unshared(t)]
        fits = [t for t in free if t.numel() >= need]
        if fits:
            t = min(fits, key=torch.Tensor.numel)
        else:
            t = torch.empty(need, dtype=like.dtype, device=like.device)
            if _USE_COUNT is not None:
                if len(pool) >= POOL_SIZE and free:  # a smaller free one (from a smaller image) makes room
                    smallest = min(free, key=torch.Tensor.numel)
                    del pool[next(i for i, t in enumerate(pool) if t is smallest)]
                if len(pool) < POOL_SIZE:
                    pool.append(t)
        flat = t[:need]
        if memory_format == torch.channels_last:  # (N, C, H, W) in NHWC order
            n, c, h, w = shape
            return flat.view(n, h, w, c).permute(0, 3, 1, 2)
        return flat.view(shape)

    @contextlib.contextmanager
    def nested(self):
        st = self._state()
        st.depth += 1
        try:
            yield
        finally:
            st.depth -= 1

    def held_bytes(self) -> int:
        st = self._state()
        return sum(t.numel() * t.element_size() for t in [*st.buffers.values(), *st.__dict__.get("pool", [])])


POOL_SIZE = 8  # pooled outputs per thread: enough for the outputs alive at once in a cascade and a tail
# the number of references to a tensor's memory (torch internals): where absent, nothing is pooled
_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)


def _unshared(t: torch.Tensor) -> bool:
    """Whether only the pool refers to ``t``'s memory (the pool's tensor and this query's storage object)."""
    return _USE_COUNT(t.untyped_storage()._cdata) == 2


class CascadeFuse(FusedConv, CascadeRunner):
    """A cascade's 1x1 fusion conv + ReLU. ``srkit.core.layers.cascade`` hands a cascade whose fuses are all
    of this type to ``run_cascade``."""

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__(conv, relu)
        # the weights as the streamed kernel reads them (srkit.inference.cpu_fp32.fuse1x1); None where it does not fit
        packed = cpu_fp32.pack_fuse(conv.weight) if relu and conv.bias is not None else None
        self.register_buffer("packed", packed)
        # the bf16 kernel's weights and float32 bias (srkit.inference.fast.cpu_bf16.fuse1x1), for a bf16 model
        bf16 = packed is not None and cpu_bf16.serves(conv.weight)
        self.register_buffer("packed_bf16", cpu_bf16.pack_fuse(conv.weight) if bf16 else None)
        self.register_buffer("bias_bits", cpu_bf16.float_bits(conv.bias) if bf16 else None)
        self.workspace: Workspace | None = None  # prepare_fast gives every cascade of a model one workspace

    def on_buffer(self, rows: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor | None:
        """relu(rows W^T + b) for ``rows`` a [pixels, channels] view of the cascade buffer (``first``: the
        cascade's input, standing for the buffer's first block), by the streamed kernel; None where it cannot
        run."""
        if self.packed is None:
            return None
        out = self.workspace.take((rows.shape[0], 64), rows) if self.workspace is not None else None
        if rows.dtype == torch.bfloat16:
            return None if self.packed_bf16 is None else cpu_bf16.fuse1x1(rows, self.packed_bf16, self.bias_bits, out, first)
        return cpu_fp32.fuse1x1(rows, self.packed, self.bias, out, first)

    def streams(self, x: torch.Tensor) -> bool:
        """Whether ``on_buffer`` has a kernel for a cascade over ``x`` (float32 or bf16)."""
        if x.dtype == torch.bfloat16:
            return self.packed_bf16 is not None and cpu_bf16.available()
        return self.packed is not None and cpu_fp32.available()

    @staticmethod
    def run_cascade(x: torch.Tensor, blocks: list, fuses: list["CascadeFuse"]) -> list[torch.Tensor]:
        """c_i = cat(c_{i-1}, b_i) is the channel prefix of one NHWC buffer that each b_i is written into once;
        o_i = relu(c_i W_i^T + bias) is a matrix product reading that prefix in place (a strided operand)."""
        if x.device.type != "cpu":  # cuDNN: concatenation is cheap there, the buffer's strided reads are not
            return plain_cascade(x, blocks, fuses)
        n, c, h, w = x.shape
        shape = (n, h, w, c * (len(blocks) + 1))
        ws = fuses[0].workspace
        if ws is None:
            return CascadeFuse._run(x, blocks, fuses, torch.empty(shape, dtype=x.dtype, device=x.device))
        buf = ws.buffer(shape, x)
        with ws.nested():  # the blocks may run cascades of their own: one level deeper, another buffer
            return CascadeFuse._run(x, blocks, fuses, buf)

    @staticmethod
    def _run(x: torch.Tensor, blocks: list, fuses: list["CascadeFuse"], buf: torch.Tensor) -> list[torch.Tensor]:
        n, c, h, w = x.shape
        rows = buf.view(n * h * w, -1)
        # the streamed fusions read the cascade's input where it is; anything else reads it from the buffer
        first = x if all(f.streams(x) for f in fuses) else None
        if first is None:
            buf[..., :c].copy_(x.permute(0, 2, 3, 1))
        o, outs = x, []
        for i, (block, fuse) in enumerate(zip(blocks, fuses)):
            dst = buf[..., c * (i + 1):c * (i + 2)].permute(0, 3, 1, 2)
            write_into = getattr(block, "write_into", None)  # FusedResidual, SEScaledResidual
            if not (write_into is not None and write_into(o, dst)):
                dst.copy_(block(o))
            y = fuse.on_buffer(rows[:, :c * (i + 2)], first)
            if y is None and first is not None:  # declined after all: the buffer gets its first block now
                buf[..., :c].copy_(x.permute(0, 2, 3, 1))
                first = None
                y = fuse.on_buffer(rows[:, :c * (i + 2)])
            if y is not None:
                o = y.view(n, h, w, -1).permute(0, 3, 1, 2)
            elif i == len(blocks) - 1 and fuse._onednn(x, False):
                # the whole buffer is a channels_last tensor: oneDNN's 1x1 conv + ReLU beats addmm + relu_ on
                # it (a prefix would first be copied, which costs more than it gains)
                o = fuse._call(buf.permute(0, 3, 1, 2), None)
            else:
                weight = fuse.weight.view(fuse.weight.shape[0], -1)
                y = torch.addmm(fuse.bias, rows[:, :c * (i + 2)], weight.t()) if fuse.bias is not None \
                    else rows[:, :c * (i + 2)] @ weight.t()
                o = y.relu_().view(n, h, w, -1).permute(0, 3, 1, 2)  # channels_last NCHW view
            outs.append(o)
        return outs


class FusedResidual(nn.Module):
    """``relu(body(x) + x)`` with the body's conv-ReLU pairs fused and the last conv fused with ``+ x`` and ReLU."""

    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        *head, last = list(body)
        if not isinstance(last, nn.Conv2d):
            raise ValueError("a residual body must end in a conv")
        self.head = nn.Sequential(*_fuse_sequence(head))
        self.last = FusedConv(last, relu=True)
        # the whole block streamed row by row (64-channel blocks of 3x3 convs, groups 1 or 4); None otherwise
        self.streamed = StreamedResidual.from_body(list(body)) if cpu_fp32.serves(last.weight) else None
        self.streamed_bf16 = cpu_bf16.ResidualBF16.from_body(list(body)) if cpu_bf16.serves(last.weight) else None

    def write_into(self, x: torch.Tensor, out: torch.Tensor) -> bool:
        """``out.copy_(self(x))`` without the intermediate tensors, when the streamed kernel runs here;
        False (nothing written) otherwise. ``out`` must not overlap ``x``."""
        if x.dtype == torch.bfloat16:
            return self.streamed_bf16 is not None and self.streamed_bf16(x, out)
        return self.streamed is not None and self.streamed(x, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.streamed_bf16 is not None and x.dtype == torch.bfloat16:
            out = torch.empty_like(x, memory_format=torch.channels_last)
            if self.streamed_bf16(x, out):
                return out
        return self.last(self.head(x), residual=x)


class ChannelMean(nn.Module):
    """A model's ``GlobalAvgPool`` (``pool``, still the one a tiled forward's statistics are kept for): the
    plain mean of a bf16 map as one float32-summing pass (cpu_bf16.channel_mean; torch's bf16 mean over H and W
    of an NHWC map measured 20x slower), else the pool itself."""

    def __init__(self, pool: GlobalAvgPool) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16 and POOL_STATS.get() is None and cpu_bf16.available():
            mean = cpu_bf16.channel_mean(x)
            if mean is not None:
                return mean.to(x.dtype)
        return self.pool(x)


class SEScaledResidual(nn.Module):
    """``Fusion.SE_SCALED_RESIDUAL``: ``b * (gate(pool(b)) * res_scale) + x * x_scale`` for ``b = body(x)``,
    the per-channel factors folded into one vector so that the map is read and written twice (a multiply, a
    scaled add) instead of five times, and written straight into a cascade's buffer when it runs in one. The
    pool is the model's own module, so a tiled forward still sees the whole image's means."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        se = block.SE
        if not isinstance(se.pool, GlobalAvgPool):
            raise ValueError("SE_SCALED_RESIDUAL needs SE.pool to be a GlobalAvgPool")
        self.body, self.pool, self.gate = block.body, se.pool, se.conv
        self.res_scale = float(block.res_scale.scale.detach().reshape(()))
        self.x_scale = float(block.x_scale.scale.detach().reshape(()))

    def _bf16_into(self, x: torch.Tensor, out: torch.Tensor) -> bool:
        """The bf16 kernels' form (srkit.inference.fast.cpu_bf16): the pool's plain mean (no tiled forward's
        statistics in effect) and the scaled add as single passes; False (nothing written) where they cannot run."""
        if x.dtype != torch.bfloat16 or not cpu_bf16.available():
            return False
        b = self.body(x)
        mean = cpu_bf16.channel_mean(b) if POOL_STATS.get() is None else None
        factor = self.gate(mean.to(b.dtype) if mean is not None else self.pool(b)) * self.res_scale
        return cpu_bf16.scale_add(b, factor, x, self.x_scale, out)

    def write_into(self, x: torch.Tensor, out: torch.Tensor) -> bool:
        """``out.copy_(self(x))`` without the intermediate tensors; ``out`` must not overlap ``x``."""
        if self._bf16_into(x, out):
            return True
        b = self.body(x)
        factor = self.gate(self.pool(b)) * self.res_scale
        if self.x_scale == 1.0:
            torch.addcmul(x, b, factor, out=out)
        else:
            torch.mul(b, factor, out=out)
            out.add_(x, alpha=self.x_scale)
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.body(x)
        factor = self.gate(self.pool(b)) * self.res_scale
        if self.x_scale == 1.0:
            return torch.addcmul(x, b, factor)
        return b.mul_(factor).add_(x, alpha=self.x_scale)  # b is this block's own temporary


class _ShuffleNHWC(nn.Module):
    """Pixel shuffle for a conv whose output channels were reordered by ``shuffle_order``: every output pixel
    then gathers ``groups`` contiguous runs of C/groups channels instead of C values spaced r*r apart."""

    def __init__(self, r: int, groups: int) -> None:
        super().__init__()
        self.r, self.groups = r, groups
        self.workspace: Workspace | None = None  # its output's memory, when prepare_fast gives one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = x.shape
        r, g = self.r, self.groups
        c = ch // (r * r)
        src = x.permute(0, 2, 3, 1).reshape(n, h, w, g, r, r, c // g).permute(0, 1, 4, 2, 5, 3, 6)
        if self.workspace is None:
            return src.reshape(n, h * r, w * r, c).permute(0, 3, 1, 2)
        out = self.workspace.take((n, c, h * r, w * r), x, memory_format=torch.channels_last)
        out.permute(0, 2, 3, 1).view(n, h, r, w, r, g, c // g).copy_(src)
        return out


def shuffle_order(channels: int, r: int, groups: int) -> torch.Tensor:
    """Output-channel permutation that stores pixel shuffle's channel c*r*r + k (k = i*r + j) of group g at
    g*(C/g)*r*r + k*(C/g) + (c mod C/g). Only channels within a group move, so a grouped conv stays valid."""
    cg = channels // groups
    g, k, cl = torch.meshgrid(torch.arange(groups), torch.arange(r * r), torch.arange(cg), indexing="ij")
    return ((g * cg + cl) * r * r + k).reshape(-1)


class SubPixelExit(nn.Module):
    """``exit(pixel_shuffle(x, 2))`` as ``pixel_shuffle(exit'(x), 2)``: a 3x3 conv at the low resolution with
    4x the channels in and out, whose weights gather the exit conv's taps by sub-pixel phase (zero padding maps
    onto zero padding, so it is the same sum). The 64-channel map at twice the resolution is never made: at x2
    it saves its 4x larger write and the shuffle's copy; at x4 that map is a tile's largest tensor."""

    def __init__(self, exit_conv: nn.Conv2d, r: int = 2) -> None:
        super().__init__()
        if exit_conv.kernel_size != (3, 3) or exit_conv.padding != (1, 1) or exit_conv.groups != 1:
            raise ValueError("SubPixelExit needs a 3x3 exit conv with padding 1")
        w = exit_conv.weight.detach()
        o, c = w.shape[:2]
        ws = w.new_zeros(o * r * r, c * r * r, 3, 3)
        for a in range(r):
            for b in range(r):
                for dy in range(3):
                    for dx in range(3):
                        ky, i = divmod(a + dy - 1, r)  # the LR row offset and the sub-pixel phase it reads
                        kx, j = divmod(b + dx - 1, r)
                        rows, cols = torch.arange(o) * r * r + a * r + b, torch.arange(c) * r * r + i * r + j
                        ws[rows[:, None], cols[None, :], ky + 1, kx + 1] += w[:, :, dy, dx]
        sub = nn.Conv2d(c * r * r, o * r * r, 3, 1, 1, bias=exit_conv.bias is not None, device=w.device,
                        dtype=w.dtype)
        with torch.no_grad():
            sub.weight.copy_(ws)
            if exit_conv.bias is not None:
                sub.bias.copy_(exit_conv.bias.detach().repeat_interleave(r * r))
        self.r = r
        self.sub = FusedConv(sub, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.sub(x), self.r)


class SubPixelTail(StreamedOrPlain):
    """A branch's last stage ``relu(conv(x))``, pixel shuffle x2, then the model's exit conv, computed as
    ``SubPixelExit(relu(conv(x)))``; on a CPU where the streamed tail kernel runs, as one kernel that never
    stores the conv's 4C-channel output."""

    def __init__(self, conv: nn.Conv2d, exit_conv: nn.Conv2d) -> None:
        super().__init__()
        self.up = FusedConv(conv, relu=True)
        self.exit = SubPixelExit(exit_conv)
        self.streamed = StreamedTail.from_convs(self.up, self.exit.sub) if cpu_fp32.serves(conv.weight) else None
        self.streamed_bf16 = cpu_bf16.TailBF16(self.streamed) \
            if self.streamed is not None and cpu_bf16.serves(conv.weight) else None

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit(self.up(x))



class ShuffleExit(StreamedOrPlain):
    """A branch's last shuffle (by 3) and the model's exit conv after it: on a CPU where the streamed kernel
    runs, the exit conv reads the conv's unshuffled output (``StreamedShuffleExit``) and the shuffled
    64-channel map, 9 times the input's pixels, is never made; elsewhere the two modules as they are."""

    def __init__(self, shuffle: "_ShuffleNHWC", exit_conv: FusedConv) -> None:
        super().__init__()
        self.shuffle, self.exit = shuffle, exit_conv
        self.streamed = StreamedShuffleExit.from_conv(exit_conv, shuffle.r, shuffle.groups) \
            if cpu_fp32.serves(exit_conv.weight) else None
        self.streamed_bf16 = cpu_bf16.ShuffleExitBF16(self.streamed) if self.streamed is not None \
            and cpu_bf16.serves(exit_conv.weight) and not cpu_bf16.amx_wanted() else None

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit(self.shuffle(x))


class ShuffleResize(StreamedOrPlain):
    """A declared resize (``FastPath.resize``) given the upsampler's output before its last pixel shuffle, and
    the exit conv after it where that moved in (``exit``, else None): on a CPU where the streamed kernel runs,
    the shuffle, the bicubic resize and the exit conv as one pass (``StreamedShuffleResize``: the shuffled and
    the resized maps are never made); elsewhere the shuffle, then the resize, then the exit conv."""

    def __init__(self, shuffle: "_ShuffleNHWC", resize: nn.Module, streamed: StreamedShuffleResize | None,
                 exit_conv: nn.Module | None = None) -> None:
        super().__init__()
        self.shuffle, self.resize, self.streamed, self.exit = shuffle, resize, streamed, exit_conv

    def plain(self, x: torch.Tensor, out_hw: tuple[int, int], factor: float) -> torch.Tensor:
        y = self.resize(self.shuffle(x), out_hw, factor)
        return y if self.exit is None else self.exit(y)


def _fuse_sequence(mods: list[nn.Module], nhwc: bool = True) -> list[nn.Module]:
    """conv -> FusedConv; conv, ReLU -> FusedConv(relu); conv, ReLU, PixelShuffle -> FusedConv(relu) with
    reordered channels, _ShuffleNHWC (``nhwc``: activations are channels_last)."""
    out: list[nn.Module] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1:i + 3]
        if isinstance(m, nn.Conv2d):
            relu = bool(nxt) and isinstance(nxt[0], nn.ReLU)
            if nhwc and relu and len(nxt) == 2 and isinstance(nxt[1], nn.PixelShuffle) \
                    and (m.out_channels // m.groups) % (nxt[1].upscale_factor ** 2) == 0:
                r = nxt[1].upscale_factor
                out += [FusedConv(m, True, shuffle_order(m.out_channels // (r * r), r, m.groups)),
                        _ShuffleNHWC(r, m.groups)]
                i += 3
                continue
            out.append(FusedConv(m, relu))
            i += 2 if relu else 1
            continue
        out.append(m)
        i += 1
    for k in range(len(out) - 1):  # a shuffle the x2 tail does not cover, then the exit conv: one module
        if isinstance(out[k], _ShuffleNHWC) and isinstance(out[k + 1], FusedConv) and not out[k + 1].relu:
            out[k:k + 2] = [ShuffleExit(out[k], out[k + 1]), None]
            if k > 0 and isinstance(out[k - 1], FusedConv) and out[k].streamed is not None \
                    and out[k].streamed_bf16 is None:  # a float32 kernel reads the conv's output
                out[k - 1].bf16_float_out = True
    return [m for m in out if m is not None]


class WideBody(StreamedOrPlain):
    """A wide-activation body (1x1 to a wide map, ReLU, 1x1, 3x3) as one streamed kernel: the wide maps are
    never stored; ``body`` (its fused convs) runs wherever the kernel declines."""

    def __init__(self, streamed: StreamedWideBody, body: nn.Sequential) -> None:
        super().__init__()
        self.streamed, self.body = streamed, body
        self.streamed_bf16 = cpu_bf16.WideBodyBF16(streamed) if cpu_bf16.serves(streamed.w1) else None

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

