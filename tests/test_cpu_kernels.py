"""srkit.inference.fast.cpu_fp32: the streamed residual block, x2 tail, shuffles and cascade fusion against float64 references, at
odd sizes, thread counts, batch sizes and strided destinations, for both builds (AVX-512 and AVX2, forced);
and where they must decline to run, in Python and in C."""
from __future__ import annotations

import platform
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from carn.blocks import EResidualBlock, ResidualBlock
from srkit.inference.fast import cpu_fp32
from srkit.inference.fast.cpu_fp32 import (StreamedConv3x3, StreamedResidual, StreamedShuffleExit,
                                          StreamedShuffleResize, StreamedTail, StreamedWideBody, fuse1x1, pack_fuse)
from srkit.core.resize import bicubic_resize, bicubic_taps
from srkit.inference.fast import SubPixelExit
from srkit.core.tolerances import FAST_PATH_ATOL

SIZES = [(1, 1), (1, 7), (6, 1), (5, 3), (37, 53), (29, 113)]  # widths below / across the kernels' blocks

needs_kernels = pytest.mark.skipif(not cpu_fp32.available(),
                                   reason=f"srkit.inference.fast.cpu_fp32 does not run here: {cpu_fp32.unavailable_reason()}")


@pytest.fixture(params=["avx512", "avx2"], autouse=True)
def variant(request, monkeypatch):
    """Every test of this file runs with each build the CPU can run (the AVX2 one forced on an AVX-512 CPU)."""
    monkeypatch.setenv("SRKIT_CPU_KERNELS", request.param)
    monkeypatch.setattr(cpu_fp32, "_LIB", None)
    if request.param == "avx512" and not cpu_fp32.available() and "no AVX512" in cpu_fp32.unavailable_reason():
        pytest.skip(cpu_fp32.unavailable_reason())
    yield request.param
    monkeypatch.setattr(cpu_fp32, "_LIB", None)


