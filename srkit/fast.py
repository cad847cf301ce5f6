"""The fast inference path: same outputs (within 1e-4 of the plain float32 forward), less time.

``prepare_fast(model)`` returns a copy of the model in which
- the frozen ``add_mean`` 1x1 conv becomes a bias folded into the exit conv (exact: it is the identity plus a
  constant) and ``sub_mean`` a plain subtraction (it cannot be folded into the padded entry conv without
  changing border pixels);
- weight normalization (OverNet) is baked into plain conv weights;
- weights are stored channels_last (NHWC), the layout oneDNN / cuDNN convolutions run fastest in;
- with ``fuse=True`` (the default) a conv and the ReLU after it, and a residual block's last conv with its
  ``+ x`` and ReLU, run as one oneDNN call on CPU (post-ops; plain ops elsewhere); the cascades write every
  block's output once into one NHWC buffer and run their 1x1 fusions as matrix products on its channel
  prefixes, instead of concatenating ever longer tensors; pixel shuffle gathers whole channel runs because
  the conv before it emits its channels in shuffle order;
- on a CPU with AVX-512 where ``srkit.cpu_kernels`` is built, the 64-channel residual blocks, the cascades'
  1x1 fusions, the x2 tail (last upsampling conv + sub-pixel exit) and other dense 3x3 convs from 64
  channels run as streamed kernels instead of oneDNN calls: block outputs go straight into the cascade
  buffer and the 256-channel map of the tail is never stored (elsewhere, and whenever they decline an
  input, the oneDNN form above runs);
- optionally weights are cast to half precision (``half=``: fp16 on CUDA, bf16 on CPU; opt-in, it changes
  numerics).
Run it under ``torch.inference_mode()`` with channels_last inputs (``to_fast_input``). ``fuse=False`` keeps
only the portable rewrites (ONNX export uses that).
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from srkit import cpu_kernels
from srkit.cpu_kernels import StreamedConv3x3, StreamedResidual, StreamedTail
from srkit.layers import MeanShift

# oneDNN's fused convolution (conv + post-ops), the kernel PyTorch's own CPU compiler emits; absent from
# builds without oneDNN, where the fused modules run the plain ops.
ONEDNN_BUILD = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class OneDNNFallbackWarning(RuntimeWarning):
    """A fused oneDNN kernel is not available for a conv on this CPU / build; that conv runs plain ops."""


class _Subtract(nn.Module):
    def __init__(self, shift: MeanShift) -> None:
        super().__init__()
        self.register_buffer("bias", shift.shifter.bias.detach().clone().view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class FusedConv(nn.Module):
    """``conv(x)``, ``relu(conv(x))`` (``relu=True``) or ``relu(conv(x) + residual)`` in one oneDNN call on CPU."""

    def __init__(self, conv: nn.Conv2d, relu: bool, out_order: torch.Tensor | None = None) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("FusedConv needs numeric zero padding")
        w, b = conv.weight.detach(), conv.bias.detach() if conv.bias is not None else None
        if out_order is not None:  # a permutation of the output channels (see _ShuffleNHWC)
            w, b = w[out_order], (b[out_order] if b is not None else None)
        self.register_buffer("weight", w.clone().contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", b.clone() if b is not None else None)
        self.relu = relu
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self._kernel_ok: dict[bool, bool] = {}  # per form (with a residual or not), probed on first use
        # a dense 3x3 conv from 64 channels streamed by srkit.cpu_kernels (AVX-512 CPUs); None otherwise
        self.streamed = StreamedConv3x3.from_conv(self, relu) if cpu_kernels.available() else None

    def _onednn(self, x: torch.Tensor, binary: bool) -> bool:
        # float32 only: oneDNN's bf16 kernels refuse CPUs without AVX512-BF16-class support, F.conv2d does not
        if not (ONEDNN_BUILD and x.device.type == "cpu" and x.dtype == self.weight.dtype == torch.float32
                and not torch.is_grad_enabled()):
            return False
        if binary not in self._kernel_ok:
            self._kernel_ok[binary] = self._probe(binary)
        return self._kernel_ok[binary]

    def _probe(self, binary: bool) -> bool:
        """Run the fused kernel once on a tiny input of this conv's configuration. Only a kernel that fails
        here counts as unavailable; a failure on real inputs afterwards (out of memory, ...) is raised."""
        k = self.weight.shape[-2:]
        x = torch.zeros(1, self.weight.shape[1] * self.groups, k[0] + 1, k[1] + 1).contiguous(
            memory_format=torch.channels_last)
        try:
            self._call(x, torch.zeros_like(self._plain(x, None)) if binary else None)
            return True
        except RuntimeError as e:
            warnings.warn(f"oneDNN fused convolution unavailable here ({str(e).splitlines()[0]}); "
                          f"this conv runs plain ops", OneDNNFallbackWarning, stacklevel=4)
            return False

    def _call(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        args = (self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(x, *args, "relu" if self.relu else "none", [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, *args, "add", None,
                                                               "relu" if self.relu else None, [], "")

    def _plain(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y = y + residual
        return torch.relu(y) if self.relu else y

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if residual is None and self.streamed is not None:
            y = self.streamed(x)
            if y is not None:
                return y
        if self._onednn(x, residual is not None):
            return self._call(x, residual)
        return self._plain(x, residual)


class CascadeFuse(FusedConv):
    """A cascade's 1x1 fusion conv + ReLU. ``srkit.layers.cascade`` hands a cascade whose fuses are all of
    this type to ``run_cascade``."""

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__(conv, relu)
        # the weights as the streamed kernel reads them (srkit.cpu_kernels.fuse1x1); None where it does not fit
        packed = cpu_kernels.pack_fuse(conv.weight) if relu and conv.bias is not None else None
        self.register_buffer("packed", packed)

    def on_buffer(self, rows: torch.Tensor) -> torch.Tensor | None:
        """relu(rows W^T + b) for ``rows`` a [pixels, channels] view of the cascade buffer, by the streamed
        kernel; None where it cannot run."""
        return cpu_kernels.fuse1x1(rows, self.packed, self.bias) if self.packed is not None else None

    @staticmethod
    def run_cascade(x: torch.Tensor, blocks: list, fuses: list["CascadeFuse"]) -> list[torch.Tensor]:
        """c_i = cat(c_{i-1}, b_i) is the channel prefix of one NHWC buffer that each b_i is written into once;
        o_i = relu(c_i W_i^T + bias) is a matrix product reading that prefix in place (a strided operand)."""
        n, c, h, w = x.shape
        buf = torch.empty(n, h, w, c * (len(blocks) + 1), dtype=x.dtype, device=x.device)
        rows = buf.view(n * h * w, -1)
        buf[..., :c].copy_(x.permute(0, 2, 3, 1))
        o, outs = x, []
        for i, (block, fuse) in enumerate(zip(blocks, fuses)):
            dst = buf[..., c * (i + 1):c * (i + 2)].permute(0, 3, 1, 2)
            if not (isinstance(block, FusedResidual) and block.write_into(o, dst)):
                dst.copy_(block(o))
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
        # the whole block streamed row by row (CARN's and CARN-M's blocks on an AVX-512 CPU); None otherwise
        self.streamed = StreamedResidual.from_body(list(body)) if cpu_kernels.available() else None

    def write_into(self, x: torch.Tensor, out: torch.Tensor) -> bool:
        """``out.copy_(self(x))`` without the intermediate tensors, when the streamed kernel runs here;
        False (nothing written) otherwise. ``out`` must not overlap ``x``."""
        return self.streamed is not None and self.streamed(x, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.head(x), residual=x)


class _ShuffleNHWC(nn.Module):
    """Pixel shuffle for a conv whose output channels were reordered by ``shuffle_order``: every output pixel
    then gathers ``groups`` contiguous runs of C/groups channels instead of C values spaced r*r apart."""

    def __init__(self, r: int, groups: int) -> None:
        super().__init__()
        self.r, self.groups = r, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = x.shape
        r, g = self.r, self.groups
        c = ch // (r * r)
        y = x.permute(0, 2, 3, 1).reshape(n, h, w, g, r, r, c // g)
        y = y.permute(0, 1, 4, 2, 5, 3, 6).reshape(n, h * r, w * r, c)
        return y.permute(0, 3, 1, 2)


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
    it saves its 4x larger write and the shuffle's copy; at x4 that map is a tile's largest tensor. Inputs with
    the exit conv's own channel count (a x3 branch keeps its shuffle) run the exit conv as it is."""

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
        sub = nn.Conv2d(c * r * r, o * r * r, 3, 1, 1, bias=exit_conv.bias is not None)
        with torch.no_grad():
            sub.weight.copy_(ws)
            if exit_conv.bias is not None:
                sub.bias.copy_(exit_conv.bias.detach().repeat_interleave(r * r))
        self.r, self.in_channels = r, c
        self.plain, self.sub = FusedConv(exit_conv, relu=False), FusedConv(sub, relu=False)

    def forward(self, x: "torch.Tensor | _Pending") -> torch.Tensor:
        if isinstance(x, _Pending):
            y = x.module.tail(x.input) if x.module.tail is not None else None
            if y is not None:
                return y
            x = x.module.conv(x.input)
        if x.shape[1] == self.in_channels:
            return self.plain(x)
        return F.pixel_shuffle(self.sub(x), self.r)


