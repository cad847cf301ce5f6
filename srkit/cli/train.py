"""The train command of every model family (each paper package's ``train.py``, and ``srkit-train``).

    srkit-train --family FAMILY --scale 0 --ckpt_name RUN --train_data_path datasets/DIV2K_train.h5
    torchrun --nproc_per_node=4 PACKAGE/train.py --scale 0 --ckpt_name RUN     # several GPUs (DDP)

Flags and defaults are the authors' (the family's recipe: optimizer, learning rate, steps, decay). The
architecture flags a model has a per-model default for (e.g. ``--group``) follow the chosen model when
omitted. ``--num_gpu N`` (the authors' flag) launches N processes where N GPUs exist, and elsewhere trains
the same global batch in one process in N micro-batches. A run writes to ``<ckpt_dir>/<ckpt_name>/`` (see
srkit.training).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

import torch

from srkit.core import registry
from srkit.core.checkpoint import CheckpointError
from srkit.core.fetch import DownloadError
from srkit.core.registry import Family
from srkit.cli.flags import add_arch_args, arch_flags_given, non_negative_int, positive_float, positive_int
from srkit.data.train_data import TrainDataError
from srkit.training.config import ZERO_GRAD, TrainConfig
from srkit.training.errors import Diverged, Stopped, TrainingError
from srkit.training.step import LOSSES
from srkit.training.trainer import STOP_SIGNALS, StepRecord, Trainer


def add_train_args(p: argparse.ArgumentParser, family: Family) -> None:
    """The flags every family trains with (names as in the authors' code, defaults from the family's recipe)."""
    r = family.recipe
    p.add_argument("--scale", type=int, default=2, choices=[0, *family.train_scales],
                   help=f"training scale; 0 = multi-scale ({', '.join(f'x{s}' for s in family.train_scales)})")
    p.add_argument("--ckpt_name", default=None, help="run name: checkpoints and logs go to <ckpt_dir>/<ckpt_name>/ "
                   "(default: the model's name; <model>_multiscale for --scale 0)")
    p.add_argument("--ckpt_dir", default="checkpoint")
    p.add_argument("--train_data_path", default="datasets/DIV2K_train.h5")
    p.add_argument("--valid_data_path", default="datasets/benchmark/Set5", help="validation benchmark folder")
    p.add_argument("--print_interval", type=positive_int, default=1000, help="validate (and checkpoint) every N steps")
    p.add_argument("--save_interval", type=positive_int, default=1000, help="checkpoint every N steps")
    p.add_argument("--patch_size", type=positive_int, default=64, help="LR patch size")
    p.add_argument("--batch_size", type=positive_int, default=64,
                   help="the global batch of one optimizer step, split evenly over the processes")
    p.add_argument("--grad_accum", type=positive_int, default=1,
                   help="split each process's share of the batch into N micro-batches (less memory, same "
                        "gradient): one process with --grad_accum N retraces an N-process run")
    p.add_argument("--max_steps", type=positive_int, default=r.max_steps)
    p.add_argument("--decay", type=positive_int, default=r.decay,
                   help="halve the learning rate every N steps (from step N + 1, as the authors' loops)")
    p.add_argument("--lr", type=positive_float, default=r.lr)
    p.add_argument("--clip", type=positive_float, default=10.0, help="gradient-norm clipping")
    p.add_argument("--loss_fn", choices=sorted(LOSSES), default=r.loss)
    p.add_argument("--num_gpu", type=positive_int, default=1,
                   help="the authors' flag: N processes with the same global batch where N GPUs exist; elsewhere "
                        "the same global batch in one process (N micro-batches)")
    p.add_argument("--zero_grad", choices=sorted(ZERO_GRAD), default="fill",
                   help="gradients between steps: fill (zero-filled, PyTorch 0.4's, as the released weights were "
                        "trained) or free (today's default: idle branches of a multi-scale model stay still)")
    p.add_argument("--channel_order", choices=["RGB", "BGR"], default="RGB",
                   help="BGR: train on BGR patches, as some authors' div2h5 (cv2) stored them (docs/training.md)")
    p.add_argument("--resume", nargs="?", const="yes", choices=["yes", "auto", "no"], default=None,
                   help="continue from the newest intact checkpoint of this run (yes); auto: resume if there is "
                        "one, else start (the default under torchrun, so restarts continue by themselves); no: "
                        "start, refusing a folder that holds a run (the default otherwise)")
    p.add_argument("--stop_after", type=non_negative_int, default=0,
                   help="run at most N steps in this launch, checkpoint and exit (time-limited jobs; 0: no limit)")
    p.add_argument("--dist_timeout", type=positive_float, default=300,
                   help="seconds a process waits for its peers (set-up and collectives) before failing")
    p.add_argument("--pretrained", default=None, help="initial weights: a manifest name or a checkpoint path")
    p.add_argument("--keep", type=positive_int, default=3, help="how many step checkpoints to keep")
    p.add_argument("--weights_format", choices=["pth", "safetensors"], default="pth",
                   help="file type of best.* and <ckpt_name>.* (both carry the architecture flags)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=non_negative_int, default=2, help="data-loading processes (0: in this process)")
    p.add_argument("--data_ram_gb", type=float, default=None,
                   help="GiB of RAM the training images may take, read once and shared by every loader worker "
                        "(default: half the available RAM; 0: read each patch from the h5 file)")
    p.add_argument("--data_on_device", action="store_true",
                   help="hold the whole uint8 training set on the device and crop there (no loader workers)")
    p.add_argument("--amp", choices=["fp16", "bf16"], default=None,
                   help="mixed precision (autocast; fp16 on CUDA only, with a gradient scaler)")
    p.add_argument("--channels_last", action="store_true", help="NHWC weights and activations")
    p.add_argument("--fused_adam", action="store_true", help="Adam's fused kernel (for a recipe that uses Adam)")
    p.add_argument("--cudnn_benchmark", action="store_true",
                   help="cuDNN autotuning; gives up bit-exact resume and world-size invariance")
    p.add_argument("--fast", action="store_true",
                   help="all the fast options: --amp bf16 --channels_last --fused_adam --cudnn_benchmark "
                        "(default: the authors' loop, exact; docs/training.md gives each option's cost)")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--debug_sync", action="store_true", help="record a parameter digest per step and rank")
    p.add_argument("--debug_float64", action="store_true",
                   help="train in float64 (slow): shows that a set-up computes the same math as another, which "
                        "float32 cannot, as Adam amplifies its rounding noise on small batches")


def parse_args(argv: list[str] | None, family: Family | None,
               description: str | None = None) -> tuple[Family, TrainConfig]:
    if family is None:  # srkit-train: the family is a flag
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--family", choices=[f.name for f in registry.families()])
        known, _ = pre.parse_known_args(argv)
        if known.family is None:
            names = [f.name for f in registry.families()]
            epilog = ("model families (each has its own flags; `srkit-train --family NAME --help` lists them):\n"
                      + "".join(f"  {f.name:<10} {f.title}\n" for f in registry.families())
                      + f"\ne.g. srkit-train --family {names[0]} --help")
            p = argparse.ArgumentParser(description=__doc__, epilog=epilog,
                                        formatter_class=argparse.RawDescriptionHelpFormatter)
            p.add_argument("--family", required=True, choices=names,
                           help="the model family to train (give it with --help to see that family's flags)")
            p.parse_args(argv)  # prints usage (or the help) and exits
        family = registry.get(known.family)
    p = argparse.ArgumentParser(description=description or __doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if description is None:
        p.add_argument("--family", choices=[family.name], default=family.name)
    add_arch_args(p, [family])
    add_train_args(p, family)
    ns = p.parse_args(argv)
    try:
        arch = family.train_arch(ns.scale, arch_flags_given(ns, [family]))
    except ValueError as e:
        p.error(str(e))
    options = {k: v for k, v in vars(ns).items() if k not in {f.name for f in family.flags}}
    if options["ckpt_name"] is None:
        options["ckpt_name"] = family.run_name(arch) if ns.scale else f"{arch.get('model', family.name)}_multiscale"
    try:
        return family, TrainConfig.from_options({**options, "arch": arch})
    except ValueError as e:
        p.error(str(e))


def run(argv: list[str] | None = None, family: Family | str | None = None, description: str | None = None,
        handle_signals: bool = False) -> list[StepRecord]:
    """Train as the command line says; returns a record per step run. Raises on bad set-ups, divergence and
    (with ``handle_signals``) stop signals."""
    fam = registry.get(family) if isinstance(family, str) else family
    fam, cfg = parse_args(argv, fam, description)
    return Trainer(fam, cfg).train(handle_signals=handle_signals)


def _launch_per_gpu(n: int, argv: list[str]) -> int:
    """``--num_gpu n`` with n GPUs here and no launcher: run this command under torchrun, one process per GPU,
    passing our stop signals on to it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", sys.argv[0], *argv]
    print(f"--num_gpu {n}: launching {n} processes, one per GPU: {' '.join(cmd[1:])}", file=sys.stderr)
    child = subprocess.Popen(cmd)
    old = {sig: signal.signal(sig, lambda s, _f: child.send_signal(s)) for sig in STOP_SIGNALS}
    try:
        return child.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None, family: Family | str | None = None, description: str | None = None) -> int:
    """Exit status: 0 done; 2 a set-up the run cannot start from; 3 diverged; 128 + N stopped by signal N
    (a checkpoint of the step reached was written)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        fam = registry.get(family) if isinstance(family, str) else family
        fam, cfg = parse_args(args, fam, description)
        if (cfg.num_gpu > 1 and "WORLD_SIZE" not in os.environ and not cfg.cpu
                and torch.cuda.is_available() and torch.cuda.device_count() >= cfg.num_gpu):
            return _launch_per_gpu(cfg.num_gpu, args)
        Trainer(fam, cfg).train(handle_signals=True)
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
