"""srkit.inference.fast.cpu_bf16: every bf16 kernel against float64 ops on the same bf16 input, at odd sizes
(W not a multiple of any block, H = 1, tiny images), thread counts and strided destinations, on both of its
paths where the CPU has them (AMX tiles; AVX512-BF16 dot products, forced by turning AMX off); and where it
must decline: absent build, turned off, or a forced float32 build (which also makes ``auto`` float32)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from carn.blocks import EResidualBlock, ResidualBlock
from srkit.core.tolerances import BF16_KERNEL_RTOL
from srkit.inference import precision
from srkit.inference.fast import cpu_fp32
from srkit.inference.fast.cpu_fp32 import StreamedTail, StreamedWideBody
from srkit.inference.fast import SubPixelExit, cpu_bf16

SIZES = [(1, 1), (1, 7), (6, 1), (5, 3), (37, 53), (9, 131)]  # widths below / across the 6-, 28-, 32-, 64-pixel blocks

needs_bf16 = pytest.mark.skipif(not cpu_bf16.available(),
                                reason=f"the bf16 kernels do not run here: {cpu_bf16.unavailable_reason()}")
PATHS = ["amx", "avx512_bf16"]


@pytest.fixture(params=PATHS)
def path(request):
    """Run on the AMX path and on the AVX512-BF16 one (AMX turned off); the library's choice is restored after."""
    lib = cpu_bf16._library()
    if lib is None:
        pytest.skip(cpu_bf16.unavailable_reason())
    if request.param == "amx" and not lib.srkit_bf16_amx(1):
        pytest.skip("no AMX-BF16 here (or the kernel refused the tile state)")
    if request.param == "avx512_bf16":
        lib.srkit_bf16_amx(0)
    yield request.param
    cpu_bf16._use_amx(lib)


def close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Within BF16_KERNEL_RTOL of the reference's largest magnitude (bf16 weights and stores, float32 sums)."""
    err = (got.double() - want.double()).abs().max().item()
    scale = want.abs().max().item()
    assert err <= BF16_KERNEL_RTOL * max(scale, 1e-3), (err, scale)


def _init(m: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in m.parameters():  # outputs of order 1, as in a trained net
        nn.init.normal_(p, 0, 0.04)
    return m.eval()


def _bf16_nhwc(*shape: int) -> torch.Tensor:
    return torch.randn(*shape).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)


def _into(shape, channels: int, offset: int) -> torch.Tensor:
    """A bf16 NHWC destination that is a channel slice of a wider buffer (a cascade buffer's block)."""
    n, c, h, w = shape
    buf = torch.full((n, h, w, channels), float("nan"), dtype=torch.bfloat16)
    return buf[..., offset:offset + c].permute(0, 3, 1, 2)


@needs_bf16
@pytest.mark.parametrize("kind", ["residual", "residual-E"])
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("winograd", [True, False])
def test_residual_block(path, kind, hw, winograd):
    if winograd and (path == "amx" or kind == "residual-E"):
        pytest.skip("Winograd runs only on the AVX512-BF16 path, for dense convs")
    blk = _init(EResidualBlock(64, 4) if kind == "residual-E" else ResidualBlock(64))
    k = cpu_bf16.ResidualBF16.from_body(list(blk.body))
    assert k is not None
    k.winograd = winograd and k.groups == 1
    x = _bf16_nhwc(2, 64, *hw)
    out = _into(x.shape, 192, 64)
    with torch.inference_mode():
        assert k(x, out)
        want = blk.double()(x.double())
    close(out, want)
    # the neighbouring channels of the buffer are not touched
    assert torch.isnan(out._base[..., :64].float()).all() and torch.isnan(out._base[..., 128:].float()).all()


@needs_bf16
@pytest.mark.parametrize("threads", [1, 3])
def test_residual_block_threads(path, threads):
    blk = _init(ResidualBlock(64))
    k = cpu_bf16.ResidualBF16.from_body(list(blk.body))
    x = _bf16_nhwc(1, 64, 11, 45)
    out = torch.empty_like(x)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            assert k(x, out)
    finally:
        torch.set_num_threads(before)
    close(out, blk.double()(x.double()))


@needs_bf16
@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
@pytest.mark.parametrize("npix", [1, 5, 37, 1000])
@pytest.mark.parametrize("first", [False, True])
def test_fuse1x1(path, blocks, npix, first):
    torch.manual_seed(blocks)
    conv = _init(nn.Conv2d(64 * blocks, 64, 1))
    buf = torch.randn(npix, 64 * 5).to(torch.bfloat16)  # the cascade buffer, wider than the prefix read
    x0 = _bf16_nhwc(1, 64, 1, npix) if first else None
    src = buf[:, :64 * blocks].clone()
    if first:
        src[:, :64] = x0.permute(0, 2, 3, 1).reshape(npix, 64)
    want = torch.relu(src.double() @ conv.weight.double().view(64, -1).t() + conv.bias.double())
    with torch.inference_mode():
        y = cpu_bf16.fuse1x1(buf[:, :64 * blocks], cpu_bf16.pack_fuse(conv.weight), cpu_bf16.float_bits(conv.bias),
                             first=x0)
    assert y is not None and y.dtype == torch.bfloat16
    close(y, want)


