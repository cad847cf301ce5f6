"""The complexity report reproduces the CARN paper's table; the fast inference path equals the plain forward."""
from __future__ import annotations

import pytest
import torch

from carn import CARN, CARN_M
from conftest import io_atol, load_ref
from overnet import OverNet
from srkit.inference.fast import cpu_fp32
from srkit.core.complexity import multadds_1280x720, table
from srkit.inference.fast import prepare_fast, to_fast_input
from srkit.core.layers import count_parameters
from srkit.core.tolerances import FAST_PATH_ATOL

PAPER_G = {("carn", 2): 222.8, ("carn", 4): 90.9, ("carn_m", 2): 91.2, ("carn_m", 4): 32.5}


def test_multadds_and_params_reproduce_the_paper():
    rows = {(r["model"], r["scale"]): r for r in table()}
    for key, g in PAPER_G.items():
        assert abs(rows[key]["multadds_G"] - g) <= 0.1, (key, rows[key]["multadds_G"])
    assert rows[("carn", 2)]["params"] == 1_591_963 and rows[("carn_m", 2)]["params"] == 414_811
    # x3: the paper's 118.8 G is the fractional input; a real 426x240 input costs 118.6 G
    assert rows[("carn", 3)]["multadds_G"] == pytest.approx(118.8, abs=0.05)
    assert rows[("carn", 3)]["multadds_int_input_G"] == pytest.approx(118.6, abs=0.05)


def test_multadds_count_is_resolution_proportional():
    net = CARN_M()
    from srkit.core.complexity import conv_multadds
    small = conv_multadds(net, torch.zeros(1, 3, 9, 16), 4)
    big = conv_multadds(net, torch.zeros(1, 3, 18, 32), 4)
    assert big == 4 * small
    assert multadds_1280x720(net, 4) == pytest.approx(32.5, abs=0.05)
    assert count_parameters(net) == 414_811


@pytest.mark.parametrize("kernels", ["streamed", "onednn"])
@pytest.mark.parametrize("name", ["carn", "carn_m", "overnet_x2", "overnet_x3", "overnet_x4"])
def test_fast_path_reproduces_the_authors_outputs(name, kernels, device, request):
    """Both CPU forms of the fast path: with srkit.inference.fast.cpu_fp32' streamed kernels (where this CPU runs them)
    and with oneDNN calls only."""
    if kernels == "onednn":
        if device.type != "cpu":
            pytest.skip("the streamed kernels are CPU code: on CUDA both forms are the same")
        request.getfixturevalue("no_cpu_kernels")
    elif device.type == "cpu" and not cpu_fp32.available():
        pytest.skip(f"srkit.inference.fast.cpu_fp32 does not run here: {cpu_fp32.unavailable_reason()}")
    ref = load_ref(f"{name}_random_io.pt")
    if name.startswith("overnet"):
        net = OverNet(upscale={"overnet_x2": 3, "overnet_x3": 4, "overnet_x4": 5}[name])
        net.load_state_dict(ref["checkpoint"]["model_state_dict"])
    else:
        net = (CARN() if name == "carn" else CARN_M())
        net.load_state_dict(ref["state_dict"])
    fast = prepare_fast(net.eval().to(device))
    assert not any(isinstance(m, torch.nn.Conv2d) and m.in_channels == 3 == m.out_channels and m.kernel_size == (1, 1)
                   for m in fast.modules())  # mean-shift convs are gone
    with torch.inference_mode():
        for key, want in ref["outputs"].items():
            got = fast(to_fast_input(ref["input"].to(device)), int(key[1:])).cpu()
            assert (got - want).abs().max().item() <= io_atol(device, FAST_PATH_ATOL), key


def _fused_parts(net: torch.nn.Module) -> dict[str, int]:
    from srkit.inference import fast as F
    kinds = {"conv": F.FusedConv, "fuse": F.CascadeFuse, "residual": F.FusedResidual, "shuffle": F.modules._ShuffleNHWC}
    return {k: sum(isinstance(m, t) for m in net.modules()) for k, t in kinds.items()}