class _Pending:
    """An upsampling conv not yet run: ``module.conv(input)``. A SubPixelExit receiving it runs the conv
    and itself as one streamed kernel (the conv's 256-channel output never stored) or, where that kernel
    cannot run, the conv and then itself."""

    def __init__(self, module: "_PendingConv", x: torch.Tensor) -> None:
        self.module, self.input = module, x


class _PendingConv(nn.Module):
    """The last conv (+ ReLU) of an upsampling branch whose pixel shuffle SubPixelExit does: its output goes
    only to the exit conv (the model declares ``exit_reads``), so it is handed over unrun."""

    def __init__(self, conv: FusedConv, tail: StreamedTail | None) -> None:
        super().__init__()
        self.conv, self.tail = conv, tail

    def forward(self, x: torch.Tensor) -> _Pending:
        return _Pending(self, x)


def _defer_last_conv(upsampler: nn.Module, sub: FusedConv) -> None:
    """Wrap each fused branch-final conv + ReLU (followed by the Identity left by _defer_last_shuffle) in a
    _PendingConv carrying the streamed tail kernel for it and the sub-pixel exit conv ``sub``."""
    for seq in [m for m in upsampler.modules() if isinstance(m, nn.Sequential)]:
        mods = list(seq)
        if len(mods) >= 2 and isinstance(mods[-1], nn.Identity) and type(mods[-2]) is FusedConv and mods[-2].relu:
            seq[len(mods) - 2] = _PendingConv(mods[-2], StreamedTail.from_convs(mods[-2], sub))


