"""Fetch the benchmarks the papers report (Set5, Set14, B100, Urban100) from the SelfExSR release, verified
file by file (srkit.data.download).

    srkit-benchmarks Set5 Set14 B100 Urban100        # into datasets/benchmark/
    SRKIT_MIRROR=/shared/selfexsr srkit-benchmarks Set5   # offline: a mirror folder or URL (docs/datasets.md)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srkit.core.fetch import DownloadError
from srkit.data.download import SETS, fetch_set
from srkit.data.imageio import ImageError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", choices=[*SETS, "all"], help="benchmarks to fetch")
    p.add_argument("--root", type=Path, default=None,
                   help="where the benchmark folders go (default: datasets/benchmark of the working directory "
                        "when it has datasets/, else of the checkout)")
    a = p.parse_args(argv)
    failed = 0
    for name in (list(SETS) if "all" in a.names else a.names):
        try:
            print(f"{name}: {fetch_set(name, a.root)}")
        except (DownloadError, ImageError) as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
