"""bf16 streamed CPU kernels on AVX512-BF16 and AMX-BF16 (``fast/csrc/cpu_bf16_avx512bf16.c``; why: its header).

The bf16 twins of the float32 streamed kernels (srkit.inference.fast.cpu_fp32) for the parts where the time goes:

- ``ResidualBF16``: a residual block of 3x3 convs (3x3, ReLU, 3x3) or an efficient one (grouped 3x3, ReLU,
  grouped 3x3, ReLU, 1x1), ``relu(body(x) + x)`` from a bf16 NHWC map into any bf16 NHWC destination (a slice
  of the cascade buffer), its intermediates never stored;
- ``fuse1x1``: a cascade's 1x1 fusion over the bf16 buffer's 64-channel blocks, bias and ReLU in the store;
- ``ConvBF16``: a 3x3 conv from 64 channels (+ ReLU), by rows: dense to 64 n outputs, or in 4 groups
  of 16 channels to 16 m outputs each (an upsampling conv);
- ``TailBF16``: the x2 tail, the last upsampling conv + ReLU + the sub-pixel exit conv + pixel
  shuffle, without the 256-channel map; its output is the float32 image;
- ``ShuffleExitBF16``: the exit conv after an x3 pixel shuffle, read from the unshuffled bf16 map (vdpbf16ps
  only; where AMX runs, the float32 kernel is kept);
- ``WideBodyBF16``: a wide-activation body (1x1 to 64 n, ReLU, 1x1 to at most 64, 3x3 to 64), by rows;
- ``channel_mean``, ``scale_add``: an SE-scaled residual's passes over a bf16 map (torch's bf16 reductions and
  pointwise ops measured 2-4x slower than its float32 ones here).

Products are AMX tile products where the CPU has AMX-BF16 (``SRKIT_BF16_AMX=0`` turns them off), else vdpbf16ps
(bf16 pairs, float32 accumulation either way); bias, ReLU and the residual add are float32 before the one
rounding to bf16. Each returns False / None where it cannot
serve (no build, no AVX512-BF16, turned off, not bf16 on the CPU, gradients on) and the caller runs its other
path. The library is chosen like the
float32 builds (cpu_fp32.py): ``SRKIT_CPU_KERNELS=off`` (or ``SRKIT_NO_CPU_KERNELS=1``) turns it off; a
forced float32 build (``SRKIT_CPU_KERNELS=avx512|avx2``) stands for a CPU without bf16 units, so this one is
not loaded; ``SRKIT_CPU_KERNELS_LIB=folder`` loads the build in that folder (scripts/asan_kernels.sh).

Packed weights are held as int16 (the bf16 bit patterns) and biases as int32 (the float32 bit patterns), so
that casting a prepared model to bf16 (``Module.to``), which converts floating-point buffers only, leaves them
as the kernels read them.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path

import torch
import torch.nn as nn

from srkit.inference.fast.backends import Backend, register
from srkit.inference.fast.cpu_fp32 import _overlap, _pixel_stride, residual_from_body, winograd_weights
from srkit.inference.precision import _cpu_flags

_ABI = 5  # cpu_bf16_avx512bf16.c's ABI must match
_VARIANT = 3
_STEM = "_cpu_bf16"
_LIB: ctypes.CDLL | None | bool = None  # None: not looked for yet; False: not usable here
_WHY_NOT = ""

# Winograd F(4,3) for the dense 3x3 convs on the AVX512-BF16 path (the AMX path runs them directly: its tile
# products are cheap next to the transforms). Measured per dense residual block at 640x360 on a 2-core Xeon
# (scripts/bench_bf16_kernels.py, SRKIT_BF16_AMX=0): Winograd 165 ms, direct 301 ms (float32 kernel 113 ms,
# oneDNN bf16 86 ms: vdpbf16ps runs half the float32 FMA's multiply-adds a cycle there).
WINOGRAD = True


def _load(path: Path) -> ctypes.CDLL:
    """The library with its functions' argument types, or OSError (unloadable, or built from other source)."""
    lib = ctypes.CDLL(str(path))
    abi, built = getattr(lib, "srkit_bf16_abi", None), getattr(lib, "srkit_bf16_variant", None)
    if abi is None or abi() != _ABI or built is None or built() != _VARIANT:
        raise OSError(f"{path.name} was built from another version of cpu_bf16_avx512bf16.c: rebuild it "
                      "(python setup.py build_ext --inplace)")
    p, i, long, pp = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.POINTER(ctypes.c_void_p)
    for name, args in (("srkit_bf16_resblock", [p, long, p, long, i, i, i, i, pp, pp, pp, p, p, i]),
                       ("srkit_bf16_fuse1x1", [p, long, p, long, i, long, p, p, p, long, i]),
                       ("srkit_bf16_conv3x3", [p, long, i, i, i, p, p, p, i, p, p, long, i]),
                       ("srkit_bf16_subpixel_tail", [p, long, i, i, i, p, p, p, p, p, p, long, long, long, i]),
                       ("srkit_bf16_wide_body", [p, long, p, long, i, i, i, p, p, p, p, p, p, i]),
                       ("srkit_bf16_channel_sums", [p, long, long, p, i]),
                       ("srkit_bf16_gconv3x3", [p, long, i, i, i, p, p, i, p, p, long, i]),
                       ("srkit_bf16_scale_add", [p, long, p, p, long, ctypes.c_float, p, long, long, i]),
                       ("srkit_bf16_shuffle_exit", [p, long, i, i, i, i, p, p, p, p, long, long, long, i])):
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = i
    lib.srkit_bf16_amx.argtypes, lib.srkit_bf16_amx.restype = [i], i
    return lib


