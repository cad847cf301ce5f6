"""Download the authors' released weights, verified against the manifest.

    python checkpoint/download.py carn_m overnet_x4      # or: all
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srkit.zoo import CKPT_DIR, DownloadError, download, manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    names = list(manifest())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", help=f"'all' or any of: {', '.join(names)}")
    p.add_argument("--dir", type=Path, default=CKPT_DIR)
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
