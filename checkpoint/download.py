"""Download released weights, verified against the manifest (every family's ``pretrained`` entries).

    python checkpoint/download.py carn_m overnet_x4      # or: all (the same as srkit-download)
"""
import sys

from srkit.cli.download import main

if __name__ == "__main__":
    sys.exit(main())
