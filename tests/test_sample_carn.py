"""carn/sample.py: the released CARN-M reproduces the authors' scores; bad inputs are reported and skipped."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from carn import sample
from conftest import ROOT, load_ref, shared_path, run_dir
from srkit.data.imageio import read_rgb8
from srkit.weights.load import load_model
from srkit.core.tolerances import HALF_MAX_LEVELS, HALF_PSNR_DB, PSNR_REPRO_DB, SSIM_REPRO


def _reference_rows() -> list[dict]:
    text = shared_path("reference", "released_carn_m_official_code.csv").read_text().splitlines()
    return list(csv.DictReader(line for line in text if not line.startswith("#")))


@pytest.mark.slow
def test_released_carn_m_reproduces_official_scores(tmp_path, carn_m_released, benchmark_dir):
    out = tmp_path / "sample"
    cmd = [sys.executable, str(ROOT / "carn" / "sample.py"), "--model", "carn_m", "--ckpt_path", str(carn_m_released),
           "--test_data_dir", str(benchmark_dir / "Set5"), str(benchmark_dir / "Set14"), "--scale", "2", "3", "4",
           "--sample_dir", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    got = {(x["dataset"], int(x["scale"])): x for x in json.loads((run_dir(out) / "summary.json").read_text())["results"]}
    checked = 0
    for row in _reference_rows():
        key = (row["dataset"], int(row["scale"]))
        if key not in got:
            assert row["dataset"] == "B100"  # not shipped
            continue
        assert got[key]["images"] == int(row["images"])
        assert abs(got[key]["psnr"] - float(row["psnr"])) <= PSNR_REPRO_DB, (key, got[key]["psnr"], row["psnr"])
        assert abs(got[key]["ssim"] - float(row["ssim"])) <= SSIM_REPRO, (key, got[key]["ssim"], row["ssim"])
        checked += 1
    assert checked == 6
    run = json.loads((run_dir(out) / "summary.json").read_text())["runs"][-1]  # as typed, from the repository root
    assert run["command"].startswith("carn/sample.py --model carn_m --ckpt_path ")
    # the metrics are computed on exactly the PNGs written
    sr_png = run_dir(out) / "Set5" / "x4" / "SR" / "img_001_SRF_4_SR.png"
    hr_png = run_dir(out) / "Set5" / "x4" / "HR" / "img_001_SRF_4_HR.png"
    from srkit.data import metrics
    per_image = {r["image"]: float(r["psnr"]) for r in csv.DictReader(open(run_dir(out) / "Set5" / "x4" / "metrics.csv"))}
    assert metrics.psnr(read_rgb8(sr_png), read_rgb8(hr_png), 4) == pytest.approx(per_image["img_001_SRF_4_HR.png"])


def _bad_folder(root, good_src):
    root.mkdir()
    Image.open(good_src).save(root / "good.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    rgb = np.asarray(Image.open(good_src).convert("RGB"))[:40, :40]
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]), "RGBA").save(root / "rgba.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(root / "sixteen.png")
    Image.fromarray(rgb).convert("P").save(root / "palette.png")
    Image.fromarray(rgb[:6, :6]).save(root / "tiny.png")


def test_bad_inputs_are_named_and_the_rest_completes(tmp_path, carn_m_released, benchmark_dir):
    bad = tmp_path / "mixed"
    _bad_folder(bad, benchmark_dir / "Set5" / "x2" / "img_002_SRF_2_HR.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "carn" / "sample.py"), "--ckpt_path", str(carn_m_released),
                        "--test_data_dir", str(bad), str(empty), str(tmp_path / "missing"), "--scale", "2",
                        "--sample_dir", str(out)], capture_output=True, text=True)
    assert r.returncode == 1
    err = r.stderr
    assert "corrupt.png: unreadable or corrupt image" in err
    assert "rgba.png: mode 'RGBA' (RGB with alpha)" in err
    assert "sixteen.png: mode 'I;16' (16-bit grayscale)" in err
    assert "palette.png: mode 'P' (palette)" in err
    assert "tiny.png: too small to score" in err
    assert f"{empty}: empty" in err
    assert f"{tmp_path / 'missing'}: no such benchmark folder" in err
    rows = list(csv.DictReader(open(run_dir(out) / "mixed" / "x2" / "metrics.csv")))
    assert [x["image"] for x in rows] == ["good.png"] and float(rows[0]["psnr"]) > 25
    assert (run_dir(out) / "mixed" / "x2" / "SR" / "good.png").is_file()
    summary = json.loads((run_dir(out) / "summary.json").read_text())
    assert summary["results"][0]["failed"] == 5 and len(summary["errors"]) == 7


def test_wrong_checkpoints_are_refused_with_the_fitting_flags(tmp_path, carn_m_released, capsys):
    ov = tmp_path / "overnet.pth"
    torch.save(load_ref("overnet_x2_random_io.pt")["checkpoint"], ov)
    assert sample.main(["--ckpt_path", str(ov), "--test_data_dir", str(tmp_path)]) == 2
    assert "holds OverNet weights, not CARN / CARN-M: use overnet/sample.py" in capsys.readouterr().err
    assert sample.main(["--ckpt_path", str(carn_m_released), "--model", "carn", "--group", "1"]) == 2
    err = capsys.readouterr().err
    assert "--model carn (checkpoint has carn_m)" in err and "It fits: --model carn_m --group 4" in err
    assert sample.main(["--ckpt_path", str(carn_m_released), "--reduce_upsample"]) == 2
    assert "--reduce_upsample True (checkpoint has False)" in capsys.readouterr().err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"no")
    assert sample.main(["--ckpt_path", str(junk)]) == 2
    assert "not a loadable PyTorch checkpoint" in capsys.readouterr().err


def test_dataparallel_prefix_and_partial_mismatch(tmp_path, carn_m_released):
    from srkit.core.checkpoint import CheckpointError, load_weights
    from carn import CARN_M
    sd = torch.load(carn_m_released, map_location="cpu", weights_only=True)
    p = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in sd.items()}, p)
    net, arch = load_model(str(p))
    assert arch["model"] == "carn_m" and arch["group"] == 4 and arch["multi_scale"]
    sd.pop("exit.bias")
    with pytest.raises(CheckpointError, match="missing keys \\(1\\): exit.bias"):
        load_weights(CARN_M(), sd, "x")


def test_half_precision_is_opt_in_and_close(tmp_path, carn_m_released, benchmark_dir, capsys, device):
    """--half (bf16 on CPU, fp16 on CUDA) changes outputs by a few grey levels at most, not the score."""
    from srkit.data import metrics
    from srkit.data.benchmark import find_pairs, load_pair
    from srkit.inference.predictor import Predictor, to_tensor, to_uint8

    net, _ = load_model(str(carn_m_released))
    net = net.to(device)
    full, half = Predictor(net, tile=0), Predictor(net, tile=0, half=True)
    assert half.dtype == (torch.bfloat16 if device.type == "cpu" else torch.float16) and full.dtype is None
    hr, lr = load_pair(find_pairs(benchmark_dir / "Set5", 2)[0][1], 2)  # img_002: a 144x144 LR
    x = to_tensor(lr, device)
    a, b = to_uint8(full(x, 2)), to_uint8(half(x, 2))
    diff = np.abs(a.astype(int) - b)
    assert 0 < diff.max() <= HALF_MAX_LEVELS and diff.mean() < 0.5
    assert abs(metrics.psnr(a, hr, 2) - metrics.psnr(b, hr, 2)) < HALF_PSNR_DB
    assert sample.main(["--ckpt_path", str(carn_m_released), "--half", "--plain",
                        "--test_data_dir", str(benchmark_dir / "Set5"), "--sample_dir", str(tmp_path)]) == 2
    assert "runs on the fast path; drop --plain" in capsys.readouterr().err


@pytest.mark.slow
def test_self_ensemble_through_the_cli_beats_the_single_pass(tmp_path, carn_m_released, benchmark_dir):
    """--self_ensemble on the released CARN-M: every Set5 x4 image scores at least as well as one pass, and the
    mean gains (the x8 geometric ensemble of the EDSR/CARN papers)."""
    runs = {}
    for name, extra in (("single", []), ("x8", ["--self_ensemble"])):
        out = tmp_path / name
        assert sample.main(["--ckpt_path", str(carn_m_released), "--test_data_dir", str(benchmark_dir / "Set5"),
                            "--scale", "4", "--sample_dir", str(out), "--no_save", *extra]) == 0
        runs[name] = json.loads((run_dir(out) / "summary.json").read_text())
    assert runs["x8"]["runs"][-1]["config"]["self_ensemble"] is True
    single, x8 = runs["single"]["results"][0]["psnr"], runs["x8"]["results"][0]["psnr"]
    assert x8 - single > 0.05, (single, x8)
