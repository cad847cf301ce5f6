"""What each backend of the fast path serves, declared in one place per backend and precision.

A backend is a module of this package (``cpu_fp32``: the streamed float32 kernels; ``onednn``: oneDNN's fused
primitives through PyTorch, float32 and bf16; ``cuda``: cuDNN; others register themselves the same way). Each
declares itself once with :func:`register`: the device it runs on, the dtypes it computes in, the instruction
set or library it needs, the activation layout it wants, and a check of whether it can run here. The rewrite
(``srkit.inference.fast.rewrite``) asks a backend's own ``serves(...)`` whether it takes a given layer when the
model is prepared, and every kernel call can still decline an input at run time (then the next backend, in the
end plain PyTorch ops, computes it): the choice is made at run time, by CPU feature and build, never by
model name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Backend:
    name: str
    device: str                      # the torch device type it runs on
    dtypes: tuple[torch.dtype, ...]  # what its kernels compute in (activations; accumulation is float32)
    needs: str                       # the instruction set or library it needs, in words
    runs: str                        # what it computes, in words
    nhwc: bool                       # whether its kernels want channels_last activations
    why_not: Callable[[], str]       # "" where it runs here, else the reason in words

    def available(self) -> bool:
        return not self.why_not()

    def serves(self, device: torch.device | str, dtype: torch.dtype) -> bool:
        """Whether it runs here, on ``device``, in ``dtype``."""
        return torch.device(device).type == self.device and dtype in self.dtypes and self.available()


_BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Declare ``backend`` (once per name; the order of registration is the order of preference)."""
    if _BACKENDS.setdefault(backend.name, backend) is not backend:
        raise ValueError(f"a backend named {backend.name!r} is already registered")
    return backend


def registered() -> list[Backend]:
    return list(_BACKENDS.values())


def serving(device: torch.device | str, dtype: torch.dtype | None) -> list[Backend]:
    """The backends that run here on ``device`` in ``dtype`` (None: float32), most preferred first."""
    dtype = dtype or torch.float32
    return [b for b in _BACKENDS.values() if b.serves(device, dtype)]


def describe() -> list[dict]:
    """Every registered backend as a row: name, device, dtypes, needs, runs, and whether it runs here (why not)."""
    return [{"name": b.name, "device": b.device, "dtypes": [str(d).removeprefix("torch.") for d in b.dtypes],
             "needs": b.needs, "runs": b.runs, "available": b.available(), "why_not": b.why_not()}
            for b in _BACKENDS.values()]