def _use_amx(lib: ctypes.CDLL) -> bool:
    """Turn on the AMX forms where the CPU has AMX-BF16 (and the build and the kernel allow it), unless
    ``SRKIT_BF16_AMX=0``: there they beat the AVX512-BF16 ones (cpu_bf16_avx512bf16.c, the AMX part)."""
    want = "amx_bf16" in _cpu_flags() and os.environ.get("SRKIT_BF16_AMX", "1") != "0"
    return bool(lib.srkit_bf16_amx(int(want)))


def _built() -> Path | None:
    here = Path(os.environ.get("SRKIT_CPU_KERNELS_LIB") or Path(__file__).parent)
    return next((p for p in (here / f"{_STEM}{s}" for s in importlib.machinery.EXTENSION_SUFFIXES) if p.exists()), None)


def _choose() -> tuple[Path | None, str]:
    """(library, why not) from the environment, the build present and the CPU."""
    asked = os.environ.get("SRKIT_CPU_KERNELS", "").lower()
    if os.environ.get("SRKIT_NO_CPU_KERNELS", "") not in ("", "0") or asked == "off":
        return None, "turned off (SRKIT_CPU_KERNELS=off or SRKIT_NO_CPU_KERNELS)"
    if asked in ("avx512", "avx2"):
        return None, f"SRKIT_CPU_KERNELS={asked} forces a float32 build (a CPU without bf16 units)"
    if "avx512_bf16" not in _cpu_flags() or torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        return None, "this CPU has no AVX512-BF16"
    path = _built()
    if path is None:
        return None, "the bf16 build is absent (python setup.py build_ext --inplace builds it; it needs a C compiler)"
    return path, ""


def _library() -> ctypes.CDLL | None:
    global _LIB, _WHY_NOT
    if _LIB is None:
        _LIB = False
        path, why = _choose()
        if path is None:
            _WHY_NOT = why
        else:
            try:
                _LIB = _load(path)
                _use_amx(_LIB)
            except (OSError, AttributeError) as e:
                _WHY_NOT = str(e).splitlines()[0] if str(e) else f"{path.name} could not be loaded"
    return _LIB or None


def available() -> bool:
    """Whether the bf16 build is present, this CPU runs it, and it is not turned off."""
    return _library() is not None


