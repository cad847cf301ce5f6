"""What the ranks of a run agree on at every step: whether to stop (a signal reached any rank) and whether
some rank failed (an exception in its data, forward pass, loss, validation, save or logs).

Every rank calls :class:`Agreement` at the same points: in each step just before its first collective (the
last micro-batch's backward, where DDP reduces the gradients), before leaving at a stop step, and once at the
end of the loop. It is one all-reduce of two integers on the CPU (a gloo group), so it waits for the peers
but never for the GPU. A rank that fails calls it in place of the next one it would have reached, with its
error line, and then exits with its own error; the others learn which rank failed, at which step and why, in
that same collective, and raise :class:`PeerFailed`: every rank is out within one step.

A rank that dies without a word (SIGKILL, the OOM killer, a segfault), or fails inside a collective, leaves
its peers in one: when its connections close they fail at once and raise :class:`PeerLost`. A machine that
vanishes without closing them (power, network) is noticed by the collective's timeout (``--dist_timeout``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from srkit.training.errors import PeerFailed, PeerLost, TrainingError

# what gloo and NCCL say when a peer went away in the middle of a collective (a plain RuntimeError in gloo)
_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out", "timed out",
         "Connection refused", "NCCL communicator was aborted")


def one_line(e: BaseException) -> str:
    """An exception as one line: a TrainingError's message as it is, anything else with its type."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text if isinstance(e, TrainingError) else f"{type(e).__name__}: {text}".rstrip(": ")


def is_peer_loss(e: BaseException) -> bool:
    """Whether ``e`` is a collective failing because another process ended or is unreachable."""
    if isinstance(e, TrainingError):
        return False
    return isinstance(e, dist.DistError) or (isinstance(e, RuntimeError) and any(s in str(e) for s in _LOST))


def peer_lost(rank: int, step: int, e: BaseException) -> PeerLost:
    """The line of rank ``rank`` whose collective at step ``step`` failed as ``e`` (a peer went away)."""
    return PeerLost(f"rank {rank} lost contact with the other processes at step {step} (one of them ended or "
                    f"its machine is unreachable; its own output says why): {one_line(e)[:300]}")


class Agreement:
    """``agree(step, stop, failure)``: every rank's stop wish and failure, reduced; see the module docstring.
    ``group``: a gloo group (None: the default one, itself gloo)."""

    def __init__(self, rank: int, world: int, group: Any = None) -> None:
        self.rank, self.world, self.group = rank, world, group

    def __call__(self, step: int, stop: bool, failure: str | None = None) -> bool:
        """Whether any rank asked to stop. Raises PeerFailed when another rank failed and this one did not
        (``failure`` None); a failing rank gets back normally and raises its own error."""
        if self.world == 1:
            return stop
        # MIN: -1 when any rank stops; the lowest failing rank (world: none)
        flag = torch.tensor([-1 if stop else 0, self.rank if failure is not None else self.world])
        try:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=self.group)
            any_stop, failed = (int(v) for v in flag.numpy())  # a CPU tensor: no device sync
            if failed == self.world:
                return any_stop < 0
            box = [(step, failure)] if failed == self.rank else [None]
            dist.broadcast_object_list(box, src=failed, group=self.group)
        except RuntimeError as e:
            if failure is None and is_peer_loss(e):
                raise peer_lost(self.rank, step, e) from None
            raise
        if failure is None:
            their_step, line = box[0]
            raise PeerFailed(f"rank {failed} failed at step {their_step}: {line}")
        return any_stop < 0


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), by rank, over the default group; ``[obj]`` without one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
