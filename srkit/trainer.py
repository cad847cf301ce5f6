"""The training engine: one loop for every registered model family (srkit.registry).

``Trainer(family, arch, scales, cfg)`` sets a run up: the process group (with a timeout), the model from the
family's ``build``, initial or pretrained weights, the optimizer from the family's recipe, resume, data.
``train()`` runs the loop:

- the family's ``step_loss`` on each step's batches, gradient-norm clipping, and the learning rate halved every
  ``decay`` steps;
- validation (Y-channel PSNR/SSIM at every training scale, sharded over the ranks) every ``print_interval``
  steps;
- checkpoints every ``save_interval`` steps: atomic, the last ``keep`` by step number plus the best; the
  weights carry their architecture flags;
- TensorBoard + CSV logs and a progress bar.

``--batch_size`` is the global batch: each of N DDP processes (NCCL on GPU, gloo on CPU) trains on its slice,
in ``--grad_accum`` K micro-batches if asked (same gradient, less memory). N processes x K micro-batches sum the
same per-slice gradients whatever N and K, so one GPU with K = N retraces an N-GPU run.
Faults end cleanly:

- SIGTERM / SIGINT / SIGUSR1 stop every rank at the same step, which is checkpointed (:class:`Stopped`).
- A non-finite loss or gradient stops the run before anything non-finite is saved (:class:`Diverged`).
- A run folder holding a run is resumed (when asked, or ``--resume auto``, the default under torchrun) or
  refused, never overwritten.

Problems raise :class:`TrainingError` (or CheckpointError / TrainDataError); the CLI turns them into one line.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import math
import os
import re
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from srkit import zoo
from srkit.benchmark import DatasetError, find_pairs
from srkit.checkpoint import load_weights, read_checkpoint, save_atomic, save_weights
from srkit.distributed import ProcessGroupError, leave, setup_distributed
from srkit.registry import Family, describe_any
from srkit.sampler import Predictor, evaluate_folder, gather_result, save_text
from srkit.train_data import StepBatches

LOSSES = {"L1": nn.L1Loss, "MSE": nn.MSELoss, "SmoothL1": nn.SmoothL1Loss}
# What a resumed run must share with the saved one for the bit-exact continuation to hold.
RESUME_MUST_MATCH = ("scale", "patch_size", "batch_size", "seed", "lr", "decay", "loss_fn", "clip")
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, n))


class TrainingError(RuntimeError):
    """A run that cannot start or go on; the message says why and what to do."""


class Diverged(TrainingError):
    """A non-finite loss, gradient or weight; nothing non-finite was saved."""


class Stopped(TrainingError):
    """Stopped by a signal (pre-emption, Ctrl-C) after checkpointing the step reached."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def lr_at(cfg: argparse.Namespace, step: int) -> float:
    return cfg.lr * (0.5 ** (step // cfg.decay))


def _as_is(batch):
    return batch


def _micro_batches(batches: list, n: int) -> list[list]:
    """Split each (hr, lr, scale) batch of a step along the batch dimension into ``n`` consecutive parts."""
    if n == 1:
        return [batches]
    parts = [[(hr, lr, s) for hr, lr in zip(hr_all.chunk(n), lr_all.chunk(n))] for hr_all, lr_all, s in batches]
    return [list(p) for p in zip(*parts)]


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # loader workers crop and copy; leave the cores to the training process


def _digest(model: nn.Module) -> str:
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _finite(tensors) -> bool:
    return all(bool(torch.isfinite(t.detach()).all()) for t in tensors if t.is_floating_point())


def step_of(path: Path) -> int:
    return int(re.fullmatch(r"step_(\d+)\.pth\.tar", path.name).group(1))


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


class Trainer:
    """Trains ``family.build(arch)`` at ``scales`` with the options in ``cfg`` (see srkit.train_cli)."""

    def __init__(self, family: Family, arch: dict, scales: tuple[int, ...], cfg: argparse.Namespace) -> None:
        self.family, self.arch, self.scales, self.cfg = family, dict(arch), tuple(scales), cfg
        self.run_dir = Path(cfg.ckpt_dir) / cfg.ckpt_name
        try:
            self.rank, self.world, self.device = setup_distributed(cfg.cpu, cfg.dist_timeout)
        except ProcessGroupError as e:
            raise TrainingError(str(e)) from None
        try:
            self._setup()
        except BaseException:
            leave()
            raise

    # ---- set-up -------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        if cfg.num_gpu > 1 and self.world == 1:
            raise TrainingError(f"--num_gpu {cfg.num_gpu}: launch one process per GPU instead, with\n  torchrun "
                                f"--nproc_per_node={cfg.num_gpu} <the same command without --num_gpu>")
        accum = getattr(cfg, "grad_accum", 1)
        if cfg.batch_size % (self.world * accum):
            raise TrainingError(f"--batch_size {cfg.batch_size} is the global batch and must split evenly over "
                                f"the {self.world} processes" + (f" x {accum} micro-batches (--grad_accum)"
                                                                 if accum > 1 else ""))
        self._check_validation()
        self.model = self._build_model()
        self.optim = self.family.recipe.optimizer([p for p in self.model.parameters() if p.requires_grad], cfg.lr)
        self.loss_fn = LOSSES[cfg.loss_fn]()
        self.step, self.best = 0, -math.inf
        self._claim_run_dir()
        self.net = self.model
        if self.world > 1:  # a step that uses one of several scales leaves the other branches idle
            idle = len(self.scales) > 1 and self.family.recipe.scales_per_step == "one"
            self.net = nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=idle)
        self.data = StepBatches(cfg.train_data_path, self.scales, cfg.patch_size, cfg.batch_size, seed=cfg.seed,
                                rank=self.rank, world=self.world, per_step=self.family.recipe.scales_per_step)
        self.amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.amp) if self.device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self._signal: int | None = None

    @property
    def saved_arch(self) -> dict:
        return {"family": self.family.name, **self.arch}

    def _check_validation(self) -> None:
        for s in self.scales:
            try:
                pairs, _ = find_pairs(Path(self.cfg.valid_data_path), s)
            except DatasetError as e:
                raise TrainingError(f"--valid_data_path: {e}") from None
            if not pairs:
                raise TrainingError(f"--valid_data_path {self.cfg.valid_data_path} has no images for x{s}")

    def _build_model(self) -> nn.Module:
        torch.manual_seed(self.cfg.seed)  # reproducible initial weights
        model = self.family.build(self.arch)
        if self.cfg.pretrained:
            path, _ = zoo.resolve(self.cfg.pretrained)
            sd, _ = read_checkpoint(path)
            load_weights(model, sd, f"--pretrained {path}", describe_any)
        model = model.to(self.device, torch.float64 if getattr(self.cfg, "debug_float64", False) else None)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        return model

    def _checkpoints(self) -> list[Path]:
        """Step checkpoints, oldest first, ordered by step number."""
        return sorted(self.run_dir.glob("step_*.pth.tar"), key=step_of)

    def _claim_run_dir(self) -> None:
        """Resume, start fresh, or refuse: a folder that holds a run is never overwritten."""
        mode = self.cfg.resume or ("auto" if under_torchrun() else "no")
        if self.rank == 0 and self.run_dir.is_dir():
            for orphan in self.run_dir.glob("*.tmp"):  # a save killed half-way; never under a final name
                orphan.unlink()
        ckpts = self._checkpoints()
        held = ckpts or (self.run_dir / "log.csv").exists()
        if mode == "no" and held:
            newest = f"(newest checkpoint: step {step_of(ckpts[-1])})" if ckpts else "(a log, no checkpoint)"
            raise TrainingError(f"{self.run_dir} already holds a run {newest}: add --resume to continue it, or "
                                f"choose another --ckpt_name")
        if mode == "yes" and not ckpts:
            raise TrainingError(f"--resume: no checkpoint in {self.run_dir}")
        if ckpts:  # yes, or auto (an elastic restart); auto without a checkpoint starts from step 0
            self._resume(ckpts)

    def _resume(self, ckpts: list[Path]) -> None:
        for path in reversed(ckpts):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                break
            except Exception as e:  # noqa: BLE001 - a truncated or corrupt file: fall back to the previous one
                if self.rank == 0:
                    tqdm.write(f"warning: {path.name} is unreadable ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:120]}); trying the previous checkpoint", file=sys.stderr)
        else:
            raise TrainingError(f"--resume: no readable checkpoint in {self.run_dir}")
        self._check_resume_flags(path, state)
        load_weights(self.model, state["model_state_dict"], str(path), describe_any)
        self.optim.load_state_dict(state["optimizer_state_dict"])
        self.step, self.best = int(state["step"]), float(state["best_psnr"])
        torch.set_rng_state(state["rng_torch"])  # the data RNG is a function of the step (see train_data)
        if self.rank == 0:
            tqdm.write(f"resumed {path} at step {self.step}", file=sys.stderr)

    def _check_resume_flags(self, path: Path, state: dict) -> None:
        saved_arch, saved_cfg = state.get("arch"), state.get("config", {})
        clashes = []
        if saved_arch is not None and saved_arch != self.saved_arch:
            clashes += [f"{k} {saved_arch.get(k)} (now {self.saved_arch.get(k)})"
                        for k in sorted(set(saved_arch) | set(self.saved_arch))
                        if saved_arch.get(k) != self.saved_arch.get(k)]
        clashes += [f"--{k} {saved_cfg[k]} (now {getattr(self.cfg, k)})" for k in RESUME_MUST_MATCH
                    if k in saved_cfg and saved_cfg[k] != str(getattr(self.cfg, k))]
        if clashes:
            raise TrainingError(f"--resume: {path} was trained with other flags: {'; '.join(clashes)}. Resume with "
                                f"the run's own flags (see {self.run_dir / 'config.json'}), or start a new run")

    # ---- loop ---------------------------------------------------------------------------------------
    def train(self, handle_signals: bool = False) -> list[float]:
        """Run from the current step to ``max_steps`` (or ``stop_after`` steps); returns the loss of every step
        run (the global batch's). ``handle_signals`` (the CLI's choice: handlers are process-wide) turns
        SIGTERM / SIGINT / SIGUSR1 into a checkpoint at the current step and :class:`Stopped`."""
        old = self._install_handlers() if handle_signals else {}
        try:
            return self._loop()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            leave()

    def _install_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum, _frame):
            self._signal = signum
        return {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}

    def _loop(self) -> list[float]:
        cfg, is_main = self.cfg, self.rank == 0
        writer, log = None, None
        self.run_dir.mkdir(parents=True, exist_ok=True)  # every rank: --debug_sync writes per-rank files
        if is_main:
            config = {**vars(cfg), "arch": self.saved_arch, "scales": list(self.scales), "world_size": self.world}
            save_text(self.run_dir / "config.json", json.dumps(config, indent=2, default=str))
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step + 1)
            log = self._open_csv()
        sync_log = open(self.run_dir / f"sync_rank{self.rank}.txt", "a") if cfg.debug_sync else None
        end = min(cfg.max_steps, self.step + cfg.stop_after) if cfg.stop_after else cfg.max_steps
        loader = DataLoader(self.data, batch_size=None, sampler=range(self.step, end),
                            num_workers=cfg.workers, collate_fn=_as_is, worker_init_fn=_one_thread,
                            persistent_workers=False, pin_memory=self.device.type == "cuda")
        losses = []
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not is_main, unit="step", dynamic_ncols=True)
        self.model.train()
        try:
            for batches in loader:
                lr = lr_at(cfg, self.step)
                value, stop = self._step(batches, lr)
                self.step += 1
                losses.append(value)
                if sync_log:
                    sync_log.write(f"{self.step} {_digest(self.model)}\n")
                    sync_log.flush()
                row = {"step": self.step, "loss": value, "lr": lr}
                validated = self.step % cfg.print_interval == 0 or self.step == cfg.max_steps
                if validated:
                    row.update(self._validate(writer))
                if stop or validated or self.step % cfg.save_interval == 0 or self.step == end:
                    self._save(row)
                if is_main:
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.1e}")
                    writer.add_scalar("loss", value, self.step)
                    writer.add_scalar("lr", lr, self.step)
                    log[1].writerow(row)
                    log[0].flush()
                if stop:
                    if self.world > 1:
                        dist.barrier()  # rank 0's checkpoint is written before any rank exits
                    raise Stopped(self._stop_message(stop), stop)
        finally:
            bar.close()
            if sync_log:
                sync_log.close()
            if is_main:
                writer.close()
                log[0].close()
        if self.world > 1:
            dist.barrier()
        return losses

    def _stop_message(self, signum: int) -> str:
        name = signal.Signals(signum).name
        return (f"stopped by {name} at step {self.step}; checkpoint {self.run_dir / f'step_{self.step:07d}.pth.tar'}"
                f" written. Continue with the same command plus --resume (under torchrun: --resume auto, the "
                f"default)")

    def _step(self, batches: list, lr: float) -> tuple[float, int]:
        """One optimizer step. Returns (the global batch's loss, a stop signal any rank received or 0)."""
        for g in self.optim.param_groups:
            g["lr"] = lr
        self.optim.zero_grad(set_to_none=True)
        accum = getattr(self.cfg, "grad_accum", 1)
        loss = torch.zeros((), dtype=torch.float64)
        for k, micro in enumerate(_micro_batches(batches, accum)):
            # DDP averages gradients over the ranks only after the last micro-batch
            last = k == accum - 1 or self.world == 1
            with (contextlib.nullcontext() if last else self.net.no_sync()):
                with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                    part = self.family.step_loss(self.net, [self._to_device(b) for b in micro], self.loss_fn)
                # 1/accum is a power of two in the tests' set-ups: exact, so k micro-batches on one process sum
                # the very gradients k processes average
                self.scaler.scale(part / accum).backward()
            loss += float(part.detach()) / accum
        self.scaler.unscale_(self.optim)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        # one collective carries the global loss and whether any rank got a stop signal: all ranks decide alike
        shared = torch.tensor([float(loss.detach()), 1.0 if self._signal else 0.0], dtype=torch.float64)
        if self.world > 1:
            shared = shared.to(self.device)
            dist.all_reduce(shared)
            shared = shared.cpu()
        value = float(shared[0]) / self.world
        stop = (self._signal or int(signal.SIGTERM)) if shared[1] > 0 else 0
        grads_ok = self.amp == torch.float16 or math.isfinite(float(norm))  # fp16: the scaler skips inf steps
        if not (math.isfinite(value) and grads_ok):
            raise Diverged(self._divergence(value, float(norm), lr))
        self.scaler.step(self.optim)
        self.scaler.update()
        if not _finite(self.model.parameters()):  # identical on every rank: all stop alike
            raise Diverged(self._divergence(value, float(norm), lr, "the update made the weights non-finite"))
        return value, stop

    def _divergence(self, loss: float, norm: float, lr: float, why: str = "") -> str:
        good = self._checkpoints()
        return (f"training diverged at step {self.step + 1}: loss {loss:g}, gradient norm {norm:g}, learning rate "
                f"{lr:g}{f' ({why})' if why else ''}. Nothing non-finite was saved; "
                + (f"the newest good checkpoint is {good[-1]}" if good else "no checkpoint was written yet")
                + ". Lower --lr (or resume from that checkpoint with other settings in a new run)")

    def _to_device(self, batch: tuple) -> tuple:
        hr, lr, s = batch
        mf = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        dtype = next(self.model.parameters()).dtype
        return (hr.to(self.device, dtype, non_blocking=True),
                lr.to(self.device, dtype, non_blocking=True).contiguous(memory_format=mf), s)

    def _open_csv(self):
        path = self.run_dir / "log.csv"
        fields = ["step", "loss", "lr"] + [f"{m}_x{s}" for s in self.scales for m in ("psnr", "ssim")]
        rows = []
        if path.exists():  # resuming: keep the rows up to the resumed step only
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        f = open(path, "w", newline="")
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
        return f, w

    def _validate(self, writer) -> dict:
        """PSNR/SSIM at every training scale; the images are sharded over the ranks, the means gathered."""
        self.model.eval()
        predict = Predictor(self.model, tile=0, fast=False)
        out = {}
        for s in self.scales:
            res = evaluate_folder(predict, Path(self.cfg.valid_data_path), s, None, self.device, progress=False,
                                  shard=(self.rank, self.world))
            summ = gather_result(res).summary()
            out[f"psnr_x{s}"], out[f"ssim_x{s}"] = summ["psnr"], summ["ssim"]
            if writer is not None:
                writer.add_scalar(f"psnr_x{s}", summ["psnr"], self.step)
                writer.add_scalar(f"ssim_x{s}", summ["ssim"], self.step)
        self.model.train()
        if self.rank == 0:
            tqdm.write(f"step {self.step}: " + "  ".join(
                f"x{s} {out[f'psnr_x{s}']:.3f} dB / {out[f'ssim_x{s}']:.4f}" for s in self.scales))
        return out

    def _save(self, row: dict) -> None:
        """Checkpoint this step (rank 0): weights (best.* when the validation mean is the best so far), the
        step file, then rotation. Non-finite weights are never written."""
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        if not _finite(weights.values()):  # every rank checks (the weights are identical): all stop alike
            raise Diverged(f"training diverged by step {self.step}: the weights hold non-finite values. Nothing "
                           f"non-finite was saved. Lower --lr")
        if self.rank != 0:
            return
        ext = getattr(self.cfg, "weights_format", "pth")
        try:
            scores = [row[f"psnr_x{s}"] for s in self.scales if f"psnr_x{s}" in row]
            if scores and all(math.isfinite(v) for v in scores) and float(np.mean(scores)) > self.best:
                self.best = float(np.mean(scores))
                save_weights(self.run_dir / f"best.{ext}", weights, self.saved_arch)
            save_weights(self.run_dir / f"{self.cfg.ckpt_name}.{ext}", weights, self.saved_arch)
            save_atomic({"step": self.step, "model_state_dict": weights,
                         "optimizer_state_dict": self.optim.state_dict(), "best_psnr": self.best,
                         "arch": self.saved_arch, "config": {k: str(v) for k, v in vars(self.cfg).items()},
                         "rng_torch": torch.get_rng_state()},
                        self.run_dir / f"step_{self.step:07d}.pth.tar")
        except OSError as e:
            raise TrainingError(f"could not save the checkpoint of step {self.step}: {e.strerror or e}. The "
                                f"previous checkpoints are intact") from None
        for old in self._checkpoints()[:-self.cfg.keep]:
            old.unlink()