def unavailable_reason() -> str:
    """Why ``available()`` is False, in words ("" when it is True)."""
    return "" if available() else (_WHY_NOT or "turned off")


BACKEND = register(Backend("cpu_bf16", "cpu", (torch.bfloat16,), "x86-64 with AVX512-BF16 (AMX-BF16 where present)",
                           "streamed bf16 residual blocks, cascade fusions, upsampling convs, x2 tail, "
                           "x3 shuffle exit, wide bodies",
                           True, unavailable_reason))


def amx_wanted() -> bool:
    """Whether the kernels take their AMX forms here: loaded, the CPU has AMX-BF16, not ``SRKIT_BF16_AMX=0``."""
    return available() and "amx_bf16" in _cpu_flags() and os.environ.get("SRKIT_BF16_AMX", "1") != "0"


def serves(weight: torch.Tensor) -> bool:
    """Whether a model with weights like ``weight`` gets these kernels in bf16: available, weights on the CPU."""
    return weight.device.type == "cpu" and available()


def _runnable(*tensors: torch.Tensor) -> ctypes.CDLL | None:
    """The library, when the kernels can run on these activations: bf16 on the CPU, no autograd; else None."""
    if torch.is_grad_enabled() or any(t.device.type != "cpu" or t.dtype != torch.bfloat16 for t in tensors):
        return None
    return _library()


def _check(rc: int, name: str) -> None:
    if rc == -2:
        raise MemoryError(f"{name}: out of memory for its row buffers")
    if rc != 0:
        raise RuntimeError(f"{name} refused a shape it was built for (code {rc})")


def bf16_bits(t: torch.Tensor) -> torch.Tensor:
    """``t`` rounded to bf16 (nearest even), as int16 bit patterns, flat and contiguous."""
    return t.detach().float().to(torch.bfloat16).reshape(-1).contiguous().view(torch.int16)


def float_bits(t: torch.Tensor) -> torch.Tensor:
    """``t`` as float32 bit patterns (int32), flat and contiguous: a bias the kernels read as float32."""
    return t.detach().float().reshape(-1).contiguous().view(torch.int32)


