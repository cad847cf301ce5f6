"""Download released weights, verified against the manifest (every family's ``pretrained`` entries).

    srkit-download NAME [NAME ...]        # or: all (srkit-download --help lists the names)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srkit.core.fetch import DownloadError
from srkit.weights.zoo import WEIGHTS_ENV, download, manifest


def main(argv: list[str] | None = None) -> int:
    names = list(manifest())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", help=f"'all' or any of: {', '.join(names)}")
    p.add_argument("--dir", type=Path, default=None, help=f"default: ${WEIGHTS_ENV}, checkpoint/ in a checkout, "
                                                          f"or the torch hub cache")
    a = p.parse_args(argv)
    wanted = names if "all" in a.names else a.names
    failed = 0
    for n in wanted:
        try:
            print(f"{n}: {download(n, a.dir)}")
        except DownloadError as e:
            print(f"error: {n}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