def test_the_kernels_are_built_where_they_can_run(variant):
    """pip install -e . builds the kernels (an optional extension: a failed build would only be slower)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64" or not shutil.which("cc") \
            or torch.backends.cpu.get_cpu_capability() not in cpu_fp32.VARIANTS[variant][1]:
        pytest.skip(f"the {variant} build is made on Linux x86-64 with a C compiler and runs on its CPUs")
    assert cpu_fp32.available() and cpu_fp32.variant() == variant, cpu_fp32.unavailable_reason()


def _block(kind: str) -> nn.Module:
    torch.manual_seed(0)
    blk = EResidualBlock(64, 4) if kind == "residual-E" else ResidualBlock(64)
    for p in blk.parameters():  # outputs of order 1, as in a trained net
        nn.init.normal_(p, 0, 0.04)
    return blk.eval()


def _nhwc(*shape: int) -> torch.Tensor:
    return torch.randn(*shape).contiguous(memory_format=torch.channels_last)


@needs_kernels
@pytest.mark.parametrize("winograd", [True, False], ids=["winograd", "direct"])
@pytest.mark.parametrize("kind", ["residual", "residual-E"])
def test_streamed_residual_block_equals_the_block(kind, winograd):
    blk = _block(kind)
    streamed = StreamedResidual.from_body(list(blk.body))
    streamed.winograd = winograd
    for h, w in SIZES:
        x = _nhwc(1, 64, h, w)
        buf = torch.full((1, h, w, 192), 7.0)  # written into the middle slice of a wider NHWC buffer
        out = buf[..., 64:128].permute(0, 3, 1, 2)
        with torch.inference_mode():
            assert streamed(x, out)
            want = blk.double()(x.double()).float()
            blk.float()
        err = (out - want).abs().max().item()
        assert err <= FAST_PATH_ATOL, (h, w, err)
        assert (buf[..., :64] == 7).all() and (buf[..., 128:] == 7).all()  # nothing else touched


@needs_kernels
@pytest.mark.parametrize("threads", [1, 3])
def test_streamed_residual_block_any_thread_count_and_batch(threads):
    blk = _block("residual-E")
    streamed = StreamedResidual.from_body(list(blk.body))
    x = _nhwc(2, 64, 11, 30)
    out = torch.empty_like(x)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            assert streamed(x, out)
            want = blk(x)
    finally:
        torch.set_num_threads(saved)
    assert (out - want).abs().max().item() <= FAST_PATH_ATOL


@needs_kernels
def test_streamed_residual_declines_what_it_cannot_do():
    blk = _block("residual")
    streamed = StreamedResidual.from_body(list(blk.body))
    x = _nhwc(1, 64, 4, 5)
    out = torch.zeros_like(x)
    assert not streamed(x, out)                                   # gradients on: autograd needs the ops
    with torch.inference_mode():
        assert not streamed(x.double(), out.double())             # float32 only
        assert not streamed(x, x)                                 # in place: rows are read after written
        assert not streamed(torch.randn(1, 64, 4, 5), out)        # NCHW: channels not contiguous
    assert (out == 0).all()
    # bodies it was not written for
    assert StreamedResidual.from_body(list(EResidualBlock(64, 2).body)) is None   # groups 2
    assert StreamedResidual.from_body(list(ResidualBlock(32).body)) is None       # 32 channels
    assert StreamedResidual.from_body([nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU()]) is None  # ReLU inside the sum


def _tail_reference(up: nn.Conv2d, sub: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    d = x.double()
    y = torch.relu(F.conv2d(d, up.weight.double(), up.bias.double(), padding=1, groups=up.groups))
    return F.pixel_shuffle(F.conv2d(y, sub.weight.double(), sub.bias.double(), padding=1), 2).float()


@needs_kernels
@pytest.mark.parametrize("winograd", [True, False], ids=["winograd", "direct"])
@pytest.mark.parametrize("groups", [1, 4])
def test_streamed_tail_equals_upsample_conv_then_sub_pixel_exit(groups, winograd):
    torch.manual_seed(1)
    up = nn.Conv2d(64, 256, 3, 1, 1, groups=groups)
    exit_conv = nn.Conv2d(64, 3, 3, 1, 1)
    sub = SubPixelExit(exit_conv).sub
    tail = StreamedTail.from_convs(up, sub)
    tail.winograd = winograd
    for h, w in SIZES:
        x = _nhwc(1, 64, h, w).relu()
        with torch.inference_mode():
            got = tail(x)
        assert got.shape == (1, 3, 2 * h, 2 * w) and got.is_contiguous(memory_format=torch.channels_last)
        err = (got - _tail_reference(up, sub, x)).abs().max().item()
        assert err <= FAST_PATH_ATOL, (h, w, err)
    assert StreamedTail.from_convs(nn.Conv2d(64, 256, 1), sub) is None  # a 1x1 upsampling conv
    assert tail(x) is None  # gradients on


@needs_kernels
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("r", [3, 2])
def test_streamed_shuffle_exit_equals_the_exit_conv_of_the_shuffled_map(r, groups):
    """The exit conv read from the unshuffled conv output (channels in the fast path's shuffle order) equals
    exit(pixel_shuffle(y)) at every size, borders included, in a batch of two."""
    from srkit.inference.fast import shuffle_order
    torch.manual_seed(4)
    exit_conv = nn.Conv2d(64, 3, 3, 1, 1)
    streamed = StreamedShuffleExit.from_conv(exit_conv, r, groups)
    order = shuffle_order(64, r, groups)
    for h, w in SIZES:
        y = _nhwc(2, 64 * r * r, h, w)  # the conv's output in pixel-shuffle channel order
        emitted = y[:, order].contiguous(memory_format=torch.channels_last)  # as the reordered conv emits it
        with torch.inference_mode():
            got = streamed(emitted)
        want = F.conv2d(F.pixel_shuffle(y.double(), r), exit_conv.weight.double(), exit_conv.bias.double(), padding=1)
        assert got.shape == (2, 3, r * h, r * w) and got.is_contiguous(memory_format=torch.channels_last)
        assert (got - want.float()).abs().max().item() <= FAST_PATH_ATOL, (h, w)
    assert StreamedShuffleExit.from_conv(nn.Conv2d(64, 3, 1), r, groups) is None  # not a 3x3 exit
    assert StreamedShuffleExit.from_conv(exit_conv, 4, groups) is None            # a shuffle it does not serve
    assert streamed(emitted[:, :64]) is None                                        # not 64 r^2 channels


@needs_kernels
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("r", [2, 3, 4, 5])
def test_streamed_shuffle_resize_equals_the_resize_of_the_shuffled_map(r, groups):
    """A pixel shuffle and the bicubic resize after it in one pass (OverNet's overscaled map brought to the
    asked scale) equals bicubic_resize(pixel_shuffle(y)) in float64, at every size (edge taps included), at
    down-factors from just under 1 to 0.5, in a batch of two, written into a strided destination's rows."""
    from srkit.inference.fast import shuffle_order
    torch.manual_seed(5)
    order = shuffle_order(64, r, groups)
    streamed = StreamedShuffleResize(r, groups)
    for h, w in SIZES[:5]:
        y = _nhwc(2, 64 * r * r, h, w)
        emitted = y[:, order].contiguous(memory_format=torch.channels_last)
        for scale in (r - 0.25, r * 0.8, r / 2 + 0.1):
            out_hw = (max(1, int(h * scale)), max(1, int(w * scale)))
            with torch.inference_mode():
                got = streamed(emitted, out_hw, scale / r)
            want = bicubic_resize(F.pixel_shuffle(y.double(), r), out_hw, scale / r)
            assert got.shape == (2, 64, *out_hw) and got.is_contiguous(memory_format=torch.channels_last)
            assert (got - want).abs().max().item() <= FAST_PATH_ATOL, (h, w, scale)
    assert streamed(emitted[:, :64], out_hw, 0.5) is None      # not 64 r^2 channels
    assert StreamedShuffleResize(r, 2)(emitted, out_hw, 0.5) is None  # groups it does not serve
    emitted.requires_grad_(True)
    assert streamed(emitted, out_hw, 0.5) is None               # gradients on


@needs_kernels
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("r", [3, 4, 5])
def test_streamed_shuffle_resize_with_the_exit_conv_equals_the_conv_of_the_resized_map(r, groups):
    """The exit conv taken into the pass (an overscaling model's shuffle, resize and 3x3 exit as one: neither
    map is made) equals exit(bicubic_resize(pixel_shuffle(y))) in float64, edge rows and columns (the conv's
    zero padding) included, at every size, from a float32 input and from its bf16 rounding (a bf16 model's
    upsampling conv writes bf16 for it), in a batch of two."""
    from srkit.inference.fast import shuffle_order
    torch.manual_seed(6)
    order = shuffle_order(64, r, groups)
    exit_conv = nn.Conv2d(64, 3, 3, 1, 1)
    streamed = StreamedShuffleResize(r, groups)
    assert streamed.with_exit(exit_conv)
    for h, w in SIZES[:5]:
        y = _nhwc(2, 64 * r * r, h, w)
        for dtype in (torch.float32, torch.bfloat16):
            yd = y.to(dtype)
            emitted = yd[:, order].contiguous(memory_format=torch.channels_last)
            for scale in (r - 1, r * 0.6):
                out_hw = (max(1, int(h * scale)), max(1, int(w * scale)))
                with torch.inference_mode():
                    got = streamed(emitted, out_hw, scale / r)
                resized = bicubic_resize(F.pixel_shuffle(yd.double(), r), out_hw, scale / r)
                want = F.conv2d(resized, exit_conv.weight.double(), exit_conv.bias.double(), padding=1)
                assert got.shape == (2, 3, *out_hw) and got.dtype == torch.float32
                assert got.is_contiguous(memory_format=torch.channels_last)
                assert (got - want).abs().max().item() <= FAST_PATH_ATOL, (h, w, scale, dtype)
    assert not StreamedShuffleResize(r, groups).with_exit(nn.Conv2d(64, 3, 1))       # not a 3x3 exit
    assert not StreamedShuffleResize(r, groups).with_exit(nn.Conv2d(64, 12, 3, 1, 1))  # not 3 outputs


@needs_kernels
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("groups,out", [(1, 192), (4, 576), (4, 256), (4, 64)])
def test_streamed_conv3x3_equals_the_conv(relu, groups, out):
    torch.manual_seed(3)
    conv = nn.Conv2d(64, out, 3, 1, 1, groups=groups)
    streamed = StreamedConv3x3.from_conv(conv, relu)
    for h, w in SIZES:
        x = _nhwc(2, 64, h, w)
        with torch.inference_mode():
            got = streamed(x)
        want = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1, groups=groups)
        want = (torch.relu(want) if relu else want).float()
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert (got - want).abs().max().item() <= FAST_PATH_ATOL, (h, w)
    assert StreamedConv3x3.from_conv(nn.Conv2d(64, 96, 3, 1, 1), True) is None            # not 64 n outputs
    assert StreamedConv3x3.from_conv(nn.Conv2d(64, 64, 3, 1, 1, groups=2), True) is None  # 2 groups
    assert StreamedConv3x3.from_conv(nn.Conv2d(32, 64, 3, 1, 1), True) is None            # not 64 inputs


