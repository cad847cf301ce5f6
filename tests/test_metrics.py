"""Metrics: analytic PSNR, SSIM against scikit-image's independent implementation, Y conversion."""
from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from srkit.data import metrics


def test_psnr_known_value():
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr.copy()
    sr[..., 1] += 10  # Y changes by round(128.553 * 10 / 255) = 5 everywhere
    y_diff = metrics.rgb_to_y(sr) - metrics.rgb_to_y(hr)
    assert np.all(y_diff == 5)
    assert metrics.psnr(sr, hr, crop_border=2) == pytest.approx(10 * math.log10(255 ** 2 / 25))
    assert metrics.psnr(hr, hr, 2) == math.inf


def test_ssim_matches_skimage():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    ours = metrics.ssim(sr, hr, crop_border=3)
    ya, yb = metrics.rgb_to_y(sr)[3:-3, 3:-3], metrics.rgb_to_y(hr)[3:-3, 3:-3]
    ref = structural_similarity(ya, yb, data_range=255, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ours == pytest.approx(ref, abs=1e-6)
    assert metrics.ssim(hr, hr, 3) == pytest.approx(1.0)


def test_rgb_option_and_errors():
    hr = np.zeros((30, 30, 3), np.uint8)
    sr = hr.copy()
    sr[..., 0] = 255
    assert metrics.psnr(sr, hr, 2, test_y_channel=False) == pytest.approx(10 * math.log10(3), abs=1e-9)
    with pytest.raises(ValueError, match="differ in size"):
        metrics.psnr(sr[:-1], hr, 2)
    with pytest.raises(TypeError):
        metrics.psnr(sr.astype(np.float32), hr, 2)
