"""Upscale anything (every odd image mode, no HR) and the three-line Python API."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from carn import sample


@pytest.fixture(scope="module")
def photo(benchmark_dir):
    return np.asarray(Image.open(benchmark_dir / "Set5" / "x4" / "img_002_SRF_4_LR.png").convert("RGB"))[:24, :30]


def _modes(photo) -> dict[str, Image.Image]:
    rgb = Image.fromarray(photo)
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 30, dtype=np.uint8), (24, 1))))
    pal_t = rgb.convert("P")
    pal_t.info["transparency"] = 0
    return {"rgb.png": rgb, "gray.png": rgb.convert("L"), "rgba.png": rgba, "la.png": rgba.convert("LA"),
            "palette.png": rgb.convert("P"), "palette_t.png": pal_t,
            "gray16.png": Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257),
            "photo.jpg": rgb, "bw.png": rgb.convert("1"), "cmyk.jpg": rgb.convert("CMYK"), "tiny.png": rgb.crop((0, 0, 2, 1))}


EXPECTED_MODE = {"rgb.png": "RGB", "gray.png": "L", "rgba.png": "RGBA", "la.png": "LA", "palette.png": "RGB",
                 "palette_t.png": "RGBA", "gray16.png": "I;16", "photo.jpg": "RGB", "bw.png": "L", "cmyk.jpg": "RGB",
                 "tiny.png": "RGB"}


@pytest.mark.parametrize("name", sorted(EXPECTED_MODE))
def test_upscale_every_mode(name, photo, tmp_path, carn_m_released):
    img = _modes(photo)[name]
    src = tmp_path / "in" / name
    src.parent.mkdir()
    img.save(src)
    out = tmp_path / "out"
    rc = sample.main(["--ckpt_path", str(carn_m_released), "--input", str(src), "--scale", "2", "--sample_dir",
                      str(out), "--cpu", "--tile", "16"])
    assert rc == 0
    sr = Image.open(out / "carn_m" / "upscaled" / "x2" / name)
    assert sr.size == (img.size[0] * 2, img.size[1] * 2)
    assert sr.mode == EXPECTED_MODE[name]
    if name in ("rgba.png", "la.png"):  # alpha kept: bicubic upscaled gradient, still increasing left to right
        a = np.asarray(sr.getchannel("A")).astype(int)
        assert a[:, 0].mean() < 20 and a[:, -1].mean() > 235
    if name == "gray16.png":  # 16-bit precision kept, content matches the 8-bit grayscale result closely
        a16 = np.asarray(sr).astype(np.float64) / 65535
        assert a16.max() > 0.2 and len(np.unique(np.asarray(sr))) > 256
    if name not in ("tiny.png", "bw.png"):  # (a dithered 1-bit image is not expected to survive SR pixelwise)
        lr = np.asarray(img.convert("RGB")).astype(float)
        up = np.asarray(sr.convert("RGB")).astype(float)[::2, ::2]
        assert np.abs(up - lr).mean() < 12  # SR resembles its input


def test_folder_with_a_broken_file(photo, tmp_path, carn_m_released, capsys):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(photo).save(d / "a.png")
    (d / "b.png").write_bytes(b"junk")
    rc = sample.main(["--ckpt_path", str(carn_m_released), "--input", str(d), "--scale", "3", "--sample_dir",
                      str(tmp_path / "o"), "--cpu"])
    assert rc == 1
    assert "b.png: unreadable or corrupt image" in capsys.readouterr().err
    assert Image.open(tmp_path / "o" / "carn_m" / "upscaled" / "x3" / "a.png").size == (90, 72)


def test_three_line_api(photo, tmp_path, carn_m_released, monkeypatch):
    from srkit import api, zoo
    shutil.copy(carn_m_released, tmp_path / "carn_m.pth")
    monkeypatch.setattr(api, "resolve", lambda n: zoo.resolve(n, tmp_path))
    monkeypatch.setattr("carn.sample.resolve", lambda n: zoo.resolve(n, tmp_path))
    # --- the three documented lines ---
    from srkit.api import load
    sr = load("carn_m")
    big = sr(Image.fromarray(photo), scale=2)
    # ----------------------------------
    assert big.size == (60, 48) and big.mode == "RGB"
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255
    t = sr(x, scale=4)
    assert t.shape == (1, 3, 96, 120)
    from carn import CARN_M
    ref = CARN_M().eval()
    ref.load_state_dict(torch.load(carn_m_released, map_location="cpu", weights_only=True))
    with torch.no_grad():
        want = ref(x, 2)
    got = torch.from_numpy(np.array(big)).permute(2, 0, 1)[None].float()
    assert (got - (want.clamp(0, 1) * 255)).abs().max() <= 0.5 + 1e-3  # rounding only
