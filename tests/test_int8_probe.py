"""scripts/int8_probe.py: int8 is calibrated on photographs that are none of the test images, on the same
patches every run, and its section of docs/performance.md is rewritten in place (and kept by perf_page.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from srkit.data.imageio import read_rgb8

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return _script("int8_probe")


def _thumb(img: np.ndarray) -> np.ndarray:
    """A 24x24 grey thumbnail as a zero-mean unit vector: near-duplicates (crops, flips aside) correlate near 1."""
    t = np.asarray(Image.fromarray(img).convert("L").resize((24, 24), Image.BILINEAR), np.float64).ravel()
    t -= t.mean()
    return t / (np.linalg.norm(t) + 1e-12)


def test_calibration_photos_are_no_test_image(probe, benchmark_dir):
    photos = {name: img for name, img in probe.calibration_photos().items()}
    thumbs = {name: (_thumb(img), _thumb(np.ascontiguousarray(img[:, ::-1]))) for name, img in photos.items()}
    hrs = sorted(benchmark_dir.glob("Set5/x*/*_HR.png")) + sorted(benchmark_dir.glob("Set14/x*/*_HR.png"))
    assert len(hrs) == 3 * (5 + 14)
    for path in hrs:
        hr = read_rgb8(path)
        t = _thumb(hr)
        smaller = np.asarray(Image.fromarray(hr).resize((hr.shape[1] * 9 // 10, hr.shape[0] * 9 // 10), Image.BICUBIC))
        assert float(t @ _thumb(smaller)) > 0.97  # the check sees a near-duplicate
        for name, (plain, flipped) in thumbs.items():
            assert photos[name].shape != hr.shape or not np.array_equal(photos[name], hr)
            assert max(float(t @ plain), float(t @ flipped)) < 0.9, f"{path.name} looks like {name}"


def test_calibration_patches_are_fixed_lr_patches(probe):
    a, b = probe.calibration_patches(3, count=5, lr_side=12), probe.calibration_patches(3, count=5, lr_side=12)
    assert [tuple(p.shape) for p in a] == [(1, 3, 12, 12)] * 5
    assert all(float(p.min()) >= 0 and float(p.max()) <= 1 for p in a)
    assert all(bool((p == q).all()) for p, q in zip(a, b))  # reruns calibrate on the same patches
    assert len({p.numpy().tobytes() for p in a}) == 5


def test_section_is_replaced_in_place_and_kept_by_the_page_generator(probe, tmp_path):
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\n## other\n\ntext\n")
    probe.write_section(f"{probe.BEGIN}\n## int8\n\nfirst\n{probe.END}\n", page)
    probe.write_section(f"{probe.BEGIN}\n## int8\n\nsecond\n{probe.END}\n", page)
    text = page.read_text()
    assert text.count(probe.BEGIN) == 1 and "second" in text and "first" not in text
    assert text.startswith("# Performance\n\n## other\n\ntext\n")
    kept = _script("perf_page").kept_sections(page)
    assert kept.strip() == text[text.index(probe.BEGIN):].strip()