def test_fast_path_fuses_what_it_claims():
    # CARN-M: 3 blocks x 3 fuses + 3 global fuses; 1 shared residual-E per block; shuffles: x3 one (its
    # ShuffleExit keeps it for where the kernel declines), x4 its
    # first (each final x2 stage's shuffle is done by a SubPixelTail, after the exit conv)
    parts = _fused_parts(prepare_fast(CARN_M()))
    assert parts["fuse"] == 12 and parts["residual"] == 3 and parts["shuffle"] == 2
    assert not any(isinstance(m, (torch.nn.PixelShuffle, torch.nn.ReLU)) for m in prepare_fast(CARN()).modules())
    portable = _fused_parts(prepare_fast(CARN(), fuse=False))
    assert sum(portable.values()) == 0
    # OverNet declares its overscaling resize (FastPath.resize): the last shuffle moves into it, so that a CPU
    # with the streamed kernels never makes the overscaled map; its first x2 stage keeps its shuffle at x4
    from srkit.inference.fast import ShuffleResize
    for upscale, shuffles in ((3, 0), (4, 1), (5, 0)):
        fast = prepare_fast(OverNet(upscale=upscale))
        assert isinstance(fast.overscale, ShuffleResize) and _fused_parts(fast)["shuffle"] == 1 + shuffles
        assert (fast.overscale.streamed is not None) == cpu_fp32.available()
    assert not isinstance(prepare_fast(OverNet(), fuse=False).overscale, ShuffleResize)


@pytest.mark.parametrize("groups,r", [(1, 2), (4, 2), (1, 3), (4, 3)])
def test_reordered_pixel_shuffle_equals_conv_relu_shuffle(groups, r):
    from srkit.inference.fast.modules import _fuse_sequence
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Conv2d(16, 16 * r * r, 3, 1, 1, groups=groups), torch.nn.ReLU(),
                              torch.nn.PixelShuffle(r))
    fused = torch.nn.Sequential(*_fuse_sequence(list(seq)))
    x = torch.randn(2, 16, 7, 9)
    with torch.inference_mode():
        want = seq(x)
        for layout in (torch.contiguous_format, torch.channels_last):
            assert torch.allclose(fused(x.contiguous(memory_format=layout)), want, atol=1e-5)


def test_fused_modules_fall_back_to_plain_ops_with_grad():
    """Off the oneDNN path (grad enabled, or CUDA) the fused modules run plain ops; same numbers."""
    torch.manual_seed(0)
    net = CARN_M().eval()
    fast = prepare_fast(net)
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        want = net(x, 3)
        onednn = fast(to_fast_input(x), 3)
    with torch.enable_grad():
        plain_ops = fast(to_fast_input(x), 3)
    assert (onednn - want).abs().max().item() <= 1e-5 and (plain_ops - want).abs().max().item() <= 1e-5


def test_buffered_cascade_equals_concatenation():
    from srkit.inference.fast import CascadeFuse
    from srkit.core.layers import cascade
    torch.manual_seed(0)
    convs = [torch.nn.Conv2d(8 * (i + 2), 8, 1) for i in range(3)]
    blocks = [torch.nn.Conv2d(8, 8, 3, 1, 1) for _ in range(3)]
    x = torch.randn(2, 8, 5, 6)
    with torch.inference_mode():
        want = cascade(x, blocks, [torch.nn.Sequential(c, torch.nn.ReLU()) for c in convs])
        got = cascade(x.contiguous(memory_format=torch.channels_last), blocks, [CascadeFuse(c, True) for c in convs])
    assert len(got) == 3 and all(torch.allclose(g, w, atol=1e-6) for g, w in zip(got, want))