@needs_kernels
@pytest.mark.parametrize("separate_first", [False, True], ids=["buffer", "first block apart"])
@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
def test_fuse1x1_equals_the_fusion_conv(blocks, separate_first):
    """Block 0 from the buffer, or from the cascade's input where it lies (then the buffer's block 0 is never
    read: it holds garbage here)."""
    torch.manual_seed(2)
    conv = nn.Conv2d(64 * blocks, 64, 1)
    buf = torch.randn(13 * 7, 256)  # 91 pixels: not a whole number of the kernel's 6-pixel blocks
    rows = buf[:, :64 * blocks]
    want = torch.relu(rows.double() @ conv.weight.double().view(64, -1).t() + conv.bias.double()).float()
    first = None
    if separate_first:
        first = torch.randn(1, 13, 7, 96)[..., 16:80].permute(0, 3, 1, 2)  # NHWC, pixel stride 96
        want = torch.relu(torch.cat([first.permute(0, 2, 3, 1).reshape(91, 64), rows[:, 64:]], 1).double()
                          @ conv.weight.double().view(64, -1).t() + conv.bias.double()).float()
        buf[:, :64] = float("nan")
    with torch.inference_mode():
        got = fuse1x1(rows, pack_fuse(conv.weight), conv.bias.detach(), first=first)
    assert (got - want).abs().max().item() <= FAST_PATH_ATOL
    assert pack_fuse(nn.Conv2d(96, 64, 1).weight) is None and pack_fuse(nn.Conv2d(128, 32, 1).weight) is None


