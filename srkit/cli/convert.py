"""Convert a checkpoint of any registered family (the authors' files included) to a file that says what it
is: the weights plus the architecture flags (``.safetensors``: in its metadata, no pickle at all).

    srkit-convert checkpoint/FILE.pth OUT.safetensors
    srkit-convert NAME OUT.pth                 # released weights by name
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srkit.core.checkpoint import CheckpointError
from srkit.core.fetch import DownloadError
from srkit.cli.flags import path_arg
from srkit.weights.convert import convert
from srkit.weights.guard import OutputError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=path_arg, help="a manifest name or a checkpoint path")
    p.add_argument("out", type=lambda t: Path(path_arg(t)), help="output file (.safetensors or .pth)")
    a = p.parse_args(argv)
    try:
        arch = convert(a.src, a.out)
    except (CheckpointError, DownloadError, OutputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: {arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
