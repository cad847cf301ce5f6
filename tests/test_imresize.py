"""imresize against MATLAB itself: the SelfExSR Set5/Set14 LR images were made by MATLAB's
imresize(HR, 1/s, 'bicubic'). Their HR files were cropped from the originals after the LR was made, so the
outermost LR pixels saw HR pixels that are not in the files; we score the interior (1 LR pixel border off)."""
from __future__ import annotations

import numpy as np

from srkit.data.imageio import read_rgb8
from srkit.data.imresize import imresize


def test_matches_matlab_on_benchmark_lr(benchmark_dir):
    exact = total = 0
    worst = 0
    inner_exact = inner_total = 0
    for hr_path in sorted(benchmark_dir.glob("*/x*/*_HR.png")):
        s = int(hr_path.parent.name[1:])
        hr = read_rgb8(hr_path)
        lr = read_rgb8(hr_path.with_name(hr_path.name.replace("_HR", "_LR")))
        got = imresize(hr, 1 / s)
        assert got.shape == lr.shape and got.dtype == np.uint8
        d = np.abs(got.astype(int) - lr.astype(int))
        inner = d[1:-1, 1:-1]
        worst = max(worst, int(inner.max()))
        exact += int((inner == 0).sum())
        total += inner.size
        inner_exact += int((d[2:-2, 2:-2] == 0).sum())
        inner_total += d[2:-2, 2:-2].size
    assert worst <= 1
    assert exact / total >= 0.99
    assert inner_exact == inner_total  # 2 px in from the border: identical to MATLAB


def test_upscale_and_float_input():
    img = (np.arange(64, dtype=np.float64).reshape(8, 8) / 63.0)
    up = imresize(img, 2)
    assert up.shape == (16, 16) and up.dtype == np.float64
    const = np.full((9, 7, 3), 77, np.uint8)
    assert (imresize(const, 1 / 3) == 77).all()  # weights sum to 1
