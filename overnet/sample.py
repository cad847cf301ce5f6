"""Evaluate OverNet on benchmarks at integer or real scales (flags as in the authors' README), e.g.

    python overnet/sample.py --ckpt_path checkpoint/OverNet_test_x4.pth.tar --upscale 5 \
        --test_data_dir datasets/benchmark/Set5 --scale 4 2.5

Real scales (e.g. 2.5) need HR-only folders: HR is cropped so HR/s is an integer size and LR is made with
the MATLAB-compatible imresize. SR size = LR size x s, rounded half up.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: import from the repo root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from overnet import spec  # noqa: E402
from srkit.checkpoint import CheckpointError, family_of, load_weights, read_checkpoint, resolve_flags  # noqa: E402
from srkit.sampler import add_inference_args, predictor_from_args, run_benchmarks  # noqa: E402
from srkit.upscale import upscale_paths  # noqa: E402
from srkit.zoo import DownloadError, resolve  # noqa: E402


def load_model(ckpt_path: str, upscale: int | None = None, group: int | None = None) -> tuple[torch.nn.Module, dict]:
    """An OverNet built to fit ``ckpt_path`` (authors' checkpoint dict or plain state dict; a path or a manifest
    name such as ``overnet_x4``), in eval mode."""
    requested = {"upscale": upscale, "group": group}
    ckpt_path, entry = resolve(ckpt_path)
    if entry is not None:
        requested = resolve_flags(requested, entry["flags"], f"{entry['file']} (manifest)", spec.describe)
    sd, _ = read_checkpoint(ckpt_path)
    inferred = spec.infer_flags(sd)
    if inferred.get("model") is None:
        hint = " - it is a CARN/CARN-M checkpoint: use carn/sample.py" if family_of(sd) == "carn" else ""
        raise CheckpointError(f"{ckpt_path}: not an OverNet checkpoint{hint}")
    flags = resolve_flags(requested, {k: inferred[k] for k in ("upscale", "group")},
                          ckpt_path, spec.describe)
    net = spec.build(upscale=flags["upscale"], group=flags["group"])
    load_weights(net, sd, ckpt_path, lambda s: spec.describe(spec.infer_flags(s)))
    flags["model"] = "overnet"
    return net.eval(), flags


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, nargs="+", default=None,
                   help="scales to run, any real 1 < s <= upscale (default: upscale - 1, the trained scale)")
    p.add_argument("--upscale", type=int, default=None, help="overscaling factor (default: from the checkpoint)")
    p.add_argument("--group", type=int, default=None, help="default: from the checkpoint")
    add_inference_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        net, flags = load_model(args.ckpt_path, args.upscale, args.group)
    except (CheckpointError, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scales = args.scale or [float(flags["upscale"] - 1)]
    bad = [s for s in scales if not 1 < s <= flags["upscale"]]
    if bad:
        print(f"error: this OverNet (upscale {flags['upscale']}) serves 1 < s <= {flags['upscale']}, not {bad}",
              file=sys.stderr)
        return 2
    made = predictor_from_args(net, args)
    if made is None:
        return 2
    predict, device = made
    name = f"overnet_x{flags['upscale'] - 1}"
    if args.input:
        return max(upscale_paths(predict, args.input, s, Path(args.sample_dir) / name / "upscaled" / f"x{s:g}",
                                 device) for s in scales)
    return run_benchmarks(predict, name, args.test_data_dir, scales, args.sample_dir, device,
                          test_y_channel=not args.rgb, save=not args.no_save, config={**vars(args), **flags})


if __name__ == "__main__":
    sys.exit(main())
