"""``python tests/faulty_rank.py RANK FAULT ARGS...``: carn/train.py ARGS, with one fault in the process whose
RANK variable (set by its launcher) is RANK, for the tests of how one rank's failure stops the others:

- ``disk``: every checkpoint write fails as on a full disk (ENOSPC);
- ``loss``: the loss of the third step raises, as CUDA's out-of-memory does in a forward pass;
- ``validation``: evaluating this rank's shard of the validation images raises.
"""
import errno
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carn import train  # noqa: E402
from srkit.core import checkpoint  # noqa: E402
from srkit.training import step, validation  # noqa: E402


def _full(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


class _LossThatRunsOut(torch.nn.L1Loss):
    calls = 0

    def forward(self, *a):
        type(self).calls += 1
        if type(self).calls == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return super().forward(*a)


def _unreadable(*_a, **_k):
    raise OSError(errno.EIO, "Input/output error")


FAULTS = {"disk": lambda: setattr(checkpoint.torch, "save", _full),
          "loss": lambda: step.LOSSES.__setitem__("L1", _LossThatRunsOut),
          "validation": lambda: setattr(validation, "evaluate_folder", _unreadable)}

if __name__ == "__main__":
    rank, fault, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    if os.environ.get("RANK", "0") == rank:
        FAULTS[fault]()
    sys.exit(train.main(argv))