def pairs(w: torch.Tensor) -> torch.Tensor:
    """A [..., K in, O out] float weight as the kernels read it: [..., K / 2][O][2] bf16 bits."""
    *lead, k, o = w.shape
    return bf16_bits(w.reshape(*lead, k // 2, 2, o).transpose(-1, -2))


def pack3x3(w: torch.Tensor, groups: int) -> torch.Tensor:
    """A 3x3 conv weight [O, K, 3, 3] (O = 16 or 64 per group) as [G][ky][kx][K/2][O/G][2] bf16 bits."""
    o, k = w.shape[:2]
    return pairs(w.detach().float().reshape(groups, o // groups, k, 3, 3).permute(0, 3, 4, 2, 1))


def pack_winograd(w: torch.Tensor) -> torch.Tensor:
    """A dense 3x3 conv weight [64, 64, 3, 3] transformed for Winograd F(4,3) (in float64, then rounded once):
    [6][96 pairs of 3 rows x 64 channels][64][2] bf16 bits."""
    return pairs(winograd_weights(w, 1).reshape(6, 192, 64))


def pack1x1(w: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv weight [64, C, 1, 1] as [C/2][64][2] bf16 bits (a cascade fusion's inputs: C = 64 n)."""
    return pairs(w.detach().float().reshape(w.shape[0], -1).t())


def pack_fuse(weight: torch.Tensor) -> torch.Tensor | None:
    """A cascade fusion's 1x1 weight [64, 64 n, 1, 1] packed, or None when it does not fit (not 64 outputs,
    inputs not whole 64-channel blocks, more than 4 blocks)."""
    o, c = weight.shape[:2]
    if o != 64 or c % 64 or not 1 <= c // 64 <= 4 or tuple(weight.shape[2:]) != (1, 1):
        return None
    return pack1x1(weight)


class ResidualBF16(nn.Module):
    """``relu(body(x) + x)`` in bf16 for a body of 3x3 convs (ReLU after all but possibly the last) and an
    optional final 1x1, 64 channels, groups 1 or 4, written into a caller's bf16 NHWC destination."""

    def __init__(self, w3: list[torch.Tensor], b3: list[torch.Tensor], groups: int,
                 w1: torch.Tensor | None, b1: torch.Tensor | None, winograd: bool | None = None) -> None:
        super().__init__()
        self.groups, self.n3 = groups, len(w3)
        # Winograd only for dense convs: the grouped ones gained little from it even in float32
        self.winograd = (WINOGRAD if winograd is None else winograd) and groups == 1
        for i, (w, b) in enumerate(zip(w3, b3)):
            self.register_buffer(f"w3_{i}", pack3x3(w, groups))
            self.register_buffer(f"u3_{i}", pack_winograd(w) if groups == 1 else None)
            self.register_buffer(f"b3_{i}", float_bits(b))
        self.register_buffer("w1", None if w1 is None else pack1x1(w1))
        self.register_buffer("b1", None if b1 is None else float_bits(b1))

    from_body = classmethod(residual_from_body)  # the kernel for a residual body, or None

    def forward(self, x: torch.Tensor, out: torch.Tensor) -> bool:
        """Write ``relu(body(x) + x)`` into ``out``; False (nothing written) when the kernel cannot run here."""
        lib = _runnable(x, out)
        xs, ys = _pixel_stride(x), _pixel_stride(out)
        if lib is None or xs is None or ys is None or x.shape != out.shape or x.shape[1] != 64 or _overlap(x, out):
            return False
        p = ctypes.c_void_p
        ptrs = lambda name: (p * self.n3)(*[getattr(self, f"{name}_{i}").data_ptr() for i in range(self.n3)])
        u3 = ptrs("u3") if self.winograd else None
        w1 = self.w1.data_ptr() if self.w1 is not None else None
        b1 = self.b1.data_ptr() if self.b1 is not None else None
        n, _, h, w = x.shape
        for i in range(n):
            _check(lib.srkit_bf16_resblock(x[i].data_ptr(), xs, out[i].data_ptr(), ys, h, w, self.groups, self.n3,
                                           ptrs("w3"), u3, ptrs("b3"), w1, b1, torch.get_num_threads()),
                   "srkit_bf16_resblock")
        return True


def fuse1x1(rows: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor, out: torch.Tensor | None = None,
            first: torch.Tensor | None = None) -> torch.Tensor | None:
    """``relu(rows @ W^T + bias)`` in bf16 for ``rows`` a bf16 [pixels, 64 n] view of the cascade buffer's first
    n blocks, into ``out`` (a contiguous bf16 [pixels, 64]) or a new tensor; ``packed`` from ``pack_fuse``,
    ``bias`` from ``float_bits``. ``first`` (a bf16 NHWC [N, 64, H, W] of the same pixels) stands for block 0.
    None when the kernel cannot run here."""
    lib = _runnable(rows, *([first] if first is not None else []))
    npix, c = rows.shape
    fs = _pixel_stride(first) if first is not None else 0
    if lib is None or rows.stride(1) != 1 or rows.stride(0) % 2 or packed.numel() != c * 64 or fs is None \
            or (first is not None and (first.shape[1] != 64 or first.numel() != npix * 64 or fs % 2
                                       or (first.shape[0] > 1 and first.stride(0) != first[0, 0].numel() * fs))):
        return None
    ok = out is not None and out.shape == (npix, 64) and out.dtype == torch.bfloat16 and out.is_contiguous()
    y = out if ok else torch.empty(npix, 64, dtype=torch.bfloat16)
    _check(lib.srkit_bf16_fuse1x1(rows.data_ptr(), rows.stride(0), first.data_ptr() if first is not None else None,
                                  fs, c // 64, npix, packed.data_ptr(), bias.data_ptr(), y.data_ptr(), 64,
                                  torch.get_num_threads()), "srkit_bf16_fuse1x1")
    return y


class ConvBF16(nn.Module):
    """A dense 3x3 conv (padding 1) from 64 bf16 channels to 64 n (+ bias, optional ReLU), streamed by rows;
    its output bf16 or, with ``float_out``, float32 (channels_last)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, relu: bool, winograd: bool | None = None,
                 groups: int = 1) -> None:
        super().__init__()
        self.out_channels, self.relu, self.groups = weight.shape[0], relu, groups
        self.winograd = (WINOGRAD if winograd is None else winograd) and groups == 1
        w = weight.detach().float()
        if groups == 1:
            chunks = w.split(64)
            self.register_buffer("w", torch.cat([pack3x3(c, 1) for c in chunks]))
            self.register_buffer("u", torch.cat([pack_winograd(c) for c in chunks]))
        else:  # [group][64-output chunks, then 16-output chunks], each [ky][kx][8 pairs][outputs][2]
            per, parts = w.shape[0] // 4, []
            for g in range(4):
                wg = w[g * per:(g + 1) * per]
                parts += [pack3x3(c, 1) for c in [*wg[:per // 64 * 64].split(64), *wg[per // 64 * 64:].split(16)]
                          if c.shape[0]]
            self.register_buffer("w", torch.cat(parts))
            self.register_buffer("u", None)
        self.register_buffer("b", float_bits(bias))
        self.workspace = None  # set by srkit.inference.fast.prepare_fast: outputs not fresh pages each call

    @classmethod
    def from_conv(cls, conv: nn.Module, relu: bool) -> "ConvBF16 | None":
        """For a 3x3 conv (nn.Conv2d or srkit.inference.fast.FusedConv) 64 -> 64 n, stride 1, padding 1, bias."""
        w = conv.weight
        if w.dim() != 4 or tuple(w.shape[2:]) != (3, 3) or conv.bias is None or tuple(conv.padding) != (1, 1) \
                or tuple(conv.stride) != (1, 1) or tuple(conv.dilation) != (1, 1) \
                or getattr(conv, "padding_mode", "zeros") != "zeros":
            return None
        o, c = w.shape[:2]
        if conv.groups == 1 and c == 64 and o % 64 == 0:
            return cls(w, conv.bias, relu)
        if conv.groups == 4 and c == 16 and o % 64 == 0 and (o // 4) % 16 == 0:
            return cls(w, conv.bias, relu, groups=4)
        return None

    def forward(self, x: torch.Tensor, float_out: bool = False, out: torch.Tensor | None = None) -> torch.Tensor | None:
        """The conv of bf16 ``x`` (channels_last, into ``out`` when given and it fits), or None when the kernel
        cannot run here."""
        lib = _runnable(x)
        xs = _pixel_stride(x)
        if lib is None or xs is None or x.shape[1] != 64:
            return None
        n, _, h, w = x.shape
        dtype = torch.float32 if float_out else torch.bfloat16
        shape = (n, self.out_channels, h, w)
        if out is None or out.shape != shape or out.dtype != dtype or not out.is_contiguous(memory_format=torch.channels_last):
            like = self.b.view(dtype) if float_out else x
            out = self.workspace.take(shape, like, memory_format=torch.channels_last) if self.workspace is not None \
                else torch.empty(shape, dtype=dtype, memory_format=torch.channels_last)
        for i in range(n):
            y = out[i].data_ptr()
            yb, yf = (None, y) if float_out else (y, None)
            if self.groups == 1:
                rc = lib.srkit_bf16_conv3x3(x[i].data_ptr(), xs, h, w, self.out_channels // 64, self.w.data_ptr(),
                                            self.u.data_ptr() if self.winograd else None, self.b.data_ptr(),
                                            int(self.relu), yb, yf, self.out_channels, torch.get_num_threads())
            else:
                rc = lib.srkit_bf16_gconv3x3(x[i].data_ptr(), xs, h, w, self.out_channels // 4, self.w.data_ptr(),
                                             self.b.data_ptr(), int(self.relu), yb, yf, self.out_channels,
                                             torch.get_num_threads())
            _check(rc, "srkit_bf16_conv3x3")
        return out


class TailBF16(nn.Module):
    """The bf16 form of ``srkit.inference.fast.cpu_fp32.StreamedTail`` (its weights, repacked): from a bf16 map to
    the float32 image at twice its size; None where it cannot run (the float32 tail then runs)."""

    def __init__(self, tail: nn.Module) -> None:
        super().__init__()
        self.groups = tail.groups
        k = 64 // tail.groups
        self.register_buffer("wa", pairs(tail.wa.float().reshape(4, 3, 3, k, 64)))
        self.register_buffer("ba", float_bits(tail.ba))
        self.register_buffer("we", pairs(tail.we.float().reshape(36, 64, 16)))
        self.register_buffer("be", float_bits(tail.be))
        self.register_buffer("mask", tail.mask.clone())
        self.workspace = None  # set by srkit.inference.fast.prepare_fast

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The 3-channel float32 output at twice ``x``'s size (channels_last), or None when it cannot run."""
        lib = _runnable(x)
        xs = _pixel_stride(x)
        if lib is None or xs is None or x.shape[1] != 64:
            return None
        n, _, h, w = x.shape
        shape = (n, 3, 2 * h, 2 * w)
        y = self.workspace.take(shape, self.ba.view(torch.float32), memory_format=torch.channels_last) \
            if self.workspace is not None else torch.empty(shape, memory_format=torch.channels_last)
        for i in range(n):
            rc = lib.srkit_bf16_subpixel_tail(x[i].data_ptr(), xs, h, w, self.groups, self.wa.data_ptr(),
                                              self.ba.data_ptr(), self.we.data_ptr(), self.be.data_ptr(),
                                              self.mask.data_ptr(), y[i].data_ptr(), y.stride(2), y.stride(3),
                                              y.stride(1), torch.get_num_threads())
            if rc == -1 and i == 0:
                return None  # a shape it does not serve: nothing written
            _check(rc, "srkit_bf16_subpixel_tail")
        return y


class ShuffleExitBF16(nn.Module):
    """The bf16 form of ``srkit.inference.fast.cpu_fp32.StreamedShuffleExit`` (its weights, repacked): the exit
    conv after an x r pixel shuffle, read from the bf16 unshuffled map; its output is the float32 image. Its
    products are vdpbf16ps on every CPU (the 32 output lanes fit no AMX tile shape), so a model prepared where
    AMX runs keeps the float32 kernel instead (``amx_wanted``: vdpbf16ps there does half the float32 FMA's
    multiply-adds a cycle)."""

    def __init__(self, k: nn.Module) -> None:
        super().__init__()
        self.r, self.groups = k.r, k.groups
        self.register_buffer("we", pairs(k.we.float().reshape(9 * k.r * k.r, 64, 32)))
        self.register_buffer("be", float_bits(k.be))
        self.register_buffer("mask", k.mask.clone())
        self.workspace = None  # set by srkit.inference.fast.prepare_fast

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The 3-channel float32 output at r times ``x``'s size (channels_last), or None when it cannot run."""
        lib = _runnable(x)
        xs = _pixel_stride(x)
        r = self.r
        if lib is None or xs is None or x.shape[1] != 64 * r * r:
            return None
        n, _, h, w = x.shape
        shape = (n, 3, r * h, r * w)
        y = self.workspace.take(shape, self.be.view(torch.float32), memory_format=torch.channels_last) \
            if self.workspace is not None else torch.empty(shape, memory_format=torch.channels_last)
        for i in range(n):
            _check(lib.srkit_bf16_shuffle_exit(x[i].data_ptr(), xs, h, w, self.groups, r, self.we.data_ptr(),
                                               self.be.data_ptr(), self.mask.data_ptr(), y[i].data_ptr(),
                                               y.stride(2), y.stride(3), y.stride(1), torch.get_num_threads()),
                   "srkit_bf16_shuffle_exit")
        return y


class WideBodyBF16(nn.Module):
    """The bf16 form of ``srkit.inference.fast.cpu_fp32.StreamedWideBody`` (its weights, repacked): a bf16 map to a
    bf16 map (into a caller's NHWC destination, or a new tensor); None where it cannot run."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.c1 = body.c1
        self.register_buffer("w1", pairs(body.w1.float().reshape(body.c1, 64, 64)))
        self.register_buffer("b1", float_bits(body.b1))
        self.register_buffer("w2", pairs(body.w2.float().reshape(64 * body.c1, 64)))
        self.register_buffer("b2", float_bits(body.b2))
        self.register_buffer("w3", pairs(body.w3.float().reshape(9, 64, 64)))
        self.register_buffer("b3", float_bits(body.b3))
        self.workspace = None  # set by srkit.inference.fast.prepare_fast

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor | None:
        lib = _runnable(x)
        xs = _pixel_stride(x)
        if lib is None or xs is None or x.shape[1] != 64:
            return None
        if out is None:
            out = self.workspace.take(tuple(x.shape), x, memory_format=torch.channels_last) \
                if self.workspace is not None else torch.empty_like(x, memory_format=torch.channels_last)
        ys = _pixel_stride(out)
        if ys is None or out.shape != x.shape or out.dtype != torch.bfloat16 or _overlap(x, out):
            return None
        n, _, h, w = x.shape
        for i in range(n):
            rc = lib.srkit_bf16_wide_body(x[i].data_ptr(), xs, out[i].data_ptr(), ys, h, w, self.c1,
                                          self.w1.data_ptr(), self.b1.data_ptr(), self.w2.data_ptr(),
                                          self.b2.data_ptr(), self.w3.data_ptr(), self.b3.data_ptr(),
                                          torch.get_num_threads())
            if rc == -1 and i == 0:
                return None  # a shape it does not serve: nothing written
            _check(rc, "srkit_bf16_wide_body")
        return out


def channel_mean(b: torch.Tensor) -> torch.Tensor | None:
    """``b.mean((2, 3), keepdim=True)`` of a bf16 NHWC [N, 64, H, W] map, accumulated in float32 (float32 out),
    or None when the kernel cannot run here."""
    lib = _runnable(b)
    bs = _pixel_stride(b)
    if lib is None or bs is None or b.shape[1] != 64:
        return None
    n, _, h, w = b.shape
    sums = torch.empty(n, 64, dtype=torch.float32)
    for i in range(n):
        _check(lib.srkit_bf16_channel_sums(b[i].data_ptr(), bs, h * w, sums[i].data_ptr(), torch.get_num_threads()),
               "srkit_bf16_channel_sums")
    return (sums / (h * w)).view(n, 64, 1, 1)


def scale_add(b: torch.Tensor, factor: torch.Tensor, x: torch.Tensor, x_scale: float, out: torch.Tensor) -> bool:
    """``out = b * factor + x * x_scale`` for bf16 NHWC [N, 64, H, W] maps and ``factor`` [N, 64, 1, 1] (any float
    dtype), computed in float32; False (nothing written) when the kernel cannot run here."""
    lib = _runnable(b, x, out)
    bs, xs, os_ = _pixel_stride(b), _pixel_stride(x), _pixel_stride(out)
    if lib is None or None in (bs, xs, os_) or not b.shape == x.shape == out.shape or b.shape[1] != 64 \
            or factor.numel() != b.shape[0] * 64 or _overlap(x, out) or _overlap(b, out):
        return False
    n, _, h, w = b.shape
    f = factor.detach().float().reshape(n, 64).contiguous()
    for i in range(n):
        _check(lib.srkit_bf16_scale_add(b[i].data_ptr(), bs, f[i].data_ptr(), x[i].data_ptr(), xs, x_scale,
                                        out[i].data_ptr(), os_, h * w, torch.get_num_threads()), "srkit_bf16_scale_add")
    return True
