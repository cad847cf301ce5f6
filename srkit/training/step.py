"""One optimizer step, as the authors' loops take it: forward, loss, zero_grad, backward, gradient-norm
clipping, optimizer step (the learning rate is the recipe's schedule at this step, set before it runs).

``zero_grad`` chooses the gradient semantics between steps: ``"fill"`` zero-fills them, as PyTorch 0.4 did
when the released weights were trained (a multi-scale model's idle upsampling branches keep getting Adam
updates from their moments), ``"free"`` frees them (today's default; idle branches stay still).

Several processes (DDP) and micro-batches (``accum``) add up the same per-slice gradients: N processes x K
micro-batches give the gradient of the whole global batch whatever N and K, so one process with K = N retraces
an N-process run bit for bit. The one all-reduce that DDP does not do carries the global loss and whether any
rank got a stop signal, so every rank decides alike.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

LOSSES: dict[str, Callable[[], nn.Module]] = {"L1": nn.L1Loss, "MSE": nn.MSELoss, "SmoothL1": nn.SmoothL1Loss}
Batch = tuple[torch.Tensor, torch.Tensor, int]  # (hr, lr, scale)


@dataclass(frozen=True)
class StepResult:
    loss: float        # the global batch's loss
    grad_norm: float   # the total L2 norm of the gradients before clipping
    stop: bool         # some rank got a stop signal
    applied: bool      # the optimizer step ran (False: a non-finite loss or gradient, nothing changed)


def micro_batches(batches: Sequence[Batch], n: int) -> list[list[Batch]]:
    """Split each (hr, lr, scale) batch of a step along the batch dimension into ``n`` consecutive parts."""
    if n == 1:
        return [list(batches)]
    parts = [[(hr, lr, s) for hr, lr in zip(hr_all.chunk(n), lr_all.chunk(n))] for hr_all, lr_all, s in batches]
    return [list(p) for p in zip(*parts)]


@dataclass
class StepRunner:
    """The parts a step needs; ``net`` is the model or its DDP wrapper, ``model`` the model itself."""
    net: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    step_loss: Callable[[nn.Module, Sequence[Batch], nn.Module], torch.Tensor]
    loss_fn: nn.Module
    clip: float
    accum: int = 1
    zero_grad: str = "fill"
    amp: torch.dtype | None = None
    world: int = 1
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    def __call__(self, batches: Sequence[Batch], lr: float, stop_pending: bool = False) -> StepResult:
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.zero_grad(set_to_none=self.zero_grad == "free")
        loss = 0.0
        for k, micro in enumerate(micro_batches(batches, self.accum)):
            # DDP averages gradients over the ranks only after the last micro-batch
            last = k == self.accum - 1 or self.world == 1
            with (contextlib.nullcontext() if last else self.net.no_sync()):
                with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                    part = self.step_loss(self.net, micro, self.loss_fn)
                # 1/accum is a power of two in the tested set-ups: exact, so k micro-batches on one process sum
                # the very gradients k processes average
                self.scaler.scale(part / self.accum).backward()
            loss += float(part.detach()) / self.accum
        self.scaler.unscale_(self.optimizer)
        norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.clip))
        shared = torch.tensor([loss, 1.0 if stop_pending else 0.0], dtype=torch.float64)
        if self.world > 1:
            shared = shared.to(self.device)
            dist.all_reduce(shared)
            shared = shared.cpu()
        value, stop = float(shared[0]) / self.world, bool(shared[1] > 0)
        grads_ok = self.amp == torch.float16 or math.isfinite(norm)  # fp16: the scaler skips inf steps
        if not (math.isfinite(value) and grads_ok):
            return StepResult(value, norm, stop, applied=False)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return StepResult(value, norm, stop, applied=True)
