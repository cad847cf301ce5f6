"""The CPU float32 backend: streamed kernels for the fast path's 64-channel parts (C sources in ``csrc/``, one
file per instruction set, ``fp32_avx512.c`` and ``fp32_avx2.c``, around the shared ``fp32_streamed.h``; why
they exist: its header).

- ``StreamedResidual``: a residual block of 3x3 convs (3x3, ReLU, 3x3) or an efficient one (grouped 3x3,
  ReLU, grouped 3x3, ReLU, 1x1), ``relu(body(x) + x)`` written into any NHWC destination (a slice of the
  cascade buffer), its intermediates never stored;
- ``StreamedTail``: the last x2 upsampling conv + ReLU + the sub-pixel exit conv + pixel shuffle, without the
  256-channel map;
- ``fuse1x1``: a cascade's 1x1 fusion over the buffer's 64-channel blocks, bias and ReLU in the store;
- ``StreamedConv3x3``: any other dense 3x3 conv from 64 channels to a multiple of 64 (a x3 upsampling
  conv, the first stage at x4), by rows;
- ``StreamedWideBody``: a wide-activation body (1x1 from 64 channels to 64 n, ReLU, 1x1 to at most 64, 3x3
  to 64), by rows: its wide maps are never stored.

Each returns False / None when it cannot run here (no compiled kernel, a CPU without AVX-512 or AVX2, not
float32 on the CPU, gradients on), and the caller runs the oneDNN path instead (``onednn``): the two agree to
rounding (tested). Two builds (setup.py, each optional: a failed build only loses it): AVX-512F and AVX2 + FMA.
The best one this CPU runs is loaded with ctypes (which releases the GIL for each call): AVX-512 where torch
reports AVX512 or AMX, else AVX2. ``SRKIT_CPU_KERNELS=avx512|avx2|off`` chooses instead (``avx2`` on an
AVX-512 CPU runs the AVX2 build; ``SRKIT_NO_CPU_KERNELS=1`` is ``off``), and ``SRKIT_CPU_KERNELS_LIB=folder``
loads the builds in that folder (scripts/asan_kernels.sh's AddressSanitizer builds).
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path

import torch
import torch.nn as nn

from srkit.core.resize import bicubic_taps
from srkit.inference.fast.backends import Backend, register

_LIB: ctypes.CDLL | None | bool = None  # None: not looked for yet; False: not usable here
_VARIANT = ""
_WHY_NOT = ""
_ABI = 7  # the functions and argument lists below; csrc/fp32_streamed.h's ABI must match
VARIANTS = {"avx512": ("_fp32_avx512", ("AVX512", "AMX"), 1), "avx2": ("_fp32_avx2", ("AVX2", "AVX512", "AMX"), 2)}


def _load(path: Path, variant: int) -> ctypes.CDLL:
    """The library with its functions' argument types, or OSError (unloadable, or built from other source)."""
    lib = ctypes.CDLL(str(path))
    abi, built = getattr(lib, "srkit_kernels_abi", None), getattr(lib, "srkit_kernels_variant", None)
    if abi is None or abi() != _ABI or built is None or built() != variant:
        raise OSError(f"{path.name} was built from another version of csrc/fp32_streamed.h: run pip install -e . again")
    p, i, long, pp = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.POINTER(ctypes.c_void_p)
    for name, args in (("srkit_resblock", [p, long, p, long, i, i, i, i, pp, pp, pp, p, p, i]),
                       ("srkit_subpixel_tail", [p, long, i, i, i, p, p, p, p, p, p, p, long, long, long, i]),
                       ("srkit_fuse1x1", [p, long, p, long, i, long, p, p, p, long, i]),
                       ("srkit_conv3x3", [p, long, i, i, i, p, p, i, p, long, i]),
                       ("srkit_wide_body", [p, long, p, long, i, i, i, p, p, p, p, p, p, p, i]),
                       ("srkit_gconv3x3", [p, long, i, i, i, p, p, i, p, long, i]),
                       ("srkit_shuffle_exit", [p, long, i, i, i, i, p, p, p, p, long, long, long, i]),
                       ("srkit_shuffle_resize",
                        [p, long, i, i, i, i, i, i, i, p, p, p, p, p, p, p, long, long, long, i])):
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = i
    return lib


