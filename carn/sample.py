"""Evaluate CARN / CARN-M on benchmarks, or upscale images (the authors' flags), e.g.

    python carn/sample.py --model carn_m --ckpt_path checkpoint/carn_m.pth \
        --test_data_dir datasets/benchmark/Set5 datasets/benchmark/Set14 --scale 2 3 4 --sample_dir sample
    python carn/sample.py --ckpt_path carn_m --input photos/ --scale 2

--model, --group and --reduce_upsample are read from the checkpoint when omitted.
"""
import sys

from carn.family import FAMILY
from srkit.cli import sample as sample_cli


def main(argv: list[str] | None = None) -> int:
    return sample_cli.main(argv, FAMILY, __doc__)


if __name__ == "__main__":
    sys.exit(main())
