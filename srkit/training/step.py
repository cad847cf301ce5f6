"""One optimizer step, as the authors' loops take it: forward, loss, zero_grad, backward, gradient-norm
clipping, optimizer step (the learning rate is the recipe's schedule at this step, set before it runs).

``zero_grad`` chooses the gradient semantics between steps: ``"fill"`` zero-fills them, as PyTorch 0.4 did
when the released weights were trained (a multi-scale model's idle upsampling branches keep getting Adam
updates from their moments), ``"free"`` frees them (today's default; idle branches stay still).

Several processes (DDP) and micro-batches (``accum``) add up the same per-slice gradients: N processes x K
micro-batches give the gradient of the whole global batch whatever N and K, so one process with K = N retraces
an N-process run bit for bit. The one all-reduce that DDP does not do carries the global loss, so every rank
decides alike. Before the step's first collective (the last micro-batch's backward, where DDP reduces the
gradients) the ranks agree (``agree``, srkit.training.agreement) whether to stop after this step, and learn
whether a rank failed: a rank whose data, forward or loss raised says so there and leaves, instead of
leaving its peers in the gradient all-reduce.

A step reads nothing back from the device: the loss, the gradient norm and whether the loss, the gradients
or the updated weights hold a non-finite value stay device tensors (``StepResult``), which the trainer reads
at its print and save interval. ``--amp fp16``'s gradient scaler is the exception: it reads whether to skip
each step.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

from srkit.training.agreement import one_line

LOSSES: dict[str, Callable[[], nn.Module]] = {"L1": nn.L1Loss, "MSE": nn.MSELoss, "SmoothL1": nn.SmoothL1Loss}
Batch = tuple[torch.Tensor, torch.Tensor, int]  # (hr, lr, scale)


@dataclass(frozen=True)
class StepResult:
    loss: torch.Tensor       # the global batch's loss (float64, on the device)
    grad_norm: torch.Tensor  # the total L2 norm of the gradients before clipping (on the device)
    finite: torch.Tensor     # loss, gradients (but under fp16's scaler) and updated weights finite (bool)
    stop: bool               # the ranks agreed to stop after this step


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
    # (this rank's stop wish, its failure line or None) -> whether any rank stops; None: one process
    agree: Optional[Callable[..., bool]] = None

    def __post_init__(self) -> None:
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    def __call__(self, batches: Sequence[Batch], lr: float, stop_pending: bool = False) -> StepResult:
        """The step; ``stop_pending``: this rank got a stop signal (``StepResult.stop``: some rank did)."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.zero_grad(set_to_none=self.zero_grad == "free")
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        stop, agreeing = stop_pending, False
        try:
            for k, micro in enumerate(micro_batches(batches, self.accum)):
                # DDP averages gradients over the ranks only after the last micro-batch
                last = k == self.accum - 1 or self.world == 1
                with (contextlib.nullcontext() if last else self.net.no_sync()):
                    with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                                        enabled=self.amp is not None):
                        part = self.step_loss(self.net, micro, self.loss_fn)
                    if k == self.accum - 1 and self.agree is not None:
                        agreeing = True
                        stop = self.agree(stop_pending)
                    # 1/accum is a power of two in the tested set-ups: exact, so k micro-batches on one process
                    # sum the very gradients k processes average
                    self.scaler.scale(part / self.accum).backward()
                loss = loss + part.detach().double() / self.accum  # as float(part) / accum summed on the host
        except Exception as e:
            if self.agree is not None and not agreeing:  # the peers wait at the agreement: tell them
                try:
                    self.agree(False, one_line(e))
                except Exception:  # noqa: BLE001 - they are gone too: this rank's own error is the news
                    pass
            raise
        self.scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        if self.world > 1:
            loss = loss.clone()
            dist.all_reduce(loss)
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
