"""Step values (loss, gradient norm, finiteness) read back from the device without making it wait.

Each step's values are stacked on the device and copied into pinned host memory with ``non_blocking``; a CUDA
event marks the copy. The host takes a step's values once its event has passed (``query``: no wait), and
waits only where it must (``drain(wait=True)``: at the print and save interval, and at the end). On the CPU
the copy is the value itself, so every step is read at once.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Sequence

import torch


class Readback:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pending: deque[tuple[Any, torch.Tensor, Any]] = deque()

    def push(self, meta: Any, values: Sequence[torch.Tensor]) -> None:
        v = torch.stack([t.detach().to(torch.float64) for t in values])
        event = None
        if self.cuda:
            host = torch.empty(v.shape, dtype=v.dtype, pin_memory=True)
            host.copy_(v, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            v = host
        self.pending.append((meta, v, event))

    def drain(self, wait: bool = False) -> list[tuple[Any, list[float]]]:
        """(meta, values) of the steps whose copy has landed, oldest first (``wait``: of every step pushed)."""
        out = []
        while self.pending:
            meta, host, event = self.pending[0]
            if event is not None:
                if wait:
                    event.synchronize()
                elif not event.query():
                    break
            out.append((meta, host.numpy().tolist()))  # a host buffer: numpy reads it, no device sync
            self.pending.popleft()
        return out