def _defer_last_shuffle(upsampler: nn.Module) -> int:
    """Drop the final PixelShuffle(2) of every branch of ``upsampler`` (a SubPixelExit does it); returns how
    many were dropped."""
    n = 0
    for seq in [m for m in upsampler.modules() if isinstance(m, nn.Sequential)]:
        mods = list(seq)
        if len(mods) >= 3 and isinstance(mods[-1], nn.PixelShuffle) and mods[-1].upscale_factor == 2 \
                and isinstance(mods[-2], nn.ReLU) and isinstance(mods[-3], nn.Conv2d):
            seq[len(mods) - 1] = nn.Identity()
            n += 1
    return n


def _fuse_sequence(mods: list[nn.Module]) -> list[nn.Module]:
    """conv -> FusedConv; conv, ReLU -> FusedConv(relu);
    conv, ReLU, PixelShuffle -> FusedConv(relu) with reordered channels, _ShuffleNHWC."""
    out: list[nn.Module] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1:i + 3]
        if isinstance(m, nn.Conv2d):
            relu = bool(nxt) and isinstance(nxt[0], nn.ReLU)
            if relu and len(nxt) == 2 and isinstance(nxt[1], nn.PixelShuffle) \
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
    return out


def _fuse(module: nn.Module) -> None:
    """Rewrite, in place, every part whose forward matches a fused kernel (see each block's class attribute)."""
    for name, child in list(module.named_children()):
        if getattr(child, "relu_of_conv", False):            # forward is relu(child.conv(x))
            conv = child.conv
            pointwise = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1
            new: nn.Module = CascadeFuse(conv, True) if pointwise else FusedConv(conv, True)
        elif getattr(child, "relu_of_residual", False):      # forward is relu(child.body(x) + x)
            new = FusedResidual(child.body)
        elif isinstance(child, nn.Sequential):
            _fuse(child)
            new = nn.Sequential(*_fuse_sequence(list(child)))
        else:
            _fuse(child)
            continue
        setattr(module, name, new)


def _bake_weight_norm(model: nn.Module) -> None:
    """Replace every weight-normalized conv (a Conv2d subclass with ``effective_weight()``) by a plain one."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and callable(getattr(child, "effective_weight", None)):
                conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                 child.padding, groups=child.groups, bias=child.bias is not None)
                with torch.no_grad():
                    conv.weight.copy_(child.effective_weight())
                    if child.bias is not None:
                        conv.bias.copy_(child.bias)
                setattr(parent, name, conv)


def prepare_fast(model: nn.Module, half: torch.dtype | None = None, fuse: bool = True) -> nn.Module:
    """A frozen inference copy of ``model`` (see the module docstring); ``model`` itself is not changed.
    ``add_mean`` is folded into the conv the model names as ``exit_conv`` (its forward must end in
    ``add_mean(exit_conv(...) [+ terms])``); a model without one keeps its ``add_mean``."""
    fast = copy.deepcopy(model).eval()
    _bake_weight_norm(fast)
    exit_conv = getattr(fast, getattr(fast, "exit_conv", ""), None)
    if isinstance(getattr(fast, "add_mean", None), MeanShift) and isinstance(exit_conv, nn.Conv2d) \
            and exit_conv.bias is not None:
        with torch.no_grad():
            exit_conv.bias.add_(fast.add_mean.shifter.bias)
        fast.add_mean = nn.Identity()
    if isinstance(getattr(fast, "sub_mean", None), MeanShift):
        fast.sub_mean = _Subtract(fast.sub_mean)
    upsampler = getattr(fast, getattr(fast, "exit_reads", ""), None)
    if fuse and isinstance(upsampler, nn.Module) and isinstance(exit_conv, nn.Conv2d) \
            and exit_conv.kernel_size == (3, 3) and _defer_last_shuffle(upsampler):
        setattr(fast, fast.exit_conv, SubPixelExit(exit_conv))
    if fuse:
        _fuse(fast)
        exit_module = getattr(fast, getattr(fast, "exit_conv", ""), None)
        if isinstance(exit_module, SubPixelExit) and cpu_kernels.available():
            _defer_last_conv(upsampler, exit_module.sub)
    fast = fast.to(memory_format=torch.channels_last)
    if half is not None:
        fast = fast.to(half)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


def to_fast_input(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)
    return x if dtype is None else x.to(dtype)