def _built(stem: str) -> Path | None:
    """The build ``stem`` in this package's folder, or in ``$SRKIT_CPU_KERNELS_LIB`` (a folder of builds)."""
    here = Path(os.environ.get("SRKIT_CPU_KERNELS_LIB") or Path(__file__).parent)
    return next((p for p in (here / f"{stem}{s}" for s in importlib.machinery.EXTENSION_SUFFIXES) if p.exists()), None)


def _choose() -> tuple[str, Path | None, str]:
    """(variant, library, why not) from the environment, the builds present and the CPU."""
    asked = os.environ.get("SRKIT_CPU_KERNELS", "").lower()
    if os.environ.get("SRKIT_NO_CPU_KERNELS", "") not in ("", "0") or asked == "off":
        return "", None, "turned off (SRKIT_CPU_KERNELS=off or SRKIT_NO_CPU_KERNELS)"
    capability = torch.backends.cpu.get_cpu_capability()
    candidates = [asked] if asked in VARIANTS else list(VARIANTS)
    if asked and asked not in VARIANTS:
        return "", None, f"SRKIT_CPU_KERNELS={asked}: one of {', '.join([*VARIANTS, 'off'])}"
    reasons = []
    for name in candidates:
        stem, isas, _ = VARIANTS[name]
        path = _built(stem)
        if capability not in isas:
            reasons.append(f"this CPU has no {name.upper()} (torch reports {capability})")
        elif path is None or not path.exists():
            reasons.append(f"the {name} build is absent (pip install -e . builds it; it needs a C compiler)")
        else:
            return name, path, ""
    return "", None, "; ".join(reasons)


def _library() -> ctypes.CDLL | None:
    global _LIB, _WHY_NOT, _VARIANT
    if _LIB is None:
        _LIB = False
        name, path, why = _choose()
        if path is None:
            _WHY_NOT = why
        else:
            try:
                _LIB, _VARIANT = _load(path, VARIANTS[name][2]), name
            except (OSError, AttributeError) as e:
                _WHY_NOT = str(e).splitlines()[0] if str(e) else f"{path.name} could not be loaded"
    return _LIB or None


def variant() -> str:
    """The build in use ("avx512" or "avx2"), or "" when none runs here."""
    return _VARIANT if available() else ""


def available() -> bool:
    """Whether the compiled kernels are present, this CPU can run them, and they are not turned off."""
    return _library() is not None


def serves(weight: torch.Tensor) -> bool:
    """Whether a model whose weights are like ``weight`` gets streamed kernels: they are available and the
    weights live on the CPU (a model prepared on CUDA runs cuDNN throughout)."""
    return weight.device.type == "cpu" and available()


def unavailable_reason() -> str:
    """Why ``available()`` is False, in words ("" when it is True)."""
    return "" if available() else (_WHY_NOT or "turned off")


BACKEND = register(Backend("cpu_fp32", "cpu", (torch.float32,), "x86-64 with AVX-512F, or AVX2 + FMA",
                           "streamed 64-channel residual blocks, cascade fusions, tails and 3x3 convs", True,
                           unavailable_reason))


def _pixel_stride(t: torch.Tensor) -> int | None:
    """The pixel stride of an NHWC-laid-out 4-d tensor (channels contiguous, rows of W pixels), else None.
    Strides of size-1 dimensions are arbitrary in torch, so they are not trusted."""
    n, c, h, w = t.shape
    s = t.stride()
    ps = s[3] if w > 1 else s[2] if h > 1 else c
    if (s[1] == 1 or c == 1) and ps >= c and (h == 1 or s[2] == w * ps) and (n == 1 or s[0] >= h * w * ps):
        return ps
    return None