def test_a_library_from_other_source_is_not_called(monkeypatch, tmp_path):
    """A stale build (its functions' arguments may differ) or a file that is no library: one clear reason,
    and the oneDNN path."""
    junk = tmp_path / "_fp32_avx512.so"
    junk.write_bytes(b"not a shared library")
    with pytest.raises(OSError):
        cpu_fp32._load(junk, 1)
    built = sorted(Path(cpu_fp32.__file__).parent.glob("_fp32_avx512.*.so"))
    if built:
        with pytest.raises(OSError, match="pip install -e . again"):
            cpu_fp32._load(built[0], 2)  # the AVX-512 build where the AVX2 one is asked for
        monkeypatch.setattr(cpu_fp32, "_ABI", cpu_fp32._ABI + 1)
        with pytest.raises(OSError, match="pip install -e . again"):
            cpu_fp32._load(built[0], 1)


def test_turned_off_by_the_environment(monkeypatch):
    for name, value in (("SRKIT_NO_CPU_KERNELS", "1"), ("SRKIT_CPU_KERNELS", "off")):
        monkeypatch.setattr(cpu_fp32, "_LIB", None)
        monkeypatch.setenv(name, value)
        assert not cpu_fp32.available() and cpu_fp32.variant() == ""
        assert "turned off" in cpu_fp32.unavailable_reason()
        monkeypatch.delenv(name)


