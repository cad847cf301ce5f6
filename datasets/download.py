"""Fetch the benchmarks (Set5, Set14, B100, Urban100) from the SelfExSR release, verified file by file.

    python datasets/download.py Set5 Set14 B100 Urban100      # into datasets/benchmark/ (as srkit-benchmarks)
"""
import sys

from srkit.cli.benchmarks import main

if __name__ == "__main__":
    sys.exit(main())
