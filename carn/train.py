"""Train CARN / CARN-M on DIV2K (flags and defaults as in the authors' code), e.g.

    python carn/train.py --model carn_m --group 4 --scale 0 --ckpt_name carn_m --train_data_path datasets/DIV2K_train.h5
    torchrun --nproc_per_node=4 carn/train.py --model carn --scale 0 --ckpt_name carn   # several GPUs

``--scale 0`` trains one multi-scale model: each step uses one scale drawn from {2, 3, 4}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: import from the repo root (carn/carn.py would shadow the package)
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from carn import spec  # noqa: E402
from srkit.trainer import Trainer, add_train_args  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["carn", "carn_m"], required=True)
    p.add_argument("--scale", type=int, default=2, choices=[0, 2, 3, 4], help="0 = multi-scale (x2, x3, x4)")
    p.add_argument("--group", type=int, default=1)
    p.add_argument("--reduce_upsample", action="store_true")
    add_train_args(p, lr=1e-4, max_steps=200_000, decay=150_000)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[float]:
    cfg = parse_args(argv)
    multi = cfg.scale == 0
    torch.manual_seed(cfg.seed)  # reproducible initial weights
    net = spec.build(cfg.model, scale=None if multi else cfg.scale, multi_scale=multi, group=cfg.group,
                     reduce_upsample=cfg.reduce_upsample)
    scales = (2, 3, 4) if multi else (cfg.scale,)
    trainer = Trainer(net, cfg, scales, lambda params, lr: torch.optim.Adam(params, lr))
    return trainer.train()


if __name__ == "__main__":
    main()