def _broken_above(monkeypatch, pixels: int):
    """Make the fused kernel raise for inputs with more than ``pixels`` pixels (0: always)."""
    real = torch.ops.mkldnn._convolution_pointwise

    def guard(fn):
        def kernel(x, *args, **kwargs):
            if x.shape[-1] * x.shape[-2] > pixels:
                raise RuntimeError("could not create a primitive descriptor for this CPU")
            return fn(x, *args, **kwargs)
        return kernel

    class Op:  # the plain and the binary (+ residual) overloads, both guarded
        __call__ = staticmethod(guard(real))
        binary = staticmethod(guard(real.binary))

    monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise", Op(), raising=False)


def test_an_unavailable_onednn_kernel_falls_back_and_says_so_once(monkeypatch, no_cpu_kernels):
    from srkit.inference import fast as F
    if not F.onednn.BUILD:
        pytest.skip("this PyTorch build has no oneDNN fused convolution: the plain ops always run")
    _broken_above(monkeypatch, 0)  # the probe fails too: the kernel is unavailable
    torch.manual_seed(0)
    net = CARN().eval()
    x = torch.rand(1, 3, 10, 12)
    with pytest.warns(F.OneDNNFallbackWarning) as caught, torch.inference_mode():
        got = prepare_fast(net)(to_fast_input(x), 2)
        want = net(x, 2)
    assert (got - want).abs().max().item() <= FAST_PATH_ATOL
    assert len({str(w.message) for w in caught}) == 1  # one message, not one per conv


def test_a_failure_on_real_inputs_is_not_swallowed(monkeypatch, no_cpu_kernels):
    from srkit.inference import fast as F
    if not F.onednn.BUILD:
        pytest.skip("this PyTorch build has no oneDNN fused convolution")
    _broken_above(monkeypatch, 16)  # the tiny probe works; the real call fails (as out-of-memory would)
    fast = prepare_fast(CARN().eval())
    with pytest.raises(RuntimeError, match="primitive descriptor"), torch.inference_mode():
        fast(to_fast_input(torch.rand(1, 3, 10, 12)), 2)


def test_sub_pixel_exit_equals_exit_of_the_shuffled_map():
    """The exit conv run on the low-resolution map (srkit.inference.fast.SubPixelExit) is the same sum as on the
    pixel-shuffled map, borders included. The CARN fast path moves the exit conv into every upsampling branch
    (the model declares that it reads the upsampler's output as it is): a last x2 stage becomes a SubPixelTail
    (x2, x4), the x3 branch's shuffle and the exit conv become one ShuffleExit (the exit conv read from the
    unshuffled map where the streamed kernel runs). Every module takes and returns tensors."""
    from srkit.inference.fast.modules import FusedConv, ShuffleExit, SubPixelExit, SubPixelTail, _ShuffleNHWC
    torch.manual_seed(0)
    exit_conv = torch.nn.Conv2d(64, 3, 3, 1, 1)
    x = torch.rand(1, 256, 13, 17)
    with torch.no_grad():
        want = exit_conv(torch.nn.functional.pixel_shuffle(x, 2))
        got = SubPixelExit(exit_conv)(x.contiguous(memory_format=torch.channels_last))
        assert (got - want).abs().max().item() <= FAST_PATH_ATOL
    fast = prepare_fast(CARN_M().eval())
    ends = {name: [type(m) for m in branch.body] for name, branch in fast.upsample.named_children()}
    assert isinstance(fast.exit, torch.nn.Identity) and isinstance(fast.add_mean, torch.nn.Identity)
    assert ends["up2"] == [SubPixelTail]
    assert ends["up3"] == [FusedConv, ShuffleExit] and not fast.upsample.up3.body[-1].exit.relu
    assert ends["up4"] == [FusedConv, _ShuffleNHWC, SubPixelTail]


