"""Evaluate CARN / CARN-M on benchmarks (flags as in the authors' README), e.g.

    python carn/sample.py --model carn_m --ckpt_path checkpoint/carn_m.pth \
        --test_data_dir datasets/benchmark/Set5 datasets/benchmark/Set14 --scale 2 3 4 --sample_dir sample
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: import from the repo root (carn/carn.py would shadow the package)
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from carn import spec  # noqa: E402
from srkit.checkpoint import CheckpointError, family_of, load_weights, read_checkpoint, resolve_flags  # noqa: E402
from srkit.sampler import add_inference_args, predictor_from_args, run_benchmarks  # noqa: E402
from srkit.upscale import upscale_paths  # noqa: E402
from srkit.zoo import DownloadError, resolve  # noqa: E402


def load_model(ckpt_path: str, model: str | None = None, group: int | None = None,
               reduce_upsample: bool | None = None) -> tuple[torch.nn.Module, dict]:
    """A CARN/CARN-M built to fit ``ckpt_path`` (a path or a manifest name such as ``carn_m``; flags left None
    are read from the manifest and the checkpoint), in eval mode."""
    requested = {"model": model, "group": group, "reduce_upsample": reduce_upsample}
    ckpt_path, entry = resolve(ckpt_path)
    if entry is not None:
        known = {k: v for k, v in entry["flags"].items() if k in requested}
        requested = resolve_flags(requested, known, f"{entry['file']} (manifest)", spec.describe)
    sd, _ = read_checkpoint(ckpt_path)
    inferred = spec.infer_flags(sd)
    if inferred.get("model") is None:
        other = family_of(sd)
        hint = " - it is an OverNet checkpoint: use overnet/sample.py" if other == "overnet" else ""
        raise CheckpointError(f"{ckpt_path}: not a CARN or CARN-M checkpoint{hint}")
    flags = resolve_flags(requested, inferred, ckpt_path, spec.describe)
    net = spec.build(flags["model"], scale=inferred.get("scale"), multi_scale=inferred.get("multi_scale", True),
                     group=flags["group"], reduce_upsample=bool(flags["reduce_upsample"]))
    load_weights(net, sd, ckpt_path, lambda s: spec.describe(spec.infer_flags(s)))
    flags.update(multi_scale=net.multi_scale, scales=list(net.scales))
    return net.eval(), flags


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["carn", "carn_m"], default=None, help="default: read from the checkpoint")
    p.add_argument("--scale", type=int, nargs="+", default=[0], help="scales to run; 0 = every scale the model serves")
    p.add_argument("--group", type=int, default=None, help="default: read from the checkpoint")
    p.add_argument("--reduce_upsample", action="store_true", default=None,
                   help="1x1 upsampling convs (default: read from the checkpoint)")
    add_inference_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        net, flags = load_model(args.ckpt_path, args.model, args.group, args.reduce_upsample)
    except (CheckpointError, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scales = flags["scales"] if 0 in args.scale else args.scale
    bad = [s for s in scales if s not in flags["scales"]]
    if bad:
        print(f"error: this model serves x{flags['scales']}, not {bad}", file=sys.stderr)
        return 2
    made = predictor_from_args(net, args)
    if made is None:
        return 2
    predict, device = made
    if args.input:
        return max(upscale_paths(predict, args.input, s, Path(args.sample_dir) / flags["model"] / "upscaled" / f"x{s}",
                                 device) for s in scales)
    return run_benchmarks(predict, flags["model"], args.test_data_dir, [float(s) for s in scales], args.sample_dir,
                          device, test_y_channel=not args.rgb, save=not args.no_save,
                          config={**vars(args), **flags})


if __name__ == "__main__":
    sys.exit(main())
