"""Export a checkpoint to ONNX (one scale per file; dynamic batch, height and width; metadata: family, arch,
scale, value range, license) and verify it with onnxruntime (srkit.inference.export_onnx).

    srkit-export --ckpt_path NAME_OR_PATH --scale 2 --out model_x2.onnx
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srkit.cli.flags import path_arg, positive_int
from srkit.core import registry
from srkit.core.checkpoint import CheckpointError
from srkit.core.fetch import DownloadError
from srkit.core.tolerances import ONNX_ATOL
from srkit.inference.export_onnx import export, verify
from srkit.weights.guard import OutputError, check_output
from srkit.weights.load import load_model_with_source


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", type=path_arg, required=True, help="a manifest name or a checkpoint path")
    p.add_argument("--scale", type=positive_int, required=True, help="an integer scale the model serves")
    p.add_argument("--out", type=lambda t: Path(path_arg(t)), required=True, help="the .onnx file to write")
    a = p.parse_args(argv)
    try:
        check_output(a.out, [a.ckpt_path], "--out")
        net, arch, source = load_model_with_source(a.ckpt_path)
        check_output(a.out, [a.ckpt_path, source.path], "--out")
        why = registry.get(arch["family"]).check_scale(arch, a.scale)
        if why:
            raise OutputError(f"--scale {a.scale}: {why}")
    except (CheckpointError, DownloadError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    export(net, a.scale, a.out, arch=arch, source=source)
    diff = verify(net, a.scale, a.out)
    print(f"wrote {a.out}; onnxruntime vs PyTorch max abs difference {diff:.2e} (tolerance ONNX_ATOL {ONNX_ATOL:g})")
    return 0 if diff < ONNX_ATOL else 1


if __name__ == "__main__":
    sys.exit(main())
