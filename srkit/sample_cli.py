"""The sample command for every model family (``carn/sample.py``, ``overnet/sample.py``, ``srkit-sample``,
``srkit-upscale``): evaluate benchmarks, or upscale images.

    srkit-sample --ckpt_path carn_m --test_data_dir datasets/benchmark/Set5 --scale 2 3 4
    srkit-upscale photos/ img.jpg --ckpt_path overnet_x4 --scale 3.5

The family and every architecture flag are read from the checkpoint (or the manifest, for a name such as
``carn_m``); a flag given on the command line must agree with it. Outputs go to
``<sample_dir>/<model>/<dataset>/x<s>/`` (benchmarks: SR/, HR/, metrics.csv; summary.json beside) or
``<sample_dir>/<model>/upscaled/x<s>/`` (images).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from srkit import registry
from srkit.benchmark import scale_tag
from srkit.benchmark_download import SETS, fetch_set
from srkit.checkpoint import CheckpointError
from srkit.distributed import ProcessGroupError, leave, setup_distributed
from srkit.models import load_model
from srkit.registry import Family, RegistryError
from srkit.report import write_report
from srkit.imageio import DEFAULT_MAX_PIXELS
from srkit.sampler import Predictor, Rescaled, pick_device, run_benchmarks
from srkit.upscale import upscale_paths
from srkit.zoo import DownloadError

MEMORY_NOTE = ("On CPU the fast path makes this process keep freed memory for reuse (srkit.memory: the page "
               "faults of fresh allocations are most of a plain forward's time); the process then holds its "
               "peak memory until it exits. --plain leaves the allocator alone.")


def add_arch_args(p: argparse.ArgumentParser, families: Sequence[Family]) -> None:
    """Each family's architecture flags, default None (= read from the checkpoint, or the model's default)."""
    seen = set()
    for fam in families:
        for f in fam.flags:
            if f.name in seen:
                continue
            seen.add(f.name)
            if f.type is bool:
                p.add_argument(f"--{f.name}", action="store_true", default=None, help=f.help)
            else:
                p.add_argument(f"--{f.name}", type=f.type, choices=f.choices, default=None, help=f.help)


def arch_flags_given(args: argparse.Namespace, families: Sequence[Family]) -> dict:
    return {f.name: getattr(args, f.name) for fam in families for f in fam.flags}


def add_inference_args(p: argparse.ArgumentParser, upscale_only: bool = False) -> None:
    """Flags every sample front-end shares (names as in the authors' READMEs where they exist)."""
    p.add_argument("--ckpt_path", required=True, help="checkpoint file (any layout) or a manifest name, e.g. carn_m")
    p.add_argument("--scale", type=float, nargs="+", default=None,
                   help="scales to run; 0 = every integer scale the model serves (default: the model's own)")
    p.add_argument("--outscale", type=float, nargs="+", default=None,
                   help="any output scales, e.g. 1.5 3.2: run natively where the model serves the scale (OverNet: "
                        "any real scale up to its upscale), else at the nearest served scale above, then "
                        "MATLAB-bicubic down to the exact size")
    p.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse input images of more pixels (decompression bombs; 0: no limit)")
    p.add_argument("--sample_dir", default="sample", help="where outputs go (<sample_dir>/<model>/...)")
    if not upscale_only:
        p.add_argument("--test_data_dir", nargs="+", default=["datasets/benchmark/Set5"],
                       help="one or more benchmark folders (x<s>/ HR+LR pairs, DIV2K valid, or HR images only)")
        p.add_argument("--input", nargs="+", default=None,
                       help="images or folders to upscale instead (no HR, no metrics): <sample_dir>/<model>/upscaled/x<s>/")
        p.add_argument("--rgb", action="store_true", help="score RGB instead of the Y channel")
        p.add_argument("--no_save", action="store_true", help="score only, write no PNGs")
        p.add_argument("--report", action="store_true",
                       help="also write <sample_dir>/<model>/report.html: tables, per-image rows, crops of the "
                            "best and worst images against bicubic (a self-contained page)")
    p.add_argument("--shave", type=int, default=20, help="tile overlap in LR pixels (the authors' chop shave)")
    p.add_argument("--tile", type=int, default=512, help="tile size in LR pixels; 0 = whole image at once")
    p.add_argument("--self_ensemble", action="store_true", help="geometric x8 self-ensemble")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if CUDA is available")
    p.add_argument("--plain", action="store_true", help="the plain eager float32 forward instead of the fast path")
    p.add_argument("--half", action="store_true",
                   help="opt-in half precision (changes outputs): fp16 on CUDA, bf16 on CPU (fast only on CPUs "
                        "with AVX512-BF16/AMX)")


def _parser(family: Family | None, description: str | None, upscale_only: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description or __doc__, epilog=MEMORY_NOTE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if upscale_only:
        p.add_argument("inputs", nargs="+", help="images or folders of images")
    add_arch_args(p, [family] if family else registry.families())
    add_inference_args(p, upscale_only)
    return p


def _outscales(fam: Family, arch: dict, asked: list[float]) -> list[tuple[float, float]]:
    """(output scale, the scale the model runs at) for each ``--outscale``."""
    out = []
    for s in asked:
        s = int(s) if float(s).is_integer() else float(s)
        if s <= 1:
            raise ValueError(f"--outscale {s:g}: an output scale is above 1")
        if fam.check_scale(arch, s) is None:
            out.append((s, s))
            continue
        above = [x for x in fam.served_scales(arch) if x >= s]
        if not above:
            raise ValueError(f"--outscale {s:g}: {fam.check_scale(arch, s)}, and it serves no larger scale to "
                             f"bring down from")
        out.append((s, min(above)))
    return out


def _scales(fam: Family, arch: dict, asked: list[float] | None) -> list[float]:
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
            print(f"{d} is missing: fetching {d.name} from the SelfExSR release", file=sys.stderr)
            fetch_set(d.name, d.parent)


def run(args: argparse.Namespace, family: Family | None) -> int:
    """Load, then evaluate or upscale as ``args`` say. Returns the exit status (2: unusable set-up)."""
    families = [family] if family else registry.families()
    try:
        net, arch = load_model(args.ckpt_path, family, **arch_flags_given(args, families))
        fam = registry.get(arch["family"])
        if args.outscale and args.scale:
            raise ValueError("give --scale (the model's own scales) or --outscale (any output scale), not both")
        plan = _outscales(fam, arch, args.outscale) if args.outscale else [(s, s) for s in _scales(fam, arch, args.scale)]
        inputs = getattr(args, "inputs", None) or getattr(args, "input", None)
        if not inputs:
            _fetch_missing_benchmarks(args.test_data_dir)
        device = setup_distributed(args.cpu)[2] if "WORLD_SIZE" in os.environ else pick_device(args.cpu)
        predict = Predictor(net.to(device), tile=args.tile, overlap=args.shave, ensemble=args.self_ensemble,
                            fast=not args.plain, half=args.half, retain_memory=True)
    except (CheckpointError, DownloadError, RegistryError, ProcessGroupError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = fam.run_name(arch)
    predictors = {s: predict if s == m else Rescaled(predict, m, s) for s, m in plan}
    try:
        if inputs:
            return max(upscale_paths(predictors[s], inputs, s, Path(args.sample_dir) / name / "upscaled" / scale_tag(s),
                                     device, args.max_pixels) for s in predictors)
        # under torchrun the images are sharded over the ranks and rank 0 writes the merged results
        status = run_benchmarks(predictors, name, args.test_data_dir, list(predictors), args.sample_dir, device,
                                test_y_channel=not args.rgb, save=not args.no_save,
                                config={**vars(args), "arch": arch, "model_scales": {str(s): m for s, m in plan}})
        if args.report and int(os.environ.get("RANK", "0")) == 0:
            print(f"report: {write_report(Path(args.sample_dir) / name)}")
        return status
    finally:
        leave()


def main(argv: list[str] | None = None, family: Family | str | None = None, description: str | None = None) -> int:
    """Benchmarks (``--test_data_dir``) or images (``--input``); ``family`` restricts the checkpoints accepted."""
    fam = registry.get(family) if isinstance(family, str) else family
    return run(_parser(fam, description, upscale_only=False).parse_args(argv), fam)


def upscale_main(argv: list[str] | None = None) -> int:
    """``srkit-upscale IMAGE_OR_FOLDER... --ckpt_path NAME --scale S``: SR images only, any family."""
    return run(_parser(None, __doc__, upscale_only=True).parse_args(argv), None)


if __name__ == "__main__":
    sys.exit(main())
