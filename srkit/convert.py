"""Convert a checkpoint of any registered family (the authors' files included) to a file that says what it is.

    python -m srkit.convert checkpoint/carn_m.pth carn_m.safetensors
    python -m srkit.convert OverNet_test_x4.pth.tar overnet_x4.pth

The output holds the weights plus the architecture flags (family, model, group, scales / upscale, ...):
``.safetensors`` as its metadata (loading it needs no pickle at all), other suffixes as a torch file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srkit.checkpoint import CheckpointError, save_weights
from srkit.models import load_model
from srkit.zoo import DownloadError


def convert(src: str, out: Path) -> dict:
    """Write ``src`` (a path or a manifest name) to ``out``; returns the architecture flags written."""
    net, arch = load_model(src)
    save_weights(out, net.state_dict(), arch)
    return arch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="checkpoint path or manifest name")
    p.add_argument("out", type=Path, help="output file (.safetensors or .pth)")
    a = p.parse_args(argv)
    try:
        arch = convert(a.src, a.out)
    except (CheckpointError, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: {arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
