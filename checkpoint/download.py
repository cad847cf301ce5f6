"""Download the authors' released weights, verified against the manifest (srkit/manifest.json).

    python checkpoint/download.py carn_m overnet_x4      # or: all
"""
import sys

from srkit.zoo import main

if __name__ == "__main__":
    sys.exit(main())
