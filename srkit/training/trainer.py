"""The training loop of every registered model family, composed of the parts of srkit.training:

- ``config.TrainConfig``: the options; ``rundir.RunDir``: claim, resume, checkpoints and rotation;
  ``logs.RunLogs``: config.json, log.csv, TensorBoard, sync digests; ``validation``: PSNR / SSIM per scale;
  ``step.StepRunner``: one optimizer step.
- The recipe of the family (``Family.recipe``) gives the optimizer, the loss and the learning-rate schedule;
  ``Family.step_loss`` the loss of a step's batches.

``Trainer(family, cfg)`` sets a run up: the process group (with a timeout), the model from the family's
``build`` (seeded), initial or pretrained weights, the optimizer, resume, and the batch source: by default the
DIV2K h5 batches (``srkit.data.train_data.StepBatches``); any sequence whose item ``[step]`` is the step's
list of (hr, lr, scale) batches can be handed in instead (``batches=``: the tests feed the authors' recorded
batches this way). ``train()`` runs the loop and returns a :class:`StepRecord` per step run.

Faults end cleanly: SIGTERM / SIGINT / SIGUSR1 (to the process or its whole group, loader workers included:
they ignore them and the main process decides) stop every rank at the same step, which is checkpointed
(:class:`Stopped`); a non-finite loss, gradient or weight stops the run before anything non-finite is saved
(:class:`Diverged`). A rank that fails tells the others at their next agreement (srkit.training.agreement),
so every rank is out within one step, whatever launched them.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from srkit.core.checkpoint import load_weights, read_checkpoint
from srkit.core.distributed import ProcessGroupError, leave, setup_distributed
from srkit.core.provenance import environment
from srkit.core.registry import Family, describe_any
from srkit.data.device_batches import DeviceBatches
from srkit.data.train_data import StepBatches, as_float, place
from srkit.training.agreement import Agreement, gather, is_peer_loss, one_line, peer_lost
from srkit.training.config import RESUME_MUST_MATCH, ZERO_GRAD, TrainConfig
from srkit.training.determinism import kernels
from srkit.training.errors import Diverged, PeerFailed, Stopped, TrainingError
from srkit.training.logs import RunLogs
from srkit.training.readback import Readback
from srkit.training.rundir import RunDir
from srkit.training.step import LOSSES, Batch, StepResult, StepRunner
from srkit.training.validation import check_folder, validate
from srkit.weights import zoo

T = TypeVar("T")
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, n))


@dataclass(frozen=True)
class StepRecord:
    step: int          # steps done after this one (1 for the first)
    lr: float
    loss: float
    grad_norm: float


def _as_is(batch):
    return batch


def loader_worker_init(_: int) -> None:
    """A data-loading worker: one thread (leave the cores to training), and deaf to stop signals: a signal
    to the whole process group (Slurm, torchrun, Ctrl-C) is the main process's to act on, after the step."""
    torch.set_num_threads(1)
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _finite(tensors) -> bool:  # at a save: reads every tensor
    return all(bool(torch.isfinite(t.detach()).all()) for t in tensors if t.is_floating_point())


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


