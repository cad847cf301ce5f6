"""Train OverNet on DIV2K with AdamP (flags and defaults as in the authors' code), e.g.

    python overnet/train.py --scale 2 --upscale 3 --ckpt_name overnet_x2 --train_data_path datasets/DIV2K_train.h5
    python overnet/train.py --scale 0 --ckpt_name overnet_ms    # multi-scale loss, upscale 5

``--scale 0`` is the paper's multi-scale loss: one model with ``--upscale 5``; every step crops an LR/HR
batch at each of x2, x3 and x4 (independent patches, same images' LR groups) and the loss is
L(x2) + L(x3) + L(x4), each the chosen loss (L1) between the model's output at that scale and its HR.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402
from adamp import AdamP  # noqa: E402

from overnet import spec  # noqa: E402
from srkit.trainer import Trainer, add_train_args  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=2, choices=[0, 2, 3, 4], help="0 = multi-scale loss over x2/x3/x4")
    p.add_argument("--upscale", type=int, default=None, help="overscaling factor (default scale+1; 5 for --scale 0)")
    p.add_argument("--group", type=int, default=4)
    add_train_args(p, lr=1e-3, max_steps=600_000, decay=150_000)
    cfg = p.parse_args(argv)
    if cfg.upscale is None:
        cfg.upscale = 5 if cfg.scale == 0 else cfg.scale + 1
    if cfg.scale == 0 and cfg.upscale < 5 or cfg.scale and cfg.upscale <= cfg.scale:
        p.error(f"--upscale {cfg.upscale} must exceed every training scale")
    return cfg


def main(argv: list[str] | None = None) -> list[float]:
    cfg = parse_args(argv)
    multi = cfg.scale == 0
    torch.manual_seed(cfg.seed)  # reproducible initial weights
    net = spec.build(upscale=cfg.upscale, group=cfg.group)
    scales = (2, 3, 4) if multi else (cfg.scale,)
    trainer = Trainer(net, cfg, scales, lambda params, lr: AdamP(params, lr), all_scales=multi)
    return trainer.train()


if __name__ == "__main__":
    main()
