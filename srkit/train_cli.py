"""The train command for every model family (``carn/train.py``, ``overnet/train.py`` and ``srkit-train``).

    srkit-train --family carn --model carn_m --scale 0 --ckpt_name carn_m --train_data_path datasets/DIV2K_train.h5
    torchrun --nproc_per_node=4 carn/train.py --model carn --scale 0 --ckpt_name carn   # several GPUs (DDP)

Flags and defaults are the authors' (the family's recipe: optimizer, learning rate, steps, decay). The
architecture flags a model has a per-model default for (e.g. ``--group``) follow the chosen model when
omitted. A run writes to ``<ckpt_dir>/<ckpt_name>/`` (see srkit.trainer).
"""
from __future__ import annotations

import argparse
import sys

from srkit import registry
from srkit.checkpoint import CheckpointError
from srkit.registry import Family
from srkit.sample_cli import add_arch_args, arch_flags_given
from srkit.train_data import TrainDataError
from srkit.trainer import LOSSES, Diverged, Stopped, Trainer, TrainingError
from srkit.zoo import DownloadError


def add_train_args(p: argparse.ArgumentParser, family: Family) -> None:
    """The flags every family trains with (names as in the authors' code, defaults from the family's recipe)."""
    r = family.recipe
    p.add_argument("--scale", type=int, default=2, choices=[0, *family.train_scales],
                   help=f"training scale; 0 = multi-scale ({', '.join(f'x{s}' for s in family.train_scales)})")
    p.add_argument("--ckpt_name", default=None, help="run name: checkpoints and logs go to <ckpt_dir>/<ckpt_name>/ "
                   "(default: the model's name, e.g. carn_m or overnet_x2; <model>_multiscale for --scale 0)")
    p.add_argument("--ckpt_dir", default="checkpoint")
    p.add_argument("--train_data_path", default="datasets/DIV2K_train.h5")
    p.add_argument("--valid_data_path", default="datasets/benchmark/Set5", help="validation benchmark folder")
    p.add_argument("--print_interval", type=int, default=1000, help="validate (and checkpoint) every N steps")
    p.add_argument("--save_interval", type=int, default=1000, help="checkpoint every N steps")
    p.add_argument("--patch_size", type=int, default=64, help="LR patch size")
    p.add_argument("--batch_size", type=int, default=64,
                   help="the global batch of one optimizer step, split evenly over the torchrun processes")
    p.add_argument("--grad_accum", type=int, default=1,
                   help="split each process's share of the batch into N micro-batches (less memory, same "
                        "gradient): one process with --grad_accum N retraces an N-process run")
    p.add_argument("--max_steps", type=int, default=r.max_steps)
    p.add_argument("--decay", type=int, default=r.decay, help="halve the learning rate every N steps")
    p.add_argument("--lr", type=float, default=r.lr)
    p.add_argument("--clip", type=float, default=10.0, help="gradient-norm clipping")
    p.add_argument("--loss_fn", choices=sorted(LOSSES), default=r.loss)
    p.add_argument("--num_gpu", type=int, default=1, help="kept for the authors' scripts: launch several "
                   "processes with torchrun --nproc_per_node=N instead")
    p.add_argument("--resume", nargs="?", const="yes", choices=["yes", "auto", "no"], default=None,
                   help="continue from the newest intact checkpoint of this run (yes); auto: resume if there is "
                        "one, else start (the default under torchrun, so restarts continue by themselves); no: "
                        "start, refusing a folder that holds a run (the default otherwise)")
    p.add_argument("--stop_after", type=int, default=0,
                   help="run at most N steps in this launch, checkpoint and exit (time-limited jobs; 0: no limit)")
    p.add_argument("--dist_timeout", type=float, default=300,
                   help="seconds a process waits for its peers (set-up and collectives) before failing")
    p.add_argument("--pretrained", default=None, help="initial weights: a checkpoint path or a manifest name")
    p.add_argument("--keep", type=int, default=3, help="how many step checkpoints to keep")
    p.add_argument("--weights_format", choices=["pth", "safetensors"], default="pth",
                   help="file type of best.* and <ckpt_name>.* (both carry the architecture flags)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="data-loading processes (0: load in this process)")
    p.add_argument("--amp", choices=["fp16", "bf16"], default=None, help="mixed precision (CUDA only)")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--debug_sync", action="store_true", help="record a parameter digest per step and rank")
    p.add_argument("--debug_float64", action="store_true",
                   help="train in float64 (slow): shows that a distributed set-up computes one process's math, "
                        "which float32 cannot, as Adam amplifies its rounding noise on small batches")


def parse_args(argv: list[str] | None, family: Family | None,
               description: str | None = None) -> tuple[Family, argparse.Namespace]:
    if family is None:  # srkit-train: the family is a flag
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--family", choices=[f.name for f in registry.families()])
        known, _ = pre.parse_known_args(argv)
        if known.family is None:
            p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
            p.add_argument("--family", required=True, choices=[f.name for f in registry.families()])
            p.parse_args(argv)  # prints usage and exits
        family = registry.get(known.family)
    p = argparse.ArgumentParser(description=description or __doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if description is None:
        p.add_argument("--family", choices=[family.name], default=family.name)
    add_arch_args(p, [family])
    add_train_args(p, family)
    cfg = p.parse_args(argv)
    for flag in ("print_interval", "save_interval", "keep", "max_steps", "decay", "batch_size", "patch_size",
                 "grad_accum"):
        if getattr(cfg, flag) < 1:
            p.error(f"--{flag} must be at least 1, not {getattr(cfg, flag)}")
    try:
        cfg.arch = family.train_arch(cfg.scale, arch_flags_given(cfg, [family]))
    except ValueError as e:
        p.error(str(e))
    if cfg.ckpt_name is None:
        cfg.ckpt_name = family.run_name(cfg.arch) if cfg.scale else f"{cfg.arch.get('model', family.name)}_multiscale"
    return family, cfg


def run(argv: list[str] | None = None, family: Family | str | None = None, description: str | None = None,
        handle_signals: bool = False) -> list[float]:
    """Train as the command line says; returns the loss of every step run. Raises on bad set-ups, divergence
    and (with ``handle_signals``) stop signals."""
    fam = registry.get(family) if isinstance(family, str) else family
    fam, cfg = parse_args(argv, fam, description)
    scales = fam.train_scales if cfg.scale == 0 else (cfg.scale,)
    return Trainer(fam, cfg.arch, scales, cfg).train(handle_signals=handle_signals)


def main(argv: list[str] | None = None, family: Family | str | None = None, description: str | None = None) -> int:
    """Exit status: 0 done; 2 a set-up the run cannot start from; 3 diverged; 128 + N stopped by signal N
    (a checkpoint of the step reached was written)."""
    try:
        run(argv, family, description, handle_signals=True)
    except Stopped as e:
        print(str(e), file=sys.stderr)
        return 128 + e.signum
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (TrainingError, CheckpointError, TrainDataError, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
