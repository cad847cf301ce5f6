"""Visual comparison figure from real outputs: HR crop, bicubic, and a model's SR (as the papers' figures).

    python scripts/make_figure.py --ckpt_path checkpoint/carn_m.pth --lr datasets/benchmark/Set14/x4/img_005_SRF_4_LR.png \
        --scale 4 --box 60 40 120 --out assets/comparison_carn_m_x4.png

``--box y x size`` is the crop in LR pixels. PSNR (Y, border = scale) of each full image is printed in the labels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from srkit.data import metrics
from srkit.api import load
from srkit.data.imageio import read_rgb8
from srkit.data.imresize import imresize
from srkit.inference.predictor import to_tensor, to_uint8


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", required=True)
    p.add_argument("--lr", type=Path, required=True, help="an LR image whose _HR partner sits beside it")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--box", type=int, nargs=3, default=[40, 40, 48], metavar=("Y", "X", "SIZE"))
    p.add_argument("--out", type=Path, default=Path("assets/comparison.png"))
    a = p.parse_args()
    lr = read_rgb8(a.lr)
    hr = read_rgb8(a.lr.with_name(a.lr.name.replace("_LR", "_HR")))
    up = load(a.ckpt_path, device="cpu")
    sr = to_uint8(up(to_tensor(lr, up.device), a.scale))
    bic = imresize(lr, a.scale)
    s, (y, x, n) = a.scale, a.box
    panels = [("HR", hr, None), ("bicubic (MATLAB)", bic, metrics.psnr(bic, hr, s)),
              (Path(a.ckpt_path).stem, sr, metrics.psnr(sr, hr, s))]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, (name, img, score) in zip(axes, panels):
        ax.imshow(img[y * s:(y + n) * s, x * s:(x + n) * s], interpolation="nearest")
        ax.set_title(name if score is None else f"{name}  {score:.2f} dB")
        ax.axis("off")
    fig.suptitle(f"{a.lr.name.replace('_LR.png', '')}, x{s} (PSNR of the whole image, Y channel)")
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=100)
    print(a.out)


if __name__ == "__main__":
    main()