class Trainer:
    """Trains ``family.build(cfg.arch)`` as ``cfg`` says (see the module docstring)."""

    def __init__(self, family: Family, cfg: TrainConfig, batches: Sequence[list[Batch]] | None = None) -> None:
        self.family, self.cfg, self.arch = family, cfg, dict(cfg.arch)
        self.scales = tuple(family.train_scales) if cfg.scale == 0 else (cfg.scale,)
        self.run = None
        try:
            self.rank, self.world, self.device = setup_distributed(cfg.cpu, cfg.dist_timeout)
        except ProcessGroupError as e:
            raise TrainingError(str(e)) from None
        self.run = RunDir(Path(cfg.ckpt_dir) / cfg.ckpt_name, self.rank)
        try:
            self._setup(batches)
        except BaseException:
            self.run.release()
            leave()
            raise

    # ---- set-up -------------------------------------------------------------------------------------
    def _setup(self, batches: Sequence[list[Batch]] | None) -> None:
        cfg = self.cfg
        self._all_ready(self._check_and_build)
        state = self.run.claim(cfg.resume or ("auto" if under_torchrun() else "no"))
        self._all_ready(lambda: self._resume_and_load(state, batches))
        self.net = self.model
        if self.world > 1:  # a step that uses one of several scales leaves the other branches idle
            idle = len(self.scales) > 1 and self.family.recipe.scales_per_step == "one"
            self.net = nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=idle)
        if cfg.fused_adam:
            self._fuse_adam()
        self.agreement = Agreement(self.rank, self.world, self._stop_group())
        self.runner = StepRunner(self.net, self.model, self.optimizer, self.family.step_loss, LOSSES[cfg.loss_fn](),
                                 cfg.clip, self.accum, cfg.zero_grad, self.amp, self.world, self.device,
                                 lambda stop, failure=None: self.agreement(self.step + 1, stop, failure))
        self._signal: int | None = None

    def _all_ready(self, what: Callable[[], None]) -> None:
        """``what()`` (set-up that reads this rank's own files: the validation folder, pretrained weights, a
        checkpoint, the training data), then one gather: a rank that failed raises its own error, the others
        one line naming it, instead of waiting for it in the next collective."""
        failure = None
        try:
            what()
        except Exception as e:  # noqa: BLE001 - told to the other ranks first
            failure = e
        lines = gather(None if failure is None else one_line(failure))
        if failure is not None:
            raise failure
        bad = next((r for r, line in enumerate(lines) if line is not None), None)
        if bad is not None:
            raise PeerFailed(f"rank {bad} failed at set-up: {lines[bad]}")

    def _check_and_build(self) -> None:
        """The flags' checks, the model and the optimizer."""
        cfg = self.cfg
        self.accum = cfg.grad_accum
        if cfg.num_gpu > 1:
            if self.world == 1:  # the authors' --num_gpu N: the same global batch on what is here
                self.accum *= cfg.num_gpu
                self._say(f"--num_gpu {cfg.num_gpu}: one process here; it trains the same global batch of "
                          f"{cfg.batch_size} in {self.accum} micro-batches (--grad_accum {self.accum}), which "
                          f"retraces {cfg.num_gpu} processes bit for bit")
            elif self.world != cfg.num_gpu:
                raise TrainingError(f"--num_gpu {cfg.num_gpu} but {self.world} processes were launched: drop "
                                    f"--num_gpu under torchrun, or make them agree")
        if cfg.batch_size % (self.world * self.accum):
            raise TrainingError(f"--batch_size {cfg.batch_size} is the global batch and must split evenly over "
                                f"the {self.world} processes" + (f" x {self.accum} micro-batches (--grad_accum)"
                                                                 if self.accum > 1 else ""))
        if cfg.valid_data_path is not None:
            check_folder(cfg.valid_data_path, self.scales)
        if cfg.loss_fn not in LOSSES:
            raise TrainingError(f"--loss_fn {cfg.loss_fn}: one of {', '.join(LOSSES)}")
        self.amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.amp)
        if self.amp == torch.float16 and self.device.type != "cuda":
            raise TrainingError("--amp fp16 needs CUDA (its gradient scaler); on the CPU use --amp bf16")
        self.model = self._build_model()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self.family.recipe.optimizer(params, cfg.lr)
        self.step, self.best = 0, -math.inf

    def _resume_and_load(self, state: dict | None, batches: Sequence[list[Batch]] | None) -> None:
        """The resumed state (if any) and the batch source."""
        cfg = self.cfg
        if state is not None:
            self._resume(state)
        self.data = batches if batches is not None else StepBatches(
            cfg.train_data_path, self.scales, cfg.patch_size, cfg.batch_size, seed=cfg.seed, rank=self.rank,
            world=self.world, per_step=self.family.recipe.scales_per_step, channel_order=cfg.channel_order,
            ram_budget=None if cfg.data_ram_gb is None else int(cfg.data_ram_gb * 2 ** 30), say=self._say)
        if cfg.data_on_device and batches is None:
            try:
                self.data = DeviceBatches(self.data, self.device)
            except ValueError as e:
                raise TrainingError(str(e)) from None

    def _stop_group(self):
        """A gloo group for the agreement where the default group is NCCL (it reduces no CPU tensor)."""
        if self.world > 1 and dist.get_backend() != "gloo":
            return dist.new_group(backend="gloo")
        return None

    def _fuse_adam(self) -> None:
        if type(self.optimizer) is not torch.optim.Adam:
            self._say(f"--fused_adam: the recipe's optimizer is {type(self.optimizer).__name__}, not Adam: unchanged")
            return
        for g in self.optimizer.param_groups:  # Adam reads the flag per step
            g["fused"], g["foreach"] = True, None
        self.optimizer.defaults["fused"] = True

    def _say(self, line: str) -> None:
        if self.rank == 0:
            tqdm.write(line, file=sys.stderr)

    @property
    def saved_arch(self) -> dict:
        return {"family": self.family.name, **self.arch}

    def lr_at(self, step: int) -> float:
        """The learning rate of the step with 0-based index ``step`` (the recipe's schedule)."""
        return self.family.recipe.schedule(self.cfg.lr, self.cfg.decay, step)

    def _build_model(self) -> nn.Module:
        torch.manual_seed(self.cfg.seed)  # reproducible initial weights
        model = self.family.build(self.arch)
        if self.cfg.pretrained:
            path, _ = zoo.resolve(self.cfg.pretrained)
            sd, _ = read_checkpoint(path)
            load_weights(model, sd, f"--pretrained {path}", describe_any)
        # contiguous (NCHW) parameters unless --channels_last: optimizers such as AdamP view them flat
        model = model.to(self.device, torch.float64 if self.cfg.debug_float64 else None)
        return model.to(memory_format=torch.channels_last) if self.cfg.channels_last else model

    def _resume(self, state: dict) -> None:
        path = state["_path"]
        saved_arch, saved_cfg = state.get("arch"), state.get("config", {})
        clashes = []
        if saved_arch is not None and saved_arch != self.saved_arch:
            clashes += [f"{k} {saved_arch.get(k)} (now {self.saved_arch.get(k)})"
                        for k in sorted(set(saved_arch) | set(self.saved_arch))
                        if saved_arch.get(k) != self.saved_arch.get(k)]
        now = self.cfg.to_dict()
        clashes += [f"--{k} {saved_cfg[k]} (now {now[k]})" for k in RESUME_MUST_MATCH
                    if k in saved_cfg and saved_cfg[k] != str(now[k])]
        if clashes:
            raise TrainingError(f"--resume: {path} was trained with other flags: {'; '.join(clashes)}. Resume with "
                                f"the run's own flags (see {self.run.path / 'config.json'}), or start a new run")
        load_weights(self.model, state["model_state_dict"], str(path), describe_any)
        self.optimizer.load_state_dict(state["optimizer_state_dict"])
        self.step, self.best = int(state["step"]), float(state["best_psnr"])
        if self.cfg.zero_grad == "fill":
            # PyTorch 0.4's semantics: every parameter that ever got a gradient carries a zero-filled one from
            # then on (those with optimizer state), so the idle branches move after a resume as they did before
            for p, st in self.optimizer.state.items():
                if st:
                    p.grad = torch.zeros_like(p)
        torch.set_rng_state(state["rng_torch"])  # the data RNG is a function of the step (see train_data)
        self._say(f"resumed {path} at step {self.step}")

    # ---- loop ---------------------------------------------------------------------------------------
    def train(self, handle_signals: bool = False) -> list[StepRecord]:
        """Run from the current step to ``max_steps`` (or ``stop_after`` steps). ``handle_signals`` (the
        CLI's choice: handlers are process-wide) turns SIGTERM / SIGINT / SIGUSR1 into a checkpoint at the
        current step and :class:`Stopped`."""
        old = self._install_handlers() if handle_signals else {}
        try:
            with kernels(deterministic=not self.cfg.cudnn_benchmark, benchmark=self.cfg.cudnn_benchmark):
                return self._loop()
        finally:
            self.run.release()
            leave()
            # last: a launcher's SIGTERM to a rank on its way out (torchrun, once a peer failed) is not fatal
            # before the caller has said why
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _install_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum, _frame):
            self._signal = signum
        return {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}

    def _config_record(self) -> dict:
        return {**self.cfg.to_dict(), "arch": self.saved_arch, "scales": list(self.scales),
                "world_size": self.world, "effective_grad_accum": self.accum,
                "zero_grad_means": ZERO_GRAD[self.cfg.zero_grad],
                "recipe": {"optimizer": type(self.optimizer).__name__, "optimizer_args": self.optimizer.defaults,
                           "schedule": self.family.recipe.schedule.__name__, "loss": self.cfg.loss_fn,
                           "scales_per_step": self.family.recipe.scales_per_step},
                **environment(self.device)}

    def _loop(self) -> list[StepRecord]:
        cfg = self.cfg
        logs = self._told(self._open_logs)
        end = min(cfg.max_steps, self.step + cfg.stop_after) if cfg.stop_after else cfg.max_steps
        loader = iter(self._loader(end))
        records: list[StepRecord] = []
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=self.rank != 0, unit="step", dynamic_ncols=True)
        self.model.train()
        try:
            values = Readback(self.device)  # the steps' loss, gradient norm and finiteness, read without waiting
            while (batches := self._told(lambda: next(loader, None))) is not None:
                lr = self.lr_at(self.step)
                res = self._run_step(self._told(lambda: [self._to_device(b) for b in batches]), lr)
                self.step += 1
                values.push((self.step, lr), [res.loss, res.grad_norm, res.finite])
                self._told(lambda: self._after_step(res, values, records, logs, bar, end))
                if res.stop:  # rank 0's checkpoint is written (or its failure known) before any rank exits
                    self.agreement(self.step, False)
                    raise Stopped(self._stop_message(self._signal or signal.SIGTERM), self._signal or signal.SIGTERM)
            self.agreement(self.step, False)  # a failure at the last step's save reaches every rank
        finally:
            bar.close()
            logs.close()
        self._say(self._end_message())
        return records

    def _open_logs(self) -> RunLogs:
        try:
            return RunLogs(self.run.path, self.rank, self.scales, self.step, self._config_record(), self.cfg.debug_sync)
        except OSError as e:  # a disk that filled up since the lock was taken, a folder made read-only
            raise TrainingError(f"could not write the run's logs in {self.run.path}: {e.strerror or e}") from None

    def _told(self, what: Callable[[], T]) -> T:
        """``what()``; an exception in it is first told to the other ranks, at the agreement they wait in
        next (before their next step's gradient all-reduce, or at the end), then raised here."""
        try:
            return what()
        except Exception as e:  # noqa: BLE001 - whatever it is, the peers must not wait for this rank
            if self.world > 1 and is_peer_loss(e):  # a collective in it (validation's gather) lost a peer
                raise peer_lost(self.rank, self.step, e) from None
            if self.world > 1:
                try:
                    self.agreement(self.step, False, one_line(e))
                except Exception:  # noqa: BLE001 - the peers are gone too: this rank's own error is the news
                    pass
            raise

    def _run_step(self, inputs: list[Batch], lr: float) -> StepResult:
        """One step; a collective that fails because a peer ended is one line naming this rank and the step."""
        try:
            return self.runner(inputs, lr, self._signal is not None)
        except RuntimeError as e:
            if self.world > 1 and is_peer_loss(e):
                raise peer_lost(self.rank, self.step + 1, e) from None
            raise

    def _after_step(self, res: StepResult, values: Readback, records: list[StepRecord], logs: RunLogs, bar: tqdm,
                    end: int) -> None:
        """Read back what has landed (stopping at a non-finite step), validate, save and log."""
        cfg = self.cfg
        if cfg.debug_sync:
            logs.digest(self.step, self.model)
        bar.update(1)
        validated = cfg.valid_data_path is not None and (
            self.step % cfg.print_interval == 0 or self.step == cfg.max_steps)
        saved = res.stop or validated or self.step % cfg.save_interval == 0 or self.step == end
        for (step, step_lr), (loss, norm, ok) in values.drain(wait=saved or self.step % cfg.print_interval == 0):
            if not ok:  # before anything of this step or later is saved
                why = "" if not (math.isfinite(loss) and math.isfinite(norm)) else \
                    "the update made the weights non-finite"
                raise Diverged(self._divergence(step, loss, norm, step_lr, why))
            records.append(StepRecord(step, step_lr, loss, norm))
            row = {"step": step, "loss": loss, "lr": step_lr, "grad_norm": norm}
            if step == self.step:
                if validated:
                    row.update(self._validate())
                if saved:
                    self._save(row)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{step_lr:.1e}")
            logs.step(step, row)

    def _end_message(self) -> str:
        """Where the weights went: the final weights file, best.* when validation picked one, the run folder."""
        ext, run = self.cfg.weights_format, self.run.path
        best = run / f"best.{ext}"
        what = (f"trained {self.step} of {self.cfg.max_steps} steps; continue with the same command plus --resume"
                if self.step < self.cfg.max_steps else f"trained {self.step} steps")
        return (f"{what}. Weights: {run / f'{self.cfg.ckpt_name}.{ext}'}"
                + (f" (best validation: {best})" if best.is_file() else "") + f"; the run folder: {run}")

    def _loader(self, end: int):
        """The step batches from the current step to ``end``: gathered on the device (--data_on_device), or from
        persistent, prefetching workers that hand over uint8 (pinned on CUDA)."""
        if isinstance(self.data, DeviceBatches):
            return (self.data[t] for t in range(self.step, end))
        data = self.data.uint8_steps() if isinstance(self.data, StepBatches) else self.data
        workers = self.cfg.workers
        return DataLoader(data, batch_size=None, sampler=range(self.step, end), num_workers=workers,
                          collate_fn=_as_is, worker_init_fn=loader_worker_init, persistent_workers=workers > 0,
                          prefetch_factor=4 if workers else None, pin_memory=self.device.type == "cuda")

    def _validate(self) -> dict:
        out = validate(self.model, self.cfg.valid_data_path, self.scales, self.device, self.rank, self.world,
                       self.step)
        self._say(f"step {self.step}: " + "  ".join(
            f"x{s} {out[f'psnr_x{s}'] or math.nan:.3f} dB / {out[f'ssim_x{s}'] or math.nan:.4f}" for s in self.scales))
        return {k: v for k, v in out.items() if v is not None}

    def _stop_message(self, signum: int) -> str:
        name = signal.Signals(signum).name
        return (f"stopped by {name} at step {self.step}; checkpoint {self.run.step_file(self.step)} written. "
                f"Continue with the same command plus --resume (under torchrun: --resume auto, the default)")

    def _divergence(self, step: int, loss: float, norm: float, lr: float, why: str = "") -> str:
        good = self.run.checkpoints()
        return (f"training diverged at step {step}: loss {loss:g}, gradient norm {norm:g}, learning rate "
                f"{lr:g}{f' ({why})' if why else ''}. Nothing non-finite was saved; "
                + (f"the newest good checkpoint is {good[-1]}" if good else "no checkpoint was written yet")
                + ". Lower --lr (or resume from that checkpoint with other settings in a new run)")

    def _to_device(self, batch: Batch) -> Batch:
        """uint8 windows are flipped and turned on the device (``place``) and become float32 / 255 there, after
        a non-blocking copy (from pinned memory)."""
        if len(batch) == 4:  # a worker's windows and moves
            hr, lr, moves, s = (t.to(self.device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)
            batch = place(hr, lr, moves, s, self.data.bgr)
        hr, lr, s = batch
        dtype = next(self.model.parameters()).dtype

        def move(t: torch.Tensor) -> torch.Tensor:
            if t.dtype == torch.uint8:
                t = as_float(t.to(self.device, non_blocking=True))
            return t.to(self.device, dtype, non_blocking=True)
        return move(hr), move(lr), s

    def _save(self, row: dict) -> None:
        """Checkpoint this step (rank 0): weights (best.* when the validation mean is the best so far), the
        step file, then rotation. Non-finite weights are never written."""
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        if not _finite(weights.values()):  # every rank checks (the weights are identical): all stop alike
            raise Diverged(f"training diverged by step {self.step}: the weights hold non-finite values. Nothing "
                           f"non-finite was saved. Lower --lr")
        if self.rank != 0:
            return
        names = [self.cfg.ckpt_name]
        scores = [row[f"psnr_x{s}"] for s in self.scales if f"psnr_x{s}" in row]
        if scores and all(math.isfinite(v) for v in scores) and float(np.mean(scores)) > self.best:
            self.best = float(np.mean(scores))
            names.insert(0, "best")
        state = {"step": self.step, "model_state_dict": weights, "optimizer_state_dict": self.optimizer.state_dict(),
                 "best_psnr": self.best, "arch": self.saved_arch,
                 "config": {k: str(v) for k, v in self.cfg.to_dict().items()}, "rng_torch": torch.get_rng_state()}
        self.run.save(self.step, state, weights, self.saved_arch, names, self.cfg.weights_format, self.cfg.keep)
