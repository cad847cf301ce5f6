"""The training engine: one loop for every registered model family (srkit.registry).

``Trainer(family, arch, scales, cfg)`` sets a run up (process group, model from the family's ``build``,
initial or pretrained weights, optimizer from the family's recipe, resume, data) and ``train()`` runs the
loop: the family's ``step_loss`` on each step's batches, gradient-norm clipping, the learning rate halved
every ``decay`` steps, validation (Y-channel PSNR/SSIM at every training scale) every ``print_interval``
steps, atomic checkpoints (last ``keep`` plus the best; weights carry their architecture flags), exact
resume, TensorBoard + CSV logs and a progress bar. Under ``torchrun`` it runs DistributedDataParallel
(NCCL on GPU, gloo on CPU; rank 0 validates, logs and saves); mixed precision and channels_last on CUDA.
Problems raise :class:`TrainingError` (or CheckpointError / TrainDataError); the CLI turns them into one line.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
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
from srkit.registry import Family, describe_any
from srkit.sampler import Predictor, evaluate_folder
from srkit.train_data import StepBatches

LOSSES = {"L1": nn.L1Loss, "MSE": nn.MSELoss, "SmoothL1": nn.SmoothL1Loss}


class TrainingError(RuntimeError):
    """A run that cannot start or go on; the message says why and what to do."""


def setup_distributed(cpu: bool) -> tuple[int, int, torch.device]:
    """(rank, world, device). Under torchrun: one process per GPU (NCCL) or per CPU slot (gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() and not cpu
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    else:
        rank, local = 0, 0
    if use_cuda:
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def lr_at(cfg: argparse.Namespace, step: int) -> float:
    return cfg.lr * (0.5 ** (step // cfg.decay))


def _as_is(batch):
    return batch


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # loader workers crop and copy; leave the cores to the training process


def _digest(model: nn.Module) -> str:
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


class Trainer:
    """Trains ``family.build(arch)`` at ``scales`` with the options in ``cfg`` (see srkit.train_cli)."""

    def __init__(self, family: Family, arch: dict, scales: tuple[int, ...], cfg: argparse.Namespace) -> None:
        self.family, self.arch, self.scales, self.cfg = family, dict(arch), tuple(scales), cfg
        self.run_dir = Path(cfg.ckpt_dir) / cfg.ckpt_name
        self.rank, self.world, self.device = setup_distributed(cfg.cpu)
        if cfg.num_gpu > 1 and self.world == 1:
            raise TrainingError(f"--num_gpu {cfg.num_gpu}: launch one process per GPU instead, with\n  torchrun "
                                f"--nproc_per_node={cfg.num_gpu} <the same command without --num_gpu>")
        self._check_validation()
        self.model = self._build_model()
        self.optim = family.recipe.optimizer([p for p in self.model.parameters() if p.requires_grad], cfg.lr)
        self.loss_fn = LOSSES[cfg.loss_fn]()
        self.step, self.best = 0, -math.inf
        if cfg.resume:
            self._resume()
        self.net = self.model
        if self.world > 1:  # a step that uses one of several scales leaves the other branches idle
            idle = len(self.scales) > 1 and family.recipe.scales_per_step == "one"
            self.net = nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=idle)
        self.data = StepBatches(cfg.train_data_path, self.scales, cfg.patch_size, cfg.batch_size, seed=cfg.seed,
                                rank=self.rank, per_step=family.recipe.scales_per_step)
        self.amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.amp) if self.device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    # ---- set-up -------------------------------------------------------------------------------------
    @property
    def saved_arch(self) -> dict:
        return {"family": self.family.name, **self.arch}

    def _check_validation(self) -> None:
        for s in self.scales:
            try:
                pairs, _ = find_pairs(Path(self.cfg.valid_data_path), s)
            except DatasetError as e:
                raise TrainingError(f"validation folder unusable: {e}") from None
            if not pairs:
                raise TrainingError(f"validation folder unusable: {self.cfg.valid_data_path} has no images for x{s}")

    def _build_model(self) -> nn.Module:
        torch.manual_seed(self.cfg.seed)  # reproducible initial weights
        model = self.family.build(self.arch)
        if self.cfg.pretrained:
            path, _ = zoo.resolve(self.cfg.pretrained)
            sd, _ = read_checkpoint(path)
            load_weights(model, sd, f"--pretrained {path}", describe_any)
        model = model.to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        return model

    def _checkpoints(self) -> list[Path]:
        return sorted(self.run_dir.glob("step_*.pth.tar"))

    def _resume(self) -> None:
        ckpts = self._checkpoints()
        if not ckpts:
            raise TrainingError(f"--resume: no checkpoint in {self.run_dir}")
        state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
        saved = state.get("arch")
        if saved is not None and saved != self.saved_arch:
            diff = sorted(k for k in set(saved) | set(self.saved_arch) if saved.get(k) != self.saved_arch.get(k))
            raise TrainingError(f"--resume: {ckpts[-1]} was trained with other architecture flags: "
                                + "; ".join(f"{k} {saved.get(k)} (now {self.saved_arch.get(k)})" for k in diff))
        load_weights(self.model, state["model_state_dict"], str(ckpts[-1]), describe_any)
        self.optim.load_state_dict(state["optimizer_state_dict"])
        self.step, self.best = int(state["step"]), float(state["best_psnr"])
        torch.set_rng_state(state["rng_torch"])  # the data RNG is a function of the step (see train_data)
        if self.rank == 0:
            print(f"resumed {ckpts[-1]} at step {self.step}")

    # ---- loop ---------------------------------------------------------------------------------------
    def train(self) -> list[float]:
        """Run from the current step to ``max_steps``; returns the loss of every step run."""
        cfg, is_main = self.cfg, self.rank == 0
        writer, log = None, None
        self.run_dir.mkdir(parents=True, exist_ok=True)  # every rank: --debug_sync writes per-rank files
        if is_main:
            config = {**vars(cfg), "arch": self.saved_arch, "scales": list(self.scales)}
            (self.run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step + 1)
            log = self._open_csv()
        sync_log = open(self.run_dir / f"sync_rank{self.rank}.txt", "a") if cfg.debug_sync else None
        loader = DataLoader(self.data, batch_size=None, sampler=range(self.step, cfg.max_steps),
                            num_workers=cfg.workers, collate_fn=_as_is, worker_init_fn=_one_thread,
                            persistent_workers=False, pin_memory=self.device.type == "cuda")
        losses = []
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not is_main, unit="step", dynamic_ncols=True)
        self.model.train()
        for batches in loader:
            lr = lr_at(cfg, self.step)
            value = self._step(batches, lr)
            self.step += 1
            losses.append(value)
            if sync_log:
                sync_log.write(f"{self.step} {_digest(self.model)}\n")
            if is_main:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.1e}")
                writer.add_scalar("loss", value, self.step)
                writer.add_scalar("lr", lr, self.step)
                row = {"step": self.step, "loss": value, "lr": lr}
                if self.step % cfg.print_interval == 0 or self.step == cfg.max_steps:
                    row.update(self._validate_and_save(writer))
                log[1].writerow(row)
                log[0].flush()
        bar.close()
        if sync_log:
            sync_log.close()
        if is_main:
            writer.close()
            log[0].close()
        if self.world > 1:
            dist.barrier()
            dist.destroy_process_group()
        return losses

    def _step(self, batches: list, lr: float) -> float:
        for g in self.optim.param_groups:
            g["lr"] = lr
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            loss = self.family.step_loss(self.net, [self._to_device(b) for b in batches], self.loss_fn)
        self.optim.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optim)
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.scaler.step(self.optim)
        self.scaler.update()
        return float(loss.detach())

    def _to_device(self, batch: tuple) -> tuple:
        hr, lr, s = batch
        mf = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        return (hr.to(self.device, non_blocking=True), lr.to(self.device, non_blocking=True).contiguous(memory_format=mf), s)

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

    def _validate_and_save(self, writer) -> dict:
        self.model.eval()
        predict = Predictor(self.model, tile=0, fast=False)
        out = {}
        for s in self.scales:
            res = evaluate_folder(predict, Path(self.cfg.valid_data_path), s, None, self.device, progress=False)
            summ = res.summary()
            out[f"psnr_x{s}"], out[f"ssim_x{s}"] = summ["psnr"], summ["ssim"]
            writer.add_scalar(f"psnr_x{s}", summ["psnr"], self.step)
            writer.add_scalar(f"ssim_x{s}", summ["ssim"], self.step)
        self.model.train()
        score = float(np.mean([out[f"psnr_x{s}"] for s in self.scales]))
        tqdm.write(f"step {self.step}: " + "  ".join(f"x{s} {out[f'psnr_x{s}']:.3f} dB / {out[f'ssim_x{s}']:.4f}"
                                                      for s in self.scales))
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        if score > self.best:
            self.best = score
            save_weights(self.run_dir / "best.pth", weights, self.saved_arch)
        save_weights(self.run_dir / f"{self.cfg.ckpt_name}.pth", weights, self.saved_arch)
        save_atomic({"step": self.step, "model_state_dict": weights, "optimizer_state_dict": self.optim.state_dict(),
                     "best_psnr": self.best, "arch": self.saved_arch,
                     "config": {k: str(v) for k, v in vars(self.cfg).items()}, "rng_torch": torch.get_rng_state()},
                    self.run_dir / f"step_{self.step:07d}.pth.tar")
        for old in self._checkpoints()[:-self.cfg.keep]:
            old.unlink()
        return out
