"""Parameters and Mult-Adds of every registered family's reference models (srkit.core.complexity).

    srkit-complexity            # or: python -m srkit.cli.complexity
"""
from __future__ import annotations

import argparse
import sys

from srkit.core.complexity import paper_differences, table


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    rows = table()
    print("| model | scale | params | paper | Mult-Adds (1280x720 out) | with integer input |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        paper = f"{r['paper_params_k']:,}K" if r["paper_params_k"] is not None else "-"
        print(f"| {r['model']} | x{r['scale']} | {r['params']:,} | {paper} | {r['multadds_G']:.1f} G | "
              f"{r['multadds_int_input_G']:.1f} G |")
    notes = paper_differences(rows)
    if notes:
        print("\nParameters: every value of the model is counted, as the released files hold them.")
        for line in notes:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
