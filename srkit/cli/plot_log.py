"""Plot a training run's log.csv (loss and validation PSNR per scale) to a PNG (srkit.training.plot).

    srkit-plot-log checkpoint/RUN/log.csv --out assets/RUN_training.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srkit.cli.flags import path_arg
from srkit.training.plot import plot
from srkit.weights.guard import check_output


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", type=lambda t: Path(path_arg(t)))
    p.add_argument("--out", type=lambda t: Path(path_arg(t)), default=None,
                   help="default: training.png beside the CSV")
    a = p.parse_args(argv)
    if not a.csv.is_file():
        print(f"error: {a.csv}: no such file", file=sys.stderr)
        return 1
    try:
        print(plot(a.csv, check_output(a.out or a.csv.with_name("training.png"), [a.csv], "--out")))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
