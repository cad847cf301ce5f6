"""How much the authors' truncating save_image (``.mul(255).clamp(0,255).byte()``) costs versus rounding.

    python scripts/measure_truncation.py --ckpt_path checkpoint/carn_m.pth --test_data_dir datasets/benchmark/Set5 --scale 2
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from srkit.weights.load import load_model
from srkit.data import metrics
from srkit.data.benchmark import find_pairs, load_pair
from srkit.inference.predictor import to_tensor, to_uint8


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", required=True)
    p.add_argument("--test_data_dir", required=True)
    p.add_argument("--scale", type=int, default=2)
    a = p.parse_args()
    net, _ = load_model(a.ckpt_path)
    rounded, truncated = [], []
    for pair in find_pairs(Path(a.test_data_dir), a.scale)[0]:
        hr, lr = load_pair(pair, a.scale)
        with torch.no_grad():
            sr = net(to_tensor(lr, torch.device("cpu")), a.scale)
        trunc = sr[0].mul(255).clamp(0, 255).byte().permute(1, 2, 0).numpy()
        rounded.append(metrics.psnr(to_uint8(sr), hr, a.scale))
        truncated.append(metrics.psnr(trunc, hr, a.scale))
    r, t = float(np.mean(rounded)), float(np.mean(truncated))
    print(f"{Path(a.test_data_dir).name} x{a.scale}: rounded {r:.3f} dB, truncated {t:.3f} dB, difference {r - t:.3f} dB")


if __name__ == "__main__":
    main()
