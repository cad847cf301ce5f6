"""Build benchmark folders in the x<s>/NAME_HR.png + NAME_LR.png layout from a folder of HR images
(srkit.data.prepare: HR cropped to a multiple of s, LR by the MATLAB-compatible bicubic imresize).

    srkit-prepare-benchmark path/to/Urban100_HR --out datasets/benchmark/Urban100 --scales 2 3 4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srkit.cli.flags import output_scale
from srkit.data.prepare import prepare


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hr_dir", type=Path, help="folder of HR images")
    p.add_argument("--out", type=Path, required=True, help="benchmark folder to write (e.g. datasets/benchmark/B100)")
    p.add_argument("--scales", type=output_scale, nargs="+", default=[2, 3, 4])
    args = p.parse_args(argv)
    errors = prepare(args.hr_dir, args.out, args.scales)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
