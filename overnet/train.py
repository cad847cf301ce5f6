"""Train OverNet on DIV2K with AdamP (the authors' flags and code defaults), e.g.

    python overnet/train.py --scale 2 --upscale 3 --ckpt_name overnet_x2 --train_data_path datasets/DIV2K_train.h5
    python overnet/train.py --scale 0 --ckpt_name overnet_ms    # multi-scale loss, upscale 5

--scale 0 is the paper's multi-scale loss: one model with --upscale 5; every step crops an LR/HR batch at
each of x2, x3 and x4 and the loss is L(x2) + L(x3) + L(x4). --upscale defaults to scale + 1.
"""
import sys

from overnet.family import FAMILY
from srkit.cli import train as train_cli


def main(argv: list[str] | None = None) -> int:
    return train_cli.main(argv, FAMILY, __doc__)


if __name__ == "__main__":
    sys.exit(main())