def test_the_workspace_never_hands_out_memory_a_caller_holds():
    """The prepared model keeps its large tensors between calls (no fresh pages each time, nothing
    process-wide), but an output the caller still holds is never overwritten by the next call."""
    torch.manual_seed(0)
    net = CARN_M().eval()
    fast = prepare_fast(net)
    a, b = torch.rand(1, 3, 14, 18), torch.rand(1, 3, 14, 18)
    with torch.inference_mode():
        first = fast(to_fast_input(a), 2)
        kept = first.clone()
        second = fast(to_fast_input(b), 2)
        third = fast(to_fast_input(b), 2)
    assert torch.equal(first, kept)  # held: untouched by two later calls
    assert torch.equal(second, third) and (second - net(b, 2)).abs().max().item() <= FAST_PATH_ATOL
    del first, second, third
    with torch.inference_mode():
        fast(to_fast_input(b), 2)
        held = fast.workspace.held_bytes()
        for _ in range(3):
            fast(to_fast_input(b), 2)
    assert fast.workspace.held_bytes() == held  # outputs dropped: reused, not grown


def test_calling_the_api_changes_no_process_wide_allocator_setting(tmp_path, random_carn_m):
    """The API and the command line run fast without touching the C library's allocator (mallopt) or any
    other process-wide setting through ctypes: every library the calls load is recorded."""
    import subprocess
    import sys
    probe = f"""
import ctypes
looked_up = []
real = ctypes.CDLL.__getattr__
def record(self, name):
    looked_up.append(name)
    return real(self, name)
ctypes.CDLL.__getattr__ = record
import torch
from srkit.api import load
up = load({str(random_carn_m)!r}, device="cpu")
up(torch.rand(1, 3, 20, 24), 2)
from carn import sample
sample.main(["--ckpt_path", {str(random_carn_m)!r}, "--input", {str(tmp_path / 'none')!r}, "--sample_dir",
             {str(tmp_path / 'o')!r}, "--cpu"])
print("LOOKED_UP", sorted(set(looked_up)))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    line = next(x for x in out.stdout.splitlines() if x.startswith("LOOKED_UP"))
    names = eval(line[len("LOOKED_UP "):])
    assert not {"mallopt", "malloc_trim", "mallinfo", "setenv", "putenv"} & set(names), names
    ours = [n for n in names if n not in ("dlerror", "dlinfo")]  # torch's own lookups in libdl
    assert ours and all(n.startswith("srkit_") for n in ours), names  # only the streamed kernels' entry points


@pytest.mark.parametrize("res_scale,x_scale", [(1.0, 1.0), (0.7, 1.3)])
def test_se_scaled_residual_blocks_equal_the_plain_forward(res_scale, x_scale, device):
    """OverNet's residual blocks (Fusion.SE_SCALED_RESIDUAL) run as one gate-and-scale factor written into the
    cascade's buffer; with the learned scales at 1 (a fresh model) and away from 1 (trained weights), whole and
    tiled, the output equals the plain forward."""
    from srkit.inference.fast import SEScaledResidual
    from srkit.inference.tiling import forward_tiled
    from srkit.core.tolerances import TILING_ATOL
    torch.manual_seed(0)
    net = OverNet(upscale=3).eval()
    with torch.no_grad():
        for m in net.modules():
            if type(m).__name__ == "ResidualBlock":
                m.res_scale.scale.fill_(res_scale)
                m.x_scale.scale.fill_(x_scale)
    net = net.to(device)
    fast = prepare_fast(net)
    assert sum(isinstance(m, SEScaledResidual) for m in fast.modules()) == 9
    x = torch.rand(1, 3, 37, 45, device=device)
    with torch.inference_mode():
        want = net(x, 2)
        got = fast(to_fast_input(x), 2)
        assert (got - want).abs().max().item() <= io_atol(device, FAST_PATH_ATOL)
        tiled = forward_tiled(fast, to_fast_input(x), 2, tile=20, overlap=8)
        assert (tiled - want).abs().max().item() <= io_atol(device, TILING_ATOL + FAST_PATH_ATOL)
