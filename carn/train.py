"""Train CARN / CARN-M on DIV2K (the authors' flags and code defaults), e.g.

    python carn/train.py --model carn_m --scale 0 --ckpt_name carn_m --train_data_path datasets/DIV2K_train.h5
    torchrun --nproc_per_node=4 carn/train.py --model carn --scale 0 --ckpt_name carn   # several GPUs

--scale 0 trains one multi-scale model: each step uses one scale drawn from {2, 3, 4}. --group defaults to
the model's own (1 for carn, 4 for carn_m).
"""
import sys

from carn.family import FAMILY
from srkit.cli import train as train_cli


def main(argv: list[str] | None = None) -> int:
    return train_cli.main(argv, FAMILY, __doc__)


if __name__ == "__main__":
    sys.exit(main())
