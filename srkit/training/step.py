"""One optimizer step, as the authors' loops take it: forward, loss, zero_grad, backward, gradient-norm
clipping, optimizer step (the learning rate is the recipe's schedule at this step, set before it runs).

``zero_grad`` chooses the gradient semantics between steps: ``"fill"`` zero-fills them, as PyTorch 0.4 did
when the released weights were trained (a multi-scale model's idle upsampling branches keep getting Adam
updates from their moments), ``"free"`` frees them (today's default; idle branches stay still).

Several processes (DDP) and micro-batches (``accum``) add up the same per-slice gradients: N processes x K
micro-batches give the gradient of the whole global batch whatever N and K, so one process with K = N retraces
an N-process run bit for bit. The one all-reduce that DDP does not do carries the global loss and whether any
rank got a stop signal, so every rank decides alike.

A step reads nothing back from the device: the loss, the gradient norm and whether the loss, the gradients
or the updated weights hold a non-finite value stay device tensors (``StepResult``), which the trainer reads
at its print and save interval. The stop flag is reduced as a CPU tensor (gloo), which waits for the peers
but not for the GPU. ``--amp fp16``'s gradient scaler is the exception: it reads whether to skip each step.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

LOSSES: dict[str, Callable[[], nn.Module]] = {"L1": nn.L1Loss, "MSE": nn.MSELoss, "SmoothL1": nn.SmoothL1Loss}
Batch = tuple[torch.Tensor, torch.Tensor, int]  # (hr, lr, scale)


@dataclass(frozen=True)
class StepResult:
    loss: torch.Tensor       # the global batch's loss (float64, on the device)
    grad_norm: torch.Tensor  # the total L2 norm of the gradients before clipping (on the device)
    finite: torch.Tensor     # loss, gradients (but under fp16's scaler) and updated weights finite (bool)
    stop: bool               # some rank got a stop signal


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
    stop_group: object = None  # a gloo group for the stop flag (None: the default group)

    def __post_init__(self) -> None:
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    def __call__(self, batches: Sequence[Batch], lr: float, stop_pending: bool = False) -> StepResult:
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.zero_grad(set_to_none=self.zero_grad == "free")
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        for k, micro in enumerate(micro_batches(batches, self.accum)):
            # DDP averages gradients over the ranks only after the last micro-batch
            last = k == self.accum - 1 or self.world == 1
            with (contextlib.nullcontext() if last else self.net.no_sync()):
                with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                    part = self.step_loss(self.net, micro, self.loss_fn)
                # 1/accum is a power of two in the tested set-ups: exact, so k micro-batches on one process sum
                # the very gradients k processes average
                self.scaler.scale(part / self.accum).backward()
            loss = loss + part.detach().double() / self.accum  # as float(part) / accum summed on the host
        self.scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        stop = stop_pending
        if self.world > 1:
            loss = loss.clone()
            dist.all_reduce(loss)
            flag = torch.tensor([1.0 if stop_pending else 0.0])
            dist.all_reduce(flag, group=self.stop_group)
            stop = bool(flag[0] > 0)
        value = loss / self.world
        finite = torch.isfinite(value)
        if self.amp != torch.float16:  # fp16: the scaler skips inf steps itself
            finite = finite & torch.isfinite(norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        params = [p.detach() for p in self.model.parameters() if p.is_floating_point()]
        # the max-abs norm is finite exactly when every weight is (identical on every rank: all stop alike)
        finite = finite & torch.isfinite(torch.stack(torch._foreach_norm(params, float("inf")))).all()
        return StepResult(value, norm.detach(), finite, stop)