@needs_bf16
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("outs", [64, 256])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("float_out", [False, True])
def test_conv3x3(path, hw, outs, relu, float_out):
    conv = _init(nn.Conv2d(64, outs, 3, 1, 1))
    k = cpu_bf16.ConvBF16.from_conv(conv, relu)
    x = _bf16_nhwc(2, 64, *hw)
    with torch.inference_mode():
        y = k(x, float_out=float_out)
        want = conv.double()(x.double())
    assert y.dtype == (torch.float32 if float_out else torch.bfloat16)
    close(y, torch.relu(want) if relu else want)


@needs_bf16
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("hw", SIZES)
def test_x2_tail(path, groups, hw):
    up, exit_conv = _init(nn.Conv2d(64, 256, 3, 1, 1, groups=groups)), _init(nn.Conv2d(64, 3, 3, 1, 1))
    tail = StreamedTail.from_convs(up, SubPixelExit(exit_conv).sub)
    k = cpu_bf16.TailBF16(tail)
    x = _bf16_nhwc(2, 64, *hw)
    with torch.inference_mode():
        y = k(x)
        want = exit_conv.double()(F.pixel_shuffle(torch.relu(up.double()(x.double())), 2))
    assert y.dtype == torch.float32 and y.shape == want.shape
    close(y, want)


@needs_bf16
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("r", [3, 2])
@pytest.mark.parametrize("hw", SIZES)
def test_shuffle_exit(path, groups, r, hw):
    """The exit conv read from the bf16 unshuffled map (the fast path's shuffle channel order) equals
    exit(pixel_shuffle(y)), borders included, in a batch of two, on both paths (it is vdpbf16ps on either)."""
    from srkit.inference.fast import shuffle_order
    exit_conv = _init(nn.Conv2d(64, 3, 3, 1, 1))
    k = cpu_bf16.ShuffleExitBF16(cpu_fp32.StreamedShuffleExit.from_conv(exit_conv, r, groups))
    y = _bf16_nhwc(2, 64 * r * r, *hw)
    emitted = y[:, shuffle_order(64, r, groups)].contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = k(emitted)
        want = exit_conv.double()(F.pixel_shuffle(y.double(), r))
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    close(got, want)
    assert k(emitted[:, :64]) is None  # not 64 r^2 channels


@needs_bf16
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("outs", [64, 256, 576])
@pytest.mark.parametrize("float_out", [False, True])
def test_grouped_conv3x3(path, hw, outs, float_out):
    conv = _init(nn.Conv2d(64, outs, 3, 1, 1, groups=4))
    k = cpu_bf16.ConvBF16.from_conv(conv, True)
    x = _bf16_nhwc(2, 64, *hw)
    with torch.inference_mode():
        y = k(x, float_out=float_out)
        want = torch.relu(conv.double()(x.double()))
    close(y, want)


@needs_bf16
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("mid", [(2, 51), (6, 64)])
def test_wide_body(path, hw, mid):
    c1, c2 = mid
    seq = _init(nn.Sequential(nn.Conv2d(64, 64 * c1, 1), nn.ReLU(), nn.Conv2d(64 * c1, c2, 1), nn.Conv2d(c2, 64, 3, 1, 1)))
    k = cpu_bf16.WideBodyBF16(StreamedWideBody.from_body(list(seq)))
    x = _bf16_nhwc(2, 64, *hw)
    out = _into(x.shape, 128, 64)
    with torch.inference_mode():
        y = k(x, out)
        want = seq.double()(x.double())
    assert y is out
    close(out, want)
    assert torch.isnan(out._base[..., :64].float()).all()


@needs_bf16
@pytest.mark.parametrize("hw", SIZES)
def test_channel_mean_and_scale_add(hw):
    b, x = _bf16_nhwc(2, 64, *hw), _bf16_nhwc(2, 64, *hw)
    with torch.inference_mode():
        mean = cpu_bf16.channel_mean(b)
        factor = torch.rand(2, 64, 1, 1)
        out = _into(b.shape, 128, 0)
        assert cpu_bf16.scale_add(b, factor, x, 0.5, out)
    torch.testing.assert_close(mean.double(), b.double().mean((2, 3), keepdim=True), rtol=0, atol=1e-5)
    close(out, b.double() * factor.double() + 0.5 * x.double())


