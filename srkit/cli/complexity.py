"""Parameters and Mult-Adds of every registered family's reference models (srkit.core.complexity).

    srkit-complexity            # or: python -m srkit.cli.complexity
"""
from __future__ import annotations

import argparse
import sys

from srkit.core.complexity import table


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    print("| model | scale | params | Mult-Adds (1280x720 out) | with integer input |")
    print("|---|---|---|---|---|")
    for r in table():
        print(f"| {r['model']} | x{r['scale']} | {r['params']:,} | {r['multadds_G']:.1f} G | {r['multadds_int_input_G']:.1f} G |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
