"""PSNR / SSIM under the MATLAB protocol the papers use.

Protocol: SR and HR as uint8 RGB; Y = round(16 + (65.481 R + 128.553 G + 24.966 B) / 255) (MATLAB
``rgb2ycbcr`` on uint8); ``crop_border`` pixels removed on each side (= scale); PSNR with peak 255;
SSIM of Wang et al. (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid region), averaged.
``test_y_channel=False`` scores RGB instead (SSIM averaged over channels).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 RGB -> float64 HxW Y in [16, 235], rounded like MATLAB's uint8 ``rgb2ycbcr``."""
    x = img.astype(np.float64)
    y = 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0
    return np.floor(y + 0.5)


def _prepare(sr: np.ndarray, hr: np.ndarray, crop_border: int, test_y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ in size")
    if sr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise TypeError("metrics are defined on uint8 images (quantize SR first)")
    if test_y_channel:
        a, b = rgb_to_y(sr)[..., None], rgb_to_y(hr)[..., None]
    else:
        a, b = sr.astype(np.float64), hr.astype(np.float64)
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image of {sr.shape[:2]} is empty after cropping a border of {crop_border}")
    return a, b


def psnr(sr: np.ndarray, hr: np.ndarray, crop_border: int, test_y_channel: bool = True) -> float:
    a, b = _prepare(sr, hr, crop_border, test_y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(g ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int, test_y_channel: bool = True) -> float:
    """Mean SSIM (Wang et al. 2004), computed with separable float64 convolutions over all channels at once."""
    a, b = _prepare(sr, hr, crop_border, test_y_channel)
    if min(a.shape[:2]) < 11:
        raise ValueError(f"image of {a.shape[:2]} after cropping is smaller than the 11x11 SSIM window")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[:, None]  # (C,1,H,W)
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))[:, None]
    g = _gaussian_window()
    gh, gw = g.view(1, 1, 11, 1), g.view(1, 1, 1, 11)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=0)
    f = F.conv2d(F.conv2d(stack, gh), gw)
    c = x.shape[0]
    mu_x, mu_y, xx, yy, xy = f[:c], f[c:2 * c], f[2 * c:3 * c], f[3 * c:4 * c], f[4 * c:]
    s_x, s_y, s_xy = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    m = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (s_x + s_y + c2))
    return float(m.mean())
