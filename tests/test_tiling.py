"""Tiled forward == whole-image forward (CARN-M released on Set14 x2; OverNet at integer and real scales),
and the x8 self-ensemble is exact for an equivariant function."""
from __future__ import annotations

import pytest
import torch

from carn import CARN_M
from conftest import load_ref
from overnet import OverNet
from srkit.data.imageio import read_rgb8
from srkit.inference.predictor import to_tensor
from srkit.inference.tiling import forward_tiled, self_ensemble
from srkit.core.tolerances import TILING_ATOL


@pytest.mark.slow
@torch.inference_mode()
def test_carn_m_tiled_matches_whole_on_set14_x2(carn_m_released, benchmark_dir, device):
    net = CARN_M().eval()
    net.load_state_dict(torch.load(carn_m_released, map_location="cpu", weights_only=True))
    net = net.to(device)
    worst = 0.0
    for lr_path in sorted((benchmark_dir / "Set14" / "x2").glob("*_LR.png")):
        x = to_tensor(read_rgb8(lr_path), device)
        tile = max(x.shape[-2:]) // 2 + 1  # at least 4 tiles per image, default overlap 20
        whole = net(x, 2)
        tiled = forward_tiled(net, x, 2, tile=tile, overlap=20)
        worst = max(worst, (whole - tiled).abs().max().item())
    assert worst <= TILING_ATOL


@torch.inference_mode()
def test_overnet_tiled_matches_whole_at_integer_and_real_scales(benchmark_dir):
    ref = load_ref("overnet_x4_random_io.pt")
    net = OverNet(upscale=5).eval()
    net.load_state_dict(ref["checkpoint"]["model_state_dict"])
    x = to_tensor(read_rgb8(benchmark_dir / "Set5" / "x4" / "img_005_SRF_4_LR.png"), torch.device("cpu"))
    ups: list[int] = []
    net.upsample.register_forward_hook(lambda *_: ups.append(1))
    for scale in (3, 2.5):
        whole = net(x, scale)
        ups.clear()
        tiled = forward_tiled(net, x, scale, tile=40, overlap=20)
        n_tiles = (-(-x.shape[-2] // 40)) * (-(-x.shape[-1] // 40))
        assert n_tiles > 1 and len(ups) == n_tiles  # the statistics pass stops at the last pool, before it
        assert tiled.shape == whole.shape
        assert (whole - tiled).abs().max().item() <= TILING_ATOL
        # without the whole-image pooling statistics, tiles are visibly off: the stat pass is what makes it work
        naive = forward_tiled(net, x, scale, tile=40, overlap=20, stat_passes=0)
        assert (whole - naive).abs().max().item() > TILING_ATOL


def test_self_ensemble_of_equivariant_fn_is_identity_and_averages(device):
    x = torch.rand(1, 3, 5, 7, device=device)
    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    assert torch.allclose(self_ensemble(up, x), up(x))
    shift = lambda t: t + t[..., :1, :1]  # depends on the top-left pixel: not equivariant  # noqa: E731
    assert not torch.allclose(self_ensemble(shift, x), shift(x))


def test_every_tile_runs_at_one_shape():
    """Edge windows grow inward to the common length, so the retained allocator reuses one set of blocks."""
    from srkit.inference.tiling import _axis_tiles
    for n in (1000, 1300, 2048, 1536):
        tiles = _axis_tiles(n, 512, 20, 1)
        assert {w1 - w0 for _, _, w0, w1 in tiles} == {552}
        assert all(w0 <= c0 - 20 or w0 == 0 for c0, _, w0, _ in tiles)  # at least the asked-for context
        assert all(w1 >= c1 + 20 or w1 == n for _, c1, _, w1 in tiles)
        assert [c for t in tiles for c in t[:2]][::2] == list(range(0, n, 512))


def test_streamed_uint8_output_equals_the_float_path(device):
    """Predictor.uint8 quantizes tile by tile (no full-size float image): the same pixels."""
    from srkit.inference.predictor import Predictor, to_uint8
    torch.manual_seed(0)
    predict = Predictor(CARN_M().eval().to(device), tile=24, overlap=8)
    x = torch.rand(1, 3, 50, 61, device=device)
    assert (predict.uint8(x, 3) == to_uint8(predict(x, 3))).all()
