"""The sample command of every model family (each paper package's ``sample.py``, and ``srkit-sample``):
evaluate benchmarks, or upscale images, with the authors' flags.

    srkit-sample --ckpt_path NAME_OR_PATH --test_data_dir datasets/benchmark/Set5 --scale 2 3 4
    srkit-sample --ckpt_path NAME_OR_PATH --input photos/ --scale 3

The family and every architecture flag are read from the checkpoint (or the manifest, for the name of
released weights); a flag given on the command line must agree with it. Outputs go to one folder per checkpoint,
``<sample_dir>/<name>-<sha256[:8]>/`` (the manifest name or the file's stem, and its hash), so two checkpoints
never share files: ``<dataset>/x<s>/`` (SR/, HR/, metrics.csv) and summary.json for benchmarks,
``upscaled/x<s>/`` for images.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from srkit.core import registry
from srkit.core.checkpoint import CheckpointError
from srkit.core.distributed import ProcessGroupError, leave, setup_distributed
from srkit.core.fetch import DownloadError
from srkit.core.provenance import environment
from srkit.core.registry import Family, RegistryError
from srkit.cli.flags import (add_arch_args, arch_flags_given, model_scale, non_negative_int, output_scale, path_arg,
                             positive_int)
from srkit.data.benchmark import scale_tag
from srkit.data.download import SETS, default_root, fetch_set, source
from srkit.data.imageio import DEFAULT_MAX_PIXELS
from srkit.inference.evaluate import run_benchmarks
from srkit.inference.precision import PRECISIONS
from srkit.inference.predictor import Predictor, at_output_scale, pick_device
from srkit.inference.upscale import upscale_paths
from srkit.report import write_report
from srkit.weights.load import load_model_with_source


def add_inference_args(p: argparse.ArgumentParser) -> None:
    """Flags of the sample front-ends (names as in the authors' READMEs where they exist)."""
    p.add_argument("--ckpt_path", type=path_arg, required=True,
                   help="the name of released weights (srkit-download --help lists them) or a checkpoint path "
                        "(any layout)")
    p.add_argument("--scale", type=model_scale, nargs="+", default=None,
                   help="scales to run; 0 = every integer scale the model serves (default: the model's own)")
    p.add_argument("--outscale", type=output_scale, nargs="+", default=None,
                   help="any output scales, e.g. 1.5 3.2: run natively where the model serves the scale (some "
                        "serve real scales), else at the nearest served scale above, then "
                        "MATLAB-bicubic down to the exact size")
    p.add_argument("--max_pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help="refuse input images of more pixels (decompression bombs)")
    p.add_argument("--sample_dir", type=path_arg, default="sample",
                   help="where outputs go: <sample_dir>/<checkpoint name>-<sha256[:8]>/...")
    p.add_argument("--test_data_dir", type=path_arg, nargs="+", default=None,
                   help="one or more benchmark folders (x<s>/ HR+LR pairs, DIV2K valid, or HR images only; "
                        "default: Set5 under datasets/benchmark of the working directory when it has datasets/, "
                        "else of the checkout)")
    p.add_argument("--input", type=path_arg, nargs="+", default=None,
                   help="images or folders to upscale instead (no HR, no metrics): <sample_dir>/<...>/upscaled/x<s>/")
    p.add_argument("--rgb", action="store_true", help="score RGB instead of the Y channel")
    p.add_argument("--no_save", action="store_true", help="score only, write no PNGs")
    p.add_argument("--report", action="store_true",
                   help="also write report.html beside summary.json: tables, per-image rows, crops of the best and "
                        "worst images against bicubic (a self-contained page); a report already there is always "
                        "rebuilt")
    add_runtime_args(p)


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shave", type=non_negative_int, default=20,
                   help="tile overlap in LR pixels (the authors' chop shave)")
    p.add_argument("--tile", type=non_negative_int, default=None,
                   help="tile size in LR pixels; 0 = the whole image at once (default: the whole image when it "
                        "fits the memory available, else the fewest equal tiles that do)")
    p.add_argument("--self_ensemble", action="store_true", help="geometric x8 self-ensemble")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if CUDA is available")
    p.add_argument("--plain", action="store_true", help="the plain eager float32 forward instead of the fast path")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="the fast path's precision: auto = bf16 on a CPU with native bf16 (AVX512-BF16/AMX), fp16 "
                        "on CUDA, else fp32 (default: auto when upscaling images, fp32 for benchmark scores)")
    p.add_argument("--fp32", action="store_const", const="fp32", dest="precision", help="--precision fp32")
    p.add_argument("--half", action="store_true", help="alias of --precision fp16 on CUDA, bf16 elsewhere")