@needs_kernels
def test_the_c_side_refuses_strides_and_sizes_it_does_not_serve():
    """The kernels check in C what they rely on (a pixel stride of at least the channels, the output layout,
    non-empty sizes), as well as the Python side: a call past those returns -1, nothing written."""
    import ctypes
    lib = cpu_fp32._library()
    x = torch.zeros(4, 4, 64)
    y = torch.full((4, 4, 64), 7.0)
    w = [torch.zeros(64 * 64 * 9) for _ in range(2)]
    b = [torch.zeros(64) for _ in range(2)]
    pp = (ctypes.c_void_p * 2)
    args = lambda xs, ys, h: (x.data_ptr(), xs, y.data_ptr(), ys, h, 4, 1, 2, pp(*[t.data_ptr() for t in w]),  # noqa: E731
                              None, pp(*[t.data_ptr() for t in b]), None, None, 1)
    assert lib.srkit_resblock(*args(32, 64, 4)) == -1   # a pixel stride shorter than the 64 channels read
    assert lib.srkit_resblock(*args(64, 16, 4)) == -1   # ... or written
    assert lib.srkit_resblock(*args(64, 64, 0)) == -1   # no rows
    assert bool((y == 7).all())
    assert lib.srkit_resblock(*args(64, 64, 4)) == 0 and not bool((y == 7).any())
    out = torch.zeros(1, 2, 2, 64)
    assert lib.srkit_fuse1x1(x.data_ptr(), 64, None, 0, 2, 16, w[0].data_ptr(), b[0].data_ptr(), out.data_ptr(), 64,
                             1) == -1
    assert lib.srkit_conv3x3(x.data_ptr(), 64, 4, 4, 2, w[0].data_ptr(), b[0].data_ptr(), 0, out.data_ptr(), 64, 1) == -1
    big = torch.full((1, 3, 12, 12), 7.0)
    shuffle_exit = lambda xs, r, sy: lib.srkit_shuffle_exit(x.data_ptr(), xs, 4, 4, 1, r, w[0].data_ptr(),  # noqa: E731
                                                            b[0].data_ptr(), w[1].data_ptr(), big.data_ptr(), sy, 3,
                                                            1, 1)
    assert shuffle_exit(64, 3, 36) == -1    # a pixel stride shorter than the 576 channels read
    assert shuffle_exit(576, 4, 36) == -1   # a shuffle factor it does not serve
    assert shuffle_exit(576, 3, 30) == -1   # output rows shorter than 3 x 4 pixels
    assert bool((big == 7).all())
    (iy, wy), (ix, wx) = bicubic_taps(6, 8, 0.75), bicubic_taps(6, 8, 0.75)
    iy, ix, wy, wx = iy.int(), ix.int(), wy.float(), wx.float()
    far = ix.clone()
    far[-1, -1] = 8  # one column past the 2 x 4 shuffled pixels
    resized = torch.full((6, 6, 64), 7.0)
    wide = torch.zeros(4, 4, 256)
    shuffle_resize = lambda xs, r, cols: lib.srkit_shuffle_resize(  # noqa: E731
        wide.data_ptr(), xs, 0, 4, 4, 1, r, 6, 6, iy.data_ptr(), wy.data_ptr(), cols.data_ptr(), wx.data_ptr(),
        None, None, resized.data_ptr(), 6 * 64, 64, 1, 1)
    assert shuffle_resize(64, 2, ix) == -1     # a pixel stride shorter than the 256 channels read
    assert shuffle_resize(256, 2, far) == -1   # a tap outside the shuffled map
    assert shuffle_resize(256, 1, ix) == -1    # a shuffle factor it does not serve
    assert bool((resized == 7).all())
    assert shuffle_resize(256, 2, ix) == 0 and not bool((resized == 7).any())
    we, be, out3 = torch.zeros(64, 32), torch.zeros(3), torch.full((6, 6, 3), 7.0)
    with_exit = lambda bias, sx: lib.srkit_shuffle_resize(  # noqa: E731
        wide.data_ptr(), 256, 0, 4, 4, 1, 2, 6, 6, iy.data_ptr(), wy.data_ptr(), ix.data_ptr(), wx.data_ptr(),
        we.data_ptr(), bias, out3.data_ptr(), 6 * sx, sx, 1, 1)
    assert with_exit(None, 3) == -1           # exit weights without their bias
    assert with_exit(be.data_ptr(), 2) == -1  # output pixels narrower than the exit's 3 channels
    assert bool((out3 == 7).all())
    assert with_exit(be.data_ptr(), 3) == 0 and bool((out3 == 0).all())


