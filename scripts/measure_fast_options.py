"""The numerical cost of each fast option, measured on the CPU against the authors' loop (float32).

    python scripts/measure_fast_options.py [--steps 100]

Trains CARN-M x2 (batch 4, patch 32, the toy DIV2K set of srkit.data.toy) for ``--steps`` steps with the
default loop, then with each of --amp bf16, --channels_last and --fused_adam alone, and prints per option
the largest weight difference from the default run, relative to the weights' largest magnitude, and the
mean |difference| of the per-step losses. (--cudnn_benchmark has no CPU effect; --amp fp16 is CUDA-only.)
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import div2h5
from srkit.cli.train import parse_args
from srkit.core import registry
from srkit.data.toy import make_toy_div2k
from srkit.training.trainer import Trainer


def train(h5: Path, out: Path, steps: int, extra: list[str]) -> tuple[list[float], dict]:
    argv = ["--model", "carn_m", "--scale", "2", "--ckpt_dir", str(out), "--ckpt_name", "run", "--train_data_path",
            str(h5), "--patch_size", "32", "--batch_size", "4", "--max_steps", str(steps), "--print_interval",
            str(steps), "--save_interval", str(steps), "--workers", "0", "--cpu", *extra]
    fam, cfg = parse_args(argv, registry.get("carn"))
    cfg.valid_data_path = None
    t = Trainer(fam, cfg)
    records = t.train()
    return [r.loss for r in records], {k: v.detach().float().clone() for k, v in t.model.state_dict().items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        div, _ = make_toy_div2k(root)
        h5 = root / "train.h5"
        div2h5.main(["--div2k", str(div), "--out", str(h5)])
        base_loss, base = train(h5, root / "base", a.steps, [])
        scale = max(v.abs().max().item() for v in base.values())
        print(f"CARN-M x2, {a.steps} steps, batch 4, patch 32, CPU; default run's final loss {base_loss[-1]:.5f}")
        for name, flags in [("--amp bf16", ["--amp", "bf16"]), ("--channels_last", ["--channels_last"]),
                            ("--fused_adam", ["--fused_adam"])]:
            loss, w = train(h5, root / name.strip("-"), a.steps, flags)
            diff = max((w[k] - base[k]).abs().max().item() for k in base)
            dl = sum(abs(x - y) for x, y in zip(loss, base_loss)) / len(loss)
            print(f"{name}: max weight difference {diff:.3g} ({diff / scale:.2g} of the largest weight); "
                  f"mean |loss difference| {dl:.3g}; final loss {loss[-1]:.5f}")


if __name__ == "__main__":
    main()