@needs_bf16
def test_a_prepared_models_global_mean_of_a_bf16_map_runs_the_kernel(monkeypatch):
    """A GlobalAvgPool outside an SE-scaled residual (OverNet's global skip) becomes a ChannelMean in the fast
    path: a bf16 map's mean from the one-pass kernel (float32 sums), anything else from the model's own pool."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from bench_inference import build
    from srkit.inference.fast import prepare_fast
    from srkit.inference.fast.modules import ChannelMean
    means = [m for m in prepare_fast(build("overnet", 2)[0], half=torch.bfloat16).modules()
             if isinstance(m, ChannelMean)]
    assert len(means) == 1
    mean, calls = means[0], []
    monkeypatch.setattr(mean.pool, "forward", lambda x: calls.append(x.dtype) or x.mean((2, 3), keepdim=True))
    b = _bf16_nhwc(2, 64, 37, 53)
    with torch.inference_mode():
        got = mean(b)
        assert calls == [] and got.dtype == torch.bfloat16 and got.shape == (2, 64, 1, 1)
        mean(b.float())
    assert calls == [torch.float32]
    torch.testing.assert_close(got.double(), b.double().mean((2, 3), keepdim=True), rtol=2 ** -8, atol=0)


@needs_bf16
def test_kernels_decline_what_they_do_not_serve():
    blk = _init(ResidualBlock(64))
    k = cpu_bf16.ResidualBF16.from_body(list(blk.body))
    x = _bf16_nhwc(1, 64, 4, 4)
    with torch.inference_mode():
        assert not k(x.float(), torch.empty_like(x).float())      # float32 is the float32 kernels' job
        assert not k(x, x)                                         # in place
        assert cpu_bf16.fuse1x1(torch.randn(16, 64), cpu_bf16.pack_fuse(nn.Conv2d(64, 64, 1).weight),
                                cpu_bf16.float_bits(torch.zeros(64))) is None
    with torch.enable_grad():
        assert not k(x, torch.empty_like(x))                      # autograd: the plain ops run
    assert cpu_bf16.ResidualBF16.from_body([nn.Conv2d(64, 64, 5, padding=2)]) is None


@pytest.fixture
def fresh(monkeypatch):
    """The library looked for again under the environment the test sets, and again after it."""
    monkeypatch.setattr(cpu_bf16, "_LIB", None)
    yield monkeypatch
    cpu_bf16._LIB = None


@pytest.mark.parametrize("env", [{"SRKIT_CPU_KERNELS": "off"}, {"SRKIT_NO_CPU_KERNELS": "1"}])
def test_turned_off_means_no_bf16_kernels_and_the_plain_bf16_path(fresh, env):
    for k, v in env.items():
        fresh.setenv(k, v)
    assert not cpu_bf16.available() and "turned off" in cpu_bf16.unavailable_reason()
    blk = _init(ResidualBlock(64))
    assert cpu_bf16.ResidualBF16.from_body(list(blk.body))(_bf16_nhwc(1, 64, 3, 3), _bf16_nhwc(1, 64, 3, 3)) is False


def test_absent_build_means_no_bf16_kernels(fresh, tmp_path):
    fresh.setenv("SRKIT_CPU_KERNELS_LIB", str(tmp_path))  # a folder without the build
    if "avx512_bf16" not in precision._cpu_flags():
        assert not cpu_bf16.available()
        return
    assert not cpu_bf16.available() and "absent" in cpu_bf16.unavailable_reason()


@pytest.mark.parametrize("build", ["avx512", "avx2"])
def test_a_forced_fp32_build_means_no_bf16_kernels_and_auto_fp32(fresh, build):
    """Tested by forcing the float32 builds: a CPU of their class has no bf16 units, so ``auto`` is float32
    there and the bf16 kernels are not loaded, whatever BF16_FASTER_ON says."""
    fresh.setenv("SRKIT_CPU_KERNELS", build)
    fresh.setattr(precision, "BF16_FASTER_ON", precision.BF16_FLAGS)
    assert not cpu_bf16.available() and "forces a float32 build" in cpu_bf16.unavailable_reason()
    assert precision.native_bf16() == "" and precision.resolve("auto", torch.device("cpu")) is None


@needs_bf16
@pytest.mark.parametrize("model", ["carn", "carn_m", "overnet"])
def test_prepared_bf16_model_runs_the_kernels_and_matches_the_plain_bf16_path(model, monkeypatch):
    """The whole bf16 fast path with the kernels vs without them (SRKIT_CPU_KERNELS=off: oneDNN's bf16 convs):
    two bf16 computations of the same model, each within reach of the float32 forward."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from bench_inference import build
    from srkit.inference.fast import prepare_fast, to_fast_input
    net, _ = build(model, 2)
    x = torch.rand(1, 3, 19, 70)
    with torch.inference_mode():
        want = net(x, 2)
        fast = prepare_fast(net, half=torch.bfloat16)
        assert any(isinstance(m, cpu_bf16.ResidualBF16) or isinstance(m, cpu_bf16.WideBodyBF16) for m in fast.modules())
        got = fast(to_fast_input(x, torch.bfloat16), 2).float()
        monkeypatch.setattr(cpu_bf16, "_LIB", None)
        monkeypatch.setattr(cpu_fp32, "_LIB", None)
        monkeypatch.setenv("SRKIT_CPU_KERNELS", "off")
        plain = prepare_fast(net, half=torch.bfloat16)(to_fast_input(x, torch.bfloat16), 2).float()
    monkeypatch.setattr(cpu_bf16, "_LIB", None)
    monkeypatch.setattr(cpu_fp32, "_LIB", None)
    # outputs in [0, 1]: both bf16 forms within 2 grey levels of the float32 forward (each measured < 0.2)
    assert (got - want).abs().max().item() < 2 / 255 and (plain - want).abs().max().item() < 2 / 255