@needs_kernels
def test_outputs_are_float32_whatever_the_default_dtype():
    """The kernels write float32: their outputs are made float32 even under another default dtype (a half
    default would otherwise give a buffer half the size the kernel writes)."""
    torch.manual_seed(3)
    conv = nn.Conv2d(64, 64, 3, 1, 1)
    streamed = StreamedConv3x3.from_conv(conv, True)
    x = _nhwc(1, 64, 5, 6)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.inference_mode():
            got = streamed(x)
            y = fuse1x1(x.permute(0, 2, 3, 1).reshape(-1, 64), pack_fuse(nn.Conv2d(64, 64, 1).weight),
                        torch.zeros(64, dtype=torch.float32))
    finally:
        torch.set_default_dtype(old)
    assert got.dtype == torch.float32 and y.dtype == torch.float32


@needs_kernels
@pytest.mark.parametrize("winograd", [True, False], ids=["winograd", "direct"])
@pytest.mark.parametrize("wide,narrow", [(384, 51), (64, 64), (128, 7)])
def test_streamed_wide_body_equals_the_body(wide, narrow, winograd):
    """1x1 (64 -> wide), ReLU, 1x1 (-> narrow), 3x3 (-> 64): written into the middle slice of a wider buffer."""
    torch.manual_seed(4)
    body = nn.Sequential(nn.Conv2d(64, wide, 1), nn.ReLU(), nn.Conv2d(wide, narrow, 1), nn.Conv2d(narrow, 64, 3, 1, 1))
    for p in body.parameters():
        nn.init.normal_(p, 0, 0.05)
    streamed = StreamedWideBody.from_body(list(body))
    streamed.winograd = winograd
    for h, w in SIZES:
        x = _nhwc(1, 64, h, w)
        buf = torch.full((1, h, w, 192), 7.0)
        out = buf[..., 64:128].permute(0, 3, 1, 2)
        with torch.inference_mode():
            assert streamed(x, out) is out
            want = body.double()(x.double()).float()
            body.float()
        assert (out - want).abs().max().item() <= FAST_PATH_ATOL, (h, w)
        assert bool((buf[..., :64] == 7).all()) and bool((buf[..., 128:] == 7).all())
    assert StreamedWideBody.from_body([body[0], body[1], body[2]]) is None                        # no 3x3
    assert StreamedWideBody.from_body([nn.Conv2d(32, 384, 1), body[1], body[2], body[3]]) is None  # not 64 in
    assert StreamedWideBody.from_body([body[0], body[1], nn.Conv2d(384, 96, 1), nn.Conv2d(96, 64, 3, 1, 1)]) is None
