"""srkit.inference.cpu_kernels: the streamed residual block, x2 tail and cascade fusion against float64 references, at
odd sizes, thread counts, batch sizes and strided destinations; and where they must decline to run."""
from __future__ import annotations

import platform
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from carn.blocks import EResidualBlock, ResidualBlock
from srkit.inference import cpu_kernels
from srkit.inference.cpu_kernels import StreamedConv3x3, StreamedResidual, StreamedTail, fuse1x1, pack_fuse
from srkit.inference.fast import SubPixelExit
from srkit.core.tolerances import FAST_PATH_ATOL

SIZES = [(1, 1), (1, 7), (6, 1), (5, 3), (37, 53), (29, 113)]  # widths below / across the kernels' blocks

needs_kernels = pytest.mark.skipif(not cpu_kernels.available(),
                                   reason=f"srkit.inference.cpu_kernels does not run here: {cpu_kernels.unavailable_reason()}")


def test_the_kernels_are_built_where_they_can_run():
    """pip install -e . builds the kernels (an optional extension: a failed build would only be slower)."""
    if platform.system() != "Linux" or platform.machine() != "x86_64" or not shutil.which("cc") \
            or torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        pytest.skip("the kernels are built for Linux x86-64 with a C compiler and run on AVX-512 CPUs")
    assert cpu_kernels.available(), cpu_kernels.unavailable_reason()


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
@pytest.mark.parametrize("relu", [True, False])
def test_streamed_conv3x3_equals_the_conv(relu):
    torch.manual_seed(3)
    conv = nn.Conv2d(64, 192, 3, 1, 1)
    streamed = StreamedConv3x3.from_conv(conv, relu)
    for h, w in SIZES:
        x = _nhwc(2, 64, h, w)
        with torch.inference_mode():
            got = streamed(x)
        want = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
        want = (torch.relu(want) if relu else want).float()
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert (got - want).abs().max().item() <= FAST_PATH_ATOL, (h, w)
    assert StreamedConv3x3.from_conv(nn.Conv2d(64, 96, 3, 1, 1), True) is None            # not 64 n outputs
    assert StreamedConv3x3.from_conv(nn.Conv2d(64, 64, 3, 1, 1, groups=4), True) is None  # grouped
    assert StreamedConv3x3.from_conv(nn.Conv2d(32, 64, 3, 1, 1), True) is None            # not 64 inputs


@needs_kernels
@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
def test_fuse1x1_equals_the_fusion_conv(blocks):
    torch.manual_seed(2)
    conv = nn.Conv2d(64 * blocks, 64, 1)
    buf = torch.randn(13 * 7, 256)  # 91 pixels: not a whole number of the kernel's 6-pixel blocks
    rows = buf[:, :64 * blocks]
    with torch.inference_mode():
        got = fuse1x1(rows, pack_fuse(conv.weight), conv.bias.detach())
    want = torch.relu(rows.double() @ conv.weight.double().view(64, -1).t() + conv.bias.double()).float()
    assert (got - want).abs().max().item() <= FAST_PATH_ATOL
    assert pack_fuse(nn.Conv2d(96, 64, 1).weight) is None and pack_fuse(nn.Conv2d(128, 32, 1).weight) is None


def test_a_library_from_other_source_is_not_called(monkeypatch, tmp_path):
    """A stale build (its functions' arguments may differ) or a file that is no library: one clear reason,
    and the oneDNN path."""
    junk = tmp_path / "_cpu_kernels.so"
    junk.write_bytes(b"not a shared library")
    with pytest.raises(OSError):
        cpu_kernels._load(junk)
    if cpu_kernels.available():
        monkeypatch.setattr(cpu_kernels, "_ABI", cpu_kernels._ABI + 1)
        with pytest.raises(OSError, match="pip install -e . again"):
            cpu_kernels._load(next(Path(cpu_kernels.__file__).parent.glob("_cpu_kernels*.so")))


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setattr(cpu_kernels, "_LIB", None)
    monkeypatch.setenv("SRKIT_NO_CPU_KERNELS", "1")
    assert not cpu_kernels.available()
    assert "SRKIT_NO_CPU_KERNELS" in cpu_kernels.unavailable_reason()
