"""Evaluate OverNet on benchmarks at integer or real scales, or upscale images (the authors' flags), e.g.

    python overnet/sample.py --ckpt_path checkpoint/OverNet_test_x4.pth.tar \
        --test_data_dir datasets/benchmark/Set5 --scale 4 2.5
    python overnet/sample.py --ckpt_path overnet_x4 --input photos/ --scale 3.5

Any real 1 < s <= upscale works (default: upscale - 1, the trained scale). Real scales need HR-only
folders: HR is cropped so HR/s is an integer size and LR is made with the MATLAB-compatible imresize.
"""
import sys

from overnet.family import FAMILY
from srkit.cli import sample as sample_cli


def main(argv: list[str] | None = None) -> int:
    return sample_cli.main(argv, FAMILY, __doc__)


if __name__ == "__main__":
    sys.exit(main())
