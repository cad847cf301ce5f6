"""overnet/sample.py end to end on CPU at x2/x3/x4 and a real scale; the real-scale path reduces exactly
to the authors' integer path."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from conftest import load_ref, run_dir
from overnet import OverNet, sample
from srkit.data import metrics
from srkit.data.benchmark import find_pairs, load_pair
from srkit.data.imageio import quantize, read_rgb8
from srkit.weights.load import load_model
from srkit.core.resize import bicubic_resize, sr_size


def _ckpt(tmp_path, name):
    path = tmp_path / f"{name}.pth.tar"
    torch.save(load_ref(f"{name}_random_io.pt")["checkpoint"], path)
    return path


def _independent_scores(net, folder, scale) -> list[float]:
    """Y-PSNR per image computed directly: the plain forward (checked against the authors' outputs in
    tests/test_families.py), rounding, the metric; nothing of the sampler's pipeline."""
    out = []
    for pair in find_pairs(folder, scale)[0]:
        hr, lr = load_pair(pair, scale)
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            sr = quantize(net(x, scale)[0].permute(1, 2, 0).numpy())
        out.append(metrics.psnr(sr, hr, math.ceil(scale)))
    return out


@pytest.mark.slow
def test_sample_scores_equal_an_independent_computation(tmp_path, benchmark_dir):
    ck = _ckpt(tmp_path, "overnet_x4")
    net, _ = load_model(str(ck))
    hr_only = tmp_path / "Set5HR"
    hr_only.mkdir()
    for p in sorted((benchmark_dir / "Set5" / "x4").glob("*_HR.png"))[:2]:
        shutil.copy(p, hr_only / p.name.replace("_SRF_4_HR", ""))
    out = tmp_path / "out"
    rc = sample.main(["--ckpt_path", str(ck), "--test_data_dir", str(benchmark_dir / "Set5"), "--scale", "2", "3", "4",
                      "--sample_dir", str(out), "--cpu", "--tile", "0", "--plain"])
    assert rc == 0
    rc = sample.main(["--ckpt_path", str(ck), "--test_data_dir", str(hr_only), "--scale", "2.5",
                      "--sample_dir", str(out / "real"), "--cpu", "--plain"])
    assert rc == 0
    res = json.loads((run_dir(out) / "summary.json").read_text())["results"]
    res += json.loads((run_dir(out / "real") / "summary.json").read_text())["results"]
    assert [r["scale"] for r in res] == [2, 3, 4, 2.5] and [r["images"] for r in res] == [5, 5, 5, 2]
    for r, folder in zip(res, [benchmark_dir / "Set5"] * 3 + [hr_only]):
        want = _independent_scores(net, folder, r["scale"])
        assert r["psnr"] == pytest.approx(sum(want) / len(want), abs=1e-9), r
    for s in (2, 3, 4):
        d = run_dir(out) / "Set5" / f"x{s}"
        for hr in (d / "HR").iterdir():
            lr = read_rgb8(benchmark_dir / "Set5" / f"x{s}" / hr.name.replace("_HR", "_LR"))
            sr = read_rgb8(d / "SR" / hr.name.replace("_HR", "_SR"))
            assert sr.shape == (lr.shape[0] * s, lr.shape[1] * s, 3) == read_rgb8(hr).shape


def test_scale_outside_model_is_refused(tmp_path, capsys):
    ck = _ckpt(tmp_path, "overnet_x2")
    assert sample.main(["--ckpt_path", str(ck), "--scale", "3.5"]) == 2
    assert "serves 1 < s <= 3" in capsys.readouterr().err
    assert sample.main(["--ckpt_path", str(ck), "--upscale", "5"]) == 2
    assert "--upscale 5 (checkpoint has 3)" in capsys.readouterr().err


def test_real_scale_path_reduces_to_the_authors_integer_path():
    torch.manual_seed(0)
    for u in (3, 4, 5):
        for s in range(2, u):
            feat = torch.randn(1, 8, u * 13, u * 17)
            authors = F.interpolate(feat, (13 * s, 17 * s), mode="bicubic", align_corners=False)
            assert torch.equal(bicubic_resize(feat, (13 * s, 17 * s), s / u), authors)
    ref = load_ref("overnet_x4_random_io.pt")
    net = OverNet(upscale=5).eval()
    net.load_state_dict(ref["checkpoint"]["model_state_dict"])
    with torch.no_grad():
        for s in (2, 3, 4):
            assert torch.equal(net(ref["input"], float(s)), net(ref["input"], s))
            assert torch.equal(net(ref["input"], s + 1e-12), net(ref["input"], s))


def test_real_scale_output_size():
    assert sr_size(23, 2.5) == 58 and sr_size(29, 3.7) == 107 and sr_size(10, 1.5) == 15
    net = OverNet(upscale=4).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 23, 29), 3.7).shape == (1, 3, 85, 107)


def test_the_deterministic_bicubic_gradient_equals_pytorchs(device):
    """Training on CUDA takes the bicubic resize's gradient as matrix products (CUDA's own backward adds with
    atomics: two runs differ in rounding, and a resumed run would not be bit-exact). It is the same gradient."""
    from srkit.core.resize import _DeterministicBicubic, bicubic_resize
    for hw, out, f in (((7, 9), (21, 27), 3.0), ((6, 5), (15, 13), 2.5), ((5, 7), (8, 11), 5 / 3)):
        x = torch.rand(2, 3, *hw, dtype=torch.float64, device=device, requires_grad=True)
        g = torch.rand(2, 3, *out, dtype=torch.float64, device=device)
        torch._C._nn.upsample_bicubic2d(x, list(out), False, f, f).backward(g)
        native, x.grad = x.grad.clone(), None
        y = _DeterministicBicubic.apply(x, out, f)
        y.backward(g)
        assert torch.equal(y, bicubic_resize(x.detach(), out, f))  # the forward is PyTorch's
        assert (x.grad - native).abs().max().item() <= 1e-12
