"""Rebuild the HTML report of an evaluation run folder (the one holding summary.json) (srkit.report).

    srkit-report sample/NAME-1a2b3c4d          # or: python -m srkit.report sample/NAME-1a2b3c4d
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srkit.cli.flags import path_arg
from srkit.report import ReportError, write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=lambda t: Path(path_arg(t)), help="an evaluation's folder: <sample_dir>/<checkpoint>-<hash>/")
    a = p.parse_args(argv)
    try:
        print(f"report: {write_report(a.run_dir)}")
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