def _runnable(*tensors: torch.Tensor) -> ctypes.CDLL | None:
    """The library, when the kernels can run on these tensors: float32 on the CPU, no autograd; else None."""
    if torch.is_grad_enabled() or any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return None
    return _library()


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of two tensors intersect (conservative: spans, not exact elements)."""
    def span(t: torch.Tensor) -> tuple[int, int]:
        first = t.data_ptr()
        return first, first + t.element_size() * (1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride())))
    (a0, a1), (b0, b1) = span(a), span(b)
    return a0 < b1 and b0 < a1


# 1-D Winograd F(4,3) (csrc/fp32_streamed.h: wino_row): the weight transform G, applied here in float64
_WINOGRAD_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                            [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)


def winograd_weights(w: torch.Tensor, groups: int) -> torch.Tensor:
    """A 3x3 conv weight [O, K, 3, 3] as the Winograd kernel reads it: [G][6][3 rows x K][O / G], flat."""
    o, k = w.shape[:2]
    u = torch.einsum("xj,oiyj->xyio", _WINOGRAD_G, w.detach().double())  # [6][ky][K][O]
    u = u.reshape(6, 3 * k, groups, o // groups).permute(2, 0, 1, 3)
    return u.float().reshape(-1).contiguous()


def residual_convs(body: list[nn.Module]) -> tuple[list[nn.Conv2d], nn.Conv2d | None] | None:
    """The 3x3 convs and the optional final 1x1 of a residual block's body (its modules in order) as the
    streamed residual kernels (float32 and bf16) serve it: 64 channels, up to four 3x3 convs of groups 1 or 4,
    padding 1, a ReLU after each but the last (the 1x1, when there is one, follows a ReLU); None otherwise."""
    convs, relus = [], []
    for m in body:
        if isinstance(m, nn.Conv2d):
            convs.append(m)
            relus.append(False)
        elif isinstance(m, nn.ReLU) and relus and not relus[-1]:
            relus[-1] = True
        else:
            return None
    if not convs or any(c.in_channels != 64 or c.out_channels != 64 or c.bias is None or c.stride != (1, 1)
                        or c.dilation != (1, 1) or c.padding_mode != "zeros" for c in convs):
        return None
    one = convs[-1] if convs[-1].kernel_size == (1, 1) and convs[-1].groups == 1 \
        and convs[-1].padding == (0, 0) and len(convs) > 1 else None
    threes = convs[:-1] if one is not None else convs
    groups = threes[0].groups
    if len(threes) > 4 or groups not in (1, 4) or relus[-1] \
            or any(c.kernel_size != (3, 3) or c.padding != (1, 1) or c.groups != groups for c in threes) \
            or not all(relus[:len(threes) - (0 if one is not None else 1)]):
        return None
    return threes, one


def residual_from_body(cls: type, body: list[nn.Module]):
    """``cls(w3, b3, groups, w1, b1)`` for ``body`` (a residual block's modules in order), the constructor both
    residual kernels (float32 and bf16) take, or None when it does not fit (``residual_convs``)."""
    parts = residual_convs(body)
    if parts is None:
        return None
    threes, one = parts
    return cls([c.weight for c in threes], [c.bias for c in threes], threes[0].groups,
               one.weight if one is not None else None, one.bias if one is not None else None)


class StreamedResidual(nn.Module):
    """``relu(body(x) + x)`` for a body of 3x3 convs (ReLU after all but possibly the last) and an optional
    final 1x1, 64 channels, groups 1 or 4, written into a caller's NHWC destination."""

    def __init__(self, w3: list[torch.Tensor], b3: list[torch.Tensor], groups: int,
                 w1: torch.Tensor | None, b1: torch.Tensor | None, winograd: bool = True) -> None:
        super().__init__()
        self.groups, self.n3, self.winograd = groups, len(w3), winograd
        k = 64 // groups
        for i, (w, b) in enumerate(zip(w3, b3)):
            # [64, K, 3, 3] -> [G][ky][kx][K in][K out]: the kernel walks taps, then input channels
            # (stored flat: Module.to(memory_format=...) would re-stride a 4-d or 5-d buffer)
            packed = w.detach().float().reshape(groups, k, k, 3, 3).permute(0, 3, 4, 2, 1).reshape(-1)
            self.register_buffer(f"w3_{i}", packed.contiguous())
            self.register_buffer(f"u3_{i}", winograd_weights(w, groups))
            self.register_buffer(f"b3_{i}", b.detach().float().contiguous())
        self.register_buffer("w1", None if w1 is None else w1.detach().float().reshape(64, 64).t().reshape(-1))
        self.register_buffer("b1", None if b1 is None else b1.detach().float().contiguous())

    from_body = classmethod(residual_from_body)  # the kernel for a residual body, or None

    def forward(self, x: torch.Tensor, out: torch.Tensor) -> bool:
        """Write ``relu(body(x) + x)`` into ``out``; False (nothing written) when the kernel cannot run here."""
        lib = _runnable(x, out, self.w3_0)
        xs, ys = _pixel_stride(x), _pixel_stride(out)
        if lib is None or xs is None or ys is None or x.shape != out.shape or x.shape[1] != 64 or _overlap(x, out):
            return False
        p = ctypes.c_void_p
        w3 = (p * self.n3)(*[getattr(self, f"w3_{i}").data_ptr() for i in range(self.n3)])
        u3 = (p * self.n3)(*[getattr(self, f"u3_{i}").data_ptr() for i in range(self.n3)]) if self.winograd else None
        b3 = (p * self.n3)(*[getattr(self, f"b3_{i}").data_ptr() for i in range(self.n3)])
        w1 = self.w1.data_ptr() if self.w1 is not None else None
        b1 = self.b1.data_ptr() if self.b1 is not None else None
        n, _, h, w = x.shape
        for i in range(n):
            rc = lib.srkit_resblock(x[i].data_ptr(), xs, out[i].data_ptr(), ys, h, w, self.groups, self.n3,
                                    w3, u3, b3, w1, b1, torch.get_num_threads())
            _check(rc, "srkit_resblock")
        return True


def _check(rc: int, name: str) -> None:
    if rc == -2:
        raise MemoryError(f"{name}: out of memory for its row buffers")
    if rc != 0:
        raise RuntimeError(f"{name} refused a shape it was built for (code {rc})")


def _output(shape: tuple[int, int, int, int], workspace, like: torch.Tensor) -> torch.Tensor:
    """A float32 NHWC output: from the prepared model's workspace (modules.Workspace), if any."""
    if workspace is not None:
        return workspace.take(shape, like, memory_format=torch.channels_last)
    return torch.empty(shape, dtype=torch.float32, memory_format=torch.channels_last)


def _nhwc_contiguous(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last)


class StreamedTail(nn.Module):
    """``pixel_shuffle(exit'(relu(up(x))), 2)``: ``up`` a 3x3 conv 64 -> 256 (groups 1 or 4) in pixel-shuffle
    channel order, ``exit'`` the 3x3 sub-pixel exit conv 256 -> 12 (``modules.SubPixelExit.sub``)."""

    def __init__(self, up_w: torch.Tensor, up_b: torch.Tensor, groups: int, exit_w: torch.Tensor,
                 exit_b: torch.Tensor) -> None:
        super().__init__()
        k = 64 // groups
        # up's output channel c * 4 + q (q = pixel-shuffle phase) goes to phase-major place q * 64 + c. The
        # kernel computes 4 chunks of 64 outputs: chunk = group (G = 4; within it [phase][16 channels]) or
        # chunk = phase (G = 1; within it the 64 channels).
        w = up_w.detach().float().reshape(64, 4, k, 3, 3)  # [c][q][K][3][3]
        if groups == 4:
            chunks = w.reshape(4, 16, 4, k, 3, 3).permute(0, 2, 1, 3, 4, 5).reshape(4, 64, k, 3, 3)
        else:
            chunks = w.permute(1, 0, 2, 3, 4)  # [q][c][64][3][3]
        self.register_buffer("wa", chunks.permute(0, 3, 4, 2, 1).reshape(-1).contiguous())  # [chunk][ky][kx][K][64]
        self.register_buffer("ua", torch.cat([winograd_weights(c, 1) for c in chunks]))
        self.winograd = True
        self.register_buffer("ba", up_b.detach().float().reshape(64, 4).t().reshape(-1).contiguous())
        # exit': [12][256 (c * 4 + q)][3][3] -> [ky][kx][q][c][16 outputs], outputs 12..15 zero
        e = exit_w.detach().float().reshape(12, 64, 4, 3, 3).permute(3, 4, 2, 1, 0)
        we = torch.zeros(3, 3, 4, 64, 16)
        we[..., :12] = e
        self.register_buffer("we", we.reshape(-1).contiguous())
        self.register_buffer("be", torch.cat([exit_b.detach().float(), torch.zeros(4)]).contiguous())
        self.register_buffer("mask", (we.reshape(9, 4, -1) != 0).any(-1).to(torch.uint8).reshape(-1).contiguous())
        self.groups = groups
        self.workspace = None  # set by rewrite.prepare_fast

    @classmethod
    def from_convs(cls, up: nn.Module, exit_sub: nn.Module) -> "StreamedTail | None":
        """The kernel for ``up`` and ``exit_sub`` (each an nn.Conv2d or a modules.FusedConv: weight, bias,
        groups, padding, stride, dilation), or None when their shapes do not fit."""
        w, g = up.weight, up.groups
        if g not in (1, 4) or tuple(w.shape) != (256, 64 // g, 3, 3) or not _plain_3x3(up) \
                or tuple(exit_sub.weight.shape) != (12, 256, 3, 3) or exit_sub.groups != 1 or not _plain_3x3(exit_sub):
            return None
        return cls(w, up.bias, g, exit_sub.weight, exit_sub.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The 3-channel output at twice ``x``'s size (channels_last), or None when the kernel cannot run."""
        lib = _runnable(x, self.wa)
        xs = _pixel_stride(x)
        if lib is None or xs is None or x.shape[1] != 64:
            return None
        n, _, h, w = x.shape
        y = _output((n, 3, 2 * h, 2 * w), self.workspace, x)
        for i in range(n):
            _check(lib.srkit_subpixel_tail(x[i].data_ptr(), xs, h, w, self.groups, self.wa.data_ptr(),
                                           self.ua.data_ptr() if self.winograd else None,
                                           self.ba.data_ptr(), self.we.data_ptr(), self.be.data_ptr(),
                                           self.mask.data_ptr(), y[i].data_ptr(), y.stride(2), y.stride(3),
                                           y.stride(1), torch.get_num_threads()), "srkit_subpixel_tail")
        return y


class StreamedShuffleExit(nn.Module):
    """``exit(pixel_shuffle(x, r))`` for ``x`` in the fast path's shuffle channel order
    (``modules.shuffle_order``, ``groups`` 1 or 4) and ``exit`` a 3x3 conv 64 -> 3, computed from
    ``x`` itself: the shuffled 64-channel map (r^2 times the pixels) is never made. r is 2 or 3."""

    def __init__(self, exit_w: torch.Tensor, exit_b: torch.Tensor, r: int, groups: int) -> None:
        super().__init__()
        e = exit_w.detach().float()
        # the block of low-resolution tap (ky, kx) and phase (i, j) feeds output lane o * r^2 + a * r + b
        we = torch.zeros(3, 3, r, r, 64, 32)
        for a in range(r):
            for b in range(r):
                for dy in range(3):
                    for dx in range(3):
                        ky, i = divmod(a + dy - 1, r)
                        kx, j = divmod(b + dx - 1, r)
                        we[ky + 1, kx + 1, i, j, :, torch.arange(3) * r * r + a * r + b] += e[:, :, dy, dx].t()
        we = we.reshape(9 * r * r, 64, 32)
        self.register_buffer("we", we.reshape(-1).contiguous())
        self.register_buffer("be", exit_b.detach().float().contiguous())
        self.register_buffer("mask", (we != 0).flatten(1).any(1).to(torch.uint8).contiguous())
        self.r, self.groups = r, groups
        self.workspace = None  # set by rewrite.prepare_fast

    @classmethod
    def from_conv(cls, exit_conv: nn.Module, r: int, groups: int) -> "StreamedShuffleExit | None":
        """The kernel for ``exit_conv`` (an nn.Conv2d or a modules.FusedConv without ReLU) after a
        shuffle by ``r``, or None when the shapes do not fit."""
        if r not in (2, 3) or groups not in (1, 4) or tuple(exit_conv.weight.shape) != (3, 64, 3, 3) \
                or exit_conv.groups != 1 or not _plain_3x3(exit_conv) or getattr(exit_conv, "relu", False):
            return None
        return cls(exit_conv.weight, exit_conv.bias, r, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The 3-channel output at r times ``x``'s size (channels_last), or None when the kernel cannot run."""
        lib = _runnable(x, self.we)
        xs = _pixel_stride(x)
        r = self.r
        if lib is None or xs is None or x.shape[1] != 64 * r * r:
            return None
        n, _, h, w = x.shape
        y = _output((n, 3, r * h, r * w), self.workspace, x)
        for i in range(n):
            _check(lib.srkit_shuffle_exit(x[i].data_ptr(), xs, h, w, self.groups, r, self.we.data_ptr(),
                                          self.be.data_ptr(), self.mask.data_ptr(), y[i].data_ptr(), y.stride(2),
                                          y.stride(3), y.stride(1), torch.get_num_threads()), "srkit_shuffle_exit")
        return y


class StreamedShuffleResize(nn.Module):
    """``bicubic_resize(pixel_shuffle(x, r), out_hw, factor)`` (srkit.core.resize) for ``x`` in the fast path's
    shuffle channel order (``modules.shuffle_order``, ``groups`` 1 or 4, 64 channels after the
    shuffle), in one pass: the shuffled map (r^2 times the pixels) is never made. With an exit conv (3x3,
    64 -> 3, :meth:`with_exit`), ``exit(bicubic_resize(...))`` in the same pass: nor is the resized map.
    ``x`` is float32 or bf16 (a bf16 model's upsampling conv writes bf16 for it); the sums are float32."""

    reads_bf16 = True  # modules._float_for: no float32 copy of a bf16 input

    def __init__(self, r: int, groups: int) -> None:
        super().__init__()
        self.r, self.groups = r, groups
        self.register_buffer("we", None)
        self.register_buffer("be", None)
        self.workspace = None  # set by rewrite.prepare_fast

    def with_exit(self, exit_conv: nn.Module) -> bool:
        """Take ``exit_conv`` (an nn.Conv2d or a modules.FusedConv without ReLU) into the pass; False when its
        shape does not fit (a 3x3 conv 64 -> 3 with a bias)."""
        if tuple(exit_conv.weight.shape) != (3, 64, 3, 3) or exit_conv.groups != 1 or not _plain_3x3(exit_conv) \
                or getattr(exit_conv, "relu", False):
            return False
        we = torch.zeros(64, 32)  # lane o * 9 + dy * 3 + dx: what a resized pixel gives output o at offset (dy, dx)
        we[:, :27] = exit_conv.weight.detach().float().permute(1, 0, 2, 3).reshape(64, 27)
        self.register_buffer("we", we.contiguous())
        self.register_buffer("be", exit_conv.bias.detach().float().contiguous())
        return True

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int], factor: float) -> torch.Tensor | None:
        """The resized 64-channel map, or with an exit conv its 3-channel output (float32, channels_last), or
        None when the kernel cannot run."""
        lib = _runnable(*([] if self.we is None else [self.we]))
        xs = _pixel_stride(x)
        r = self.r
        if lib is None or xs is None or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16) \
                or x.shape[1] != 64 * r * r or not 2 <= r <= 8 or self.groups not in (1, 4):
            return None
        n, _, h, w = x.shape
        (iy, wy), (ix, wx) = (bicubic_taps(o, i * r, factor) for o, i in zip(out_hw, (h, w)))
        iy, ix = iy.to(torch.int32).contiguous(), ix.to(torch.int32).contiguous()
        wy, wx = wy.float().contiguous(), wx.float().contiguous()
        y = _output((n, 64 if self.we is None else 3, *out_hw), self.workspace, wy)
        we, be = (None, None) if self.we is None else (self.we.data_ptr(), self.be.data_ptr())
        for i in range(n):
            _check(lib.srkit_shuffle_resize(x[i].data_ptr(), xs, x.dtype == torch.bfloat16, h, w, self.groups, r,
                                            out_hw[0], out_hw[1], iy.data_ptr(), wy.data_ptr(), ix.data_ptr(),
                                            wx.data_ptr(), we, be, y[i].data_ptr(), y.stride(2), y.stride(3),
                                            y.stride(1), torch.get_num_threads()), "srkit_shuffle_resize")
        return y


def _plain_3x3(conv: nn.Module) -> bool:
    """3x3, stride 1, zero padding 1, with a bias (an nn.Conv2d or a modules.FusedConv)."""
    return tuple(conv.weight.shape[2:]) == (3, 3) and tuple(conv.padding) == (1, 1) \
        and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.bias is not None \
        and getattr(conv, "padding_mode", "zeros") == "zeros"


class StreamedConv3x3(nn.Module):
    """A 3x3 conv from 64 channels (+ bias, optional ReLU), streamed by rows: dense to 64 n outputs as Winograd
    F(4,3), or in 4 groups of 16 channels to 16 m outputs each (direct): the upsampling convs the x2 tail does
    not cover (x3, the first x2 stage at x4)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, relu: bool, groups: int = 1) -> None:
        super().__init__()
        self.out_channels, self.relu, self.groups = weight.shape[0], relu, groups
        if groups == 1:
            self.register_buffer("u", torch.cat([winograd_weights(c, 1) for c in weight.split(64)]))
        else:  # [group][64-output chunks, then 16-output chunks][ky][kx][16 in][chunk out]
            per = weight.shape[0] // 4
            parts = []
            for g in range(4):
                wg = weight[g * per:(g + 1) * per].detach().float()
                chunks = list(wg[:per // 64 * 64].split(64)) + list(wg[per // 64 * 64:].split(16))
                parts += [c.permute(2, 3, 1, 0).reshape(-1) for c in chunks if c.shape[0]]
            self.register_buffer("u", torch.cat(parts).contiguous())
        self.register_buffer("b", bias.detach().float().contiguous())
        self.workspace = None  # set by rewrite.prepare_fast

    @classmethod
    def from_conv(cls, conv: nn.Module, relu: bool) -> "StreamedConv3x3 | None":
        o, c = conv.weight.shape[:2]
        if not _plain_3x3(conv):
            return None
        if conv.groups == 1 and c == 64 and o % 64 == 0:
            return cls(conv.weight, conv.bias, relu)
        if conv.groups == 4 and c == 16 and o % 64 == 0 and (o // 4) % 16 == 0:
            return cls(conv.weight, conv.bias, relu, groups=4)
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The conv's output (channels_last), or None when the kernel cannot run here."""
        lib = _runnable(x, self.u)
        xs = _pixel_stride(x)
        if lib is None or xs is None or x.shape[1] != 64:
            return None
        n, _, h, w = x.shape
        y = _output((n, self.out_channels, h, w), self.workspace, x)
        for i in range(n):
            if self.groups == 1:
                rc = lib.srkit_conv3x3(x[i].data_ptr(), xs, h, w, self.out_channels // 64, self.u.data_ptr(),
                                       self.b.data_ptr(), int(self.relu), y[i].data_ptr(), y.stride(3),
                                       torch.get_num_threads())
            else:
                rc = lib.srkit_gconv3x3(x[i].data_ptr(), xs, h, w, self.out_channels // 4, self.u.data_ptr(),
                                        self.b.data_ptr(), int(self.relu), y[i].data_ptr(), y.stride(3),
                                        torch.get_num_threads())
            _check(rc, "srkit_conv3x3")
        return y


def pack_fuse(weight: torch.Tensor) -> torch.Tensor | None:
    """A cascade fusion's 1x1 weight [64, 64 n, 1, 1] as the kernel reads it ([n][64 in][64 out], flat), or
    None when it does not fit (not 64 outputs, inputs not whole 64-channel blocks, more than 4 blocks)."""
    o, c = weight.shape[:2]
    if o != 64 or c % 64 or not 1 <= c // 64 <= 4 or weight.shape[2:] != (1, 1):
        return None
    return weight.detach().float().reshape(64, c // 64, 64).permute(1, 2, 0).reshape(-1).contiguous()


def fuse1x1(rows: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor, out: torch.Tensor | None = None,
            first: torch.Tensor | None = None) -> torch.Tensor | None:
    """``relu(rows @ W^T + bias)`` for ``rows`` a [pixels, 64 n] view of the cascade buffer's first n blocks
    (row stride = the buffer's channels), into ``out`` (a contiguous float32 [pixels, 64]) or a new tensor.
    ``first`` (an NHWC [N, 64, H, W] tensor of the same pixels) stands for the buffer's block 0, which is then
    never read. None when the kernel cannot run here."""
    lib = _runnable(rows, packed, bias, *([first] if first is not None else []))
    npix, c = rows.shape
    fs = _pixel_stride(first) if first is not None else 0
    if lib is None or rows.stride(1) != 1 or packed.numel() != c * 64 or fs is None \
            or (first is not None and (first.shape[1] != 64 or first.numel() != npix * 64
                                       or (first.shape[0] > 1 and first.stride(0) != first[0, 0].numel() * fs))):
        return None
    ok = out is not None and out.shape == (npix, 64) and out.dtype == torch.float32 and out.is_contiguous()
    y = out if ok else torch.empty(npix, 64, dtype=torch.float32)
    _check(lib.srkit_fuse1x1(rows.data_ptr(), rows.stride(0), first.data_ptr() if first is not None else None, fs,
                             c // 64, npix, packed.data_ptr(), bias.data_ptr(), y.data_ptr(), 64,
                             torch.get_num_threads()), "srkit_fuse1x1")
    return y


class StreamedWideBody(nn.Module):
    """``conv3(conv1b(relu(conv1a(x))))``: a 1x1 from 64 channels to 64 n (n <= 64), ReLU, a 1x1 to at most 64
    channels, a 3x3 (padding 1) to 64, all with biases; the output goes to a caller's NHWC destination or a new
    tensor (from the prepared model's workspace, when it has one)."""

    def __init__(self, a: nn.Module, b: nn.Module, c: nn.Module) -> None:
        super().__init__()
        c1, c2 = a.weight.shape[0] // 64, b.weight.shape[0]
        w1 = a.weight.detach().float().reshape(c1, 64, 64).permute(0, 2, 1)           # [chunk][in][out]
        w2 = torch.zeros(64 * c1, 64)
        w2[:, :c2] = b.weight.detach().float().reshape(c2, 64 * c1).t()                 # [in][out, padded]
        b2 = torch.zeros(64)
        b2[:c2] = b.bias.detach().float()
        w3 = torch.zeros(64, 64, 3, 3)
        w3[:, :c2] = c.weight.detach().float()                                          # inputs padded to 64
        self.c1 = c1
        self.register_buffer("w1", w1.reshape(-1).contiguous())
        self.register_buffer("b1", a.bias.detach().float().contiguous())
        self.register_buffer("w2", w2.reshape(-1).contiguous())
        self.register_buffer("b2", b2)
        self.register_buffer("w3", w3.permute(2, 3, 1, 0).reshape(-1).contiguous())   # [ky][kx][in][out]
        self.register_buffer("u3", winograd_weights(w3, 1))
        self.register_buffer("b3", c.bias.detach().float().contiguous())
        self.winograd = True
        self.workspace = None  # set by rewrite.prepare_fast

    @classmethod
    def from_body(cls, body: list[nn.Module]) -> "StreamedWideBody | None":
        """The kernel for ``body`` ([1x1, ReLU, 1x1, 3x3], modules with weight, bias, groups, padding, stride,
        dilation: nn.Conv2d or modules.FusedConv), or None when it does not fit."""
        if len(body) != 4 or not isinstance(body[1], nn.ReLU):
            return None
        a, b, c = body[0], body[2], body[3]
        for conv, k in ((a, 1), (b, 1), (c, 3)):
            if not hasattr(conv, "weight") or conv.weight.dim() != 4 or tuple(conv.weight.shape[2:]) != (k, k) \
                    or getattr(conv, "bias", None) is None or conv.groups != 1 or tuple(conv.stride) != (1, 1) \
                    or tuple(conv.dilation) != (1, 1) or tuple(conv.padding) != ((k - 1) // 2,) * 2 \
                    or getattr(conv, "padding_mode", "zeros") != "zeros":
                return None
        o1, i1 = a.weight.shape[:2]
        o2, i2 = b.weight.shape[:2]
        o3, i3 = c.weight.shape[:2]
        if i1 != 64 or o1 % 64 or not 1 <= o1 // 64 <= 64 or i2 != o1 or o2 > 64 or i3 != o2 or o3 != 64:
            return None
        return cls(a, b, c)

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor | None:
        """The body of ``x`` (channels_last), written into ``out`` if given; None when the kernel cannot run."""
        lib = _runnable(x, self.w1)
        xs = _pixel_stride(x)
        if lib is None or xs is None or x.shape[1] != 64:
            return None
        n, _, h, w = x.shape
        if out is None:
            out = _output((n, 64, h, w), self.workspace, x)
        ys = _pixel_stride(out)
        if ys is None or out.shape != x.shape or _overlap(x, out):
            return None
        for i in range(n):
            _check(lib.srkit_wide_body(x[i].data_ptr(), xs, out[i].data_ptr(), ys, h, w, self.c1,
                                       self.w1.data_ptr(), self.b1.data_ptr(), self.w2.data_ptr(), self.b2.data_ptr(),
                                       self.w3.data_ptr(), self.u3.data_ptr() if self.winograd else None,
                                       self.b3.data_ptr(), torch.get_num_threads()), "srkit_wide_body")
        return out
