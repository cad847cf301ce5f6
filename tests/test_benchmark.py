"""Benchmark loader (three layouts, pairing by name, clear errors) and the preparation command."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from srkit.cli import prepare_benchmark
from srkit.data.benchmark import DatasetError, find_pairs, load_pair
from srkit.data.imageio import ImageError
from srkit.data.imresize import imresize


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _rand(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_layout_a_pairs_by_name(tmp_path):
    d = tmp_path / "Set" / "x2"
    for name, seed in [("b", 1), ("a", 2)]:
        hr = _rand(20, 24, seed)
        _png(d / f"{name}_HR.png", hr)
        _png(d / f"{name}_LR.png", imresize(hr, 0.5))
    pairs, layout = find_pairs(tmp_path / "Set", 2)
    assert layout == "a" and [p.name for p in pairs] == ["a_HR.png", "b_HR.png"]
    assert all(p.lr.name == p.name.replace("_HR", "_LR") for p in pairs)
    hr, lr = load_pair(pairs[0], 2)
    assert hr.shape == (20, 24, 3) and lr.shape == (10, 12, 3)


def test_missing_partner_and_size_mismatch_name_the_file(tmp_path):
    d = tmp_path / "Set" / "x2"
    _png(d / "a_HR.png", _rand(20, 20))
    _png(d / "a_LR.png", _rand(10, 10))
    _png(d / "b_HR.png", _rand(20, 20))
    with pytest.raises(DatasetError, match="b_HR.png: no LR partner"):
        find_pairs(tmp_path / "Set", 2)
    (d / "b_HR.png").unlink()
    _png(d / "a_LR.png", _rand(9, 10))
    pairs, _ = find_pairs(tmp_path / "Set", 2)
    with pytest.raises(ImageError, match="a_LR.png: LR 10x9 times 2 is 20x18"):
        load_pair(pairs[0], 2)


def test_layout_b_div2k(tmp_path):
    hr = _rand(24, 36)
    _png(tmp_path / "DIV2K_valid_HR" / "0801.png", hr)
    _png(tmp_path / "DIV2K_valid_LR_bicubic" / "X3" / "0801x3.png", imresize(hr, 1 / 3))
    pairs, layout = find_pairs(tmp_path, 3)
    assert layout == "b" and pairs[0].lr.name == "0801x3.png"
    with pytest.raises(DatasetError, match="X2: missing"):
        find_pairs(tmp_path, 2)


def test_layout_c_hr_only_crops_and_makes_lr(tmp_path):
    _png(tmp_path / "img.png", _rand(23, 31))
    gray = np.random.default_rng(3).integers(0, 256, (22, 22), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    pairs, layout = find_pairs(tmp_path, 3)
    assert layout == "c"
    by = {p.name: p for p in pairs}
    hr, lr = load_pair(by["img.png"], 3)
    assert hr.shape == (21, 30, 3) and lr.shape == (7, 10, 3)
    assert np.array_equal(lr, imresize(hr, 1 / 3))
    hr, lr = load_pair(by["gray.png"], 2.5)  # real scale: HR cropped to a multiple of 5 -> LR 8x8
    assert hr.shape == (20, 20, 3) and lr.shape == (8, 8, 3)
    assert np.array_equal(hr[..., 0], hr[..., 2])  # grayscale read as RGB


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match="no such benchmark folder"):
        find_pairs(tmp_path / "nope", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        find_pairs(tmp_path / "empty", 2)


def test_prepare_benchmark_command(tmp_path, benchmark_dir):
    src = tmp_path / "hr"
    src.mkdir()
    for p in sorted((benchmark_dir / "Set5" / "x2").glob("*_HR.png"))[:2]:
        shutil.copy(p, src / p.name.replace("_SRF_2_HR", ""))
    (src / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "bench"
    assert prepare_benchmark.main([str(src), "--out", str(out), "--scales", "2", "3"]) == 1  # broken.png reported
    pairs, layout = find_pairs(out, 3)
    assert layout == "a" and len(pairs) == 2
    hr, lr = load_pair(pairs[0], 3)
    assert np.array_equal(lr, imresize(hr, 1 / 3))