def precision_of(args: argparse.Namespace, upscaling: bool) -> str:
    """The precision asked for: upscaling defaults to auto, scoring benchmarks to fp32 (the authors' numbers)."""
    return args.precision or ("auto" if upscaling else "fp32")


def parser(family: Family | None, description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description or __doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arch_args(p, [family] if family else registry.families())
    add_inference_args(p)
    return p


def scales_to_run(fam: Family, arch: dict, asked: list[float] | None) -> list[float]:
    if not asked:
        scales = list(fam.default_scales(arch))
    elif 0 in asked:
        scales = list(fam.served_scales(arch))
    else:
        scales = asked
    bad = [why for s in scales if (why := fam.check_scale(arch, s))]
    if bad:
        raise ValueError("; ".join(bad))
    return [int(s) if float(s).is_integer() else float(s) for s in scales]


def _fetch_missing_benchmarks(folders: list[str]) -> None:
    """A missing folder named like a published benchmark (datasets/benchmark/Set5, the default) is fetched."""
    for d in map(Path, folders):
        if not d.exists() and d.name in SETS:
            print(f"{d} is missing: fetching {d.name} from {source(d.name)}", file=sys.stderr)
            fetch_set(d.name, d.parent)


def run(args: argparse.Namespace, family: Family | None, argv: list[str] | None = None) -> int:
    """Load, then evaluate or upscale as ``args`` say. Returns the exit status (2: unusable set-up)."""
    families = [family] if family else registry.families()
    try:
        net, arch, source = load_model_with_source(args.ckpt_path, family, **arch_flags_given(args, families))
        fam = registry.get(arch["family"])
        if args.outscale and args.scale:
            raise ValueError("give --scale (the model's own scales) or --outscale (any output scale), not both")
        scales = list(args.outscale) if args.outscale else scales_to_run(fam, arch, args.scale)
        if not args.input:
            args.test_data_dir = args.test_data_dir or [str(default_root() / "Set5")]
            _fetch_missing_benchmarks(args.test_data_dir)
        device = setup_distributed(args.cpu)[2] if "WORLD_SIZE" in os.environ else pick_device(args.cpu)
        predict = Predictor(net.to(device), tile=args.tile, overlap=args.shave, ensemble=args.self_ensemble,
                            fast=not args.plain, half=args.half, precision=precision_of(args, bool(args.input)))
        predictors = {s: at_output_scale(predict, fam, arch, s) for s in scales}
    except (CheckpointError, DownloadError, RegistryError, ProcessGroupError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_dir = Path(args.sample_dir) / source.short
    try:
        if args.input:
            return max(upscale_paths(predictors[s], args.input, s, run_dir / "upscaled" / scale_tag(s), device,
                                     args.max_pixels, exclude=run_dir) for s in predictors)
        record = {"checkpoint": {"name": source.short, "given": source.given, "path": str(Path(source.path).resolve()),
                                 "sha256": source.sha256, "family": fam.name, "arch": arch,
                                 "released": source.pretrained},
                  "model": fam.run_name(arch), **environment(device, argv),
                  "config": {k: v for k, v in vars(args).items()}, "precision": predict.precision_name,
                  "model_scales": {str(s): getattr(p, "model_scale", s) for s, p in predictors.items()}}
        # under torchrun the images are sharded over the ranks and rank 0 writes the merged results
        status = run_benchmarks(predictors, run_dir, args.test_data_dir, list(predictors), device,
                                test_y_channel=not args.rgb, save=not args.no_save, record=record,
                                max_pixels=args.max_pixels)
        # a report from an earlier run is rebuilt too, so that it never contradicts summary.json beside it
        earlier = (run_dir / "report.html").is_file()
        if (args.report or earlier) and int(os.environ.get("RANK", "0")) == 0:
            print(f"report: {write_report(run_dir)}" + ("" if args.report else " (rebuilt: it was there from an "
                                                         "earlier run, and summary.json changed)"))
        return status
    finally:
        leave()


def main(argv: list[str] | None = None, family: Family | str | None = None, description: str | None = None) -> int:
    """Benchmarks (``--test_data_dir``) or images (``--input``); ``family`` restricts the checkpoints accepted."""
    fam = registry.get(family) if isinstance(family, str) else family
    return run(parser(fam, description).parse_args(argv), fam, argv)


if __name__ == "__main__":
    sys.exit(main())
