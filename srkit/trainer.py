"""The training loop shared by carn/train.py and overnet/train.py.

L1 (or MSE / SmoothL1) loss, gradient-norm clipping, learning rate halved every ``--decay`` steps,
validation (Y-channel PSNR/SSIM at every training scale) every ``--print_interval`` steps, atomic
checkpoints (last ``--keep`` plus the best), exact ``--resume``, TensorBoard + CSV logs, a progress bar,
DistributedDataParallel under ``torchrun`` (NCCL on GPU, gloo on CPU; rank 0 validates, logs and saves),
and mixed precision / channels_last on CUDA.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from srkit.benchmark import DatasetError, find_pairs
from srkit.checkpoint import read_checkpoint, save_atomic
from srkit.sampler import Predictor, evaluate_folder
from srkit.train_data import StepBatches

LOSSES = {"L1": nn.L1Loss, "MSE": nn.MSELoss, "SmoothL1": nn.SmoothL1Loss}


def add_train_args(p: argparse.ArgumentParser, *, lr: float, max_steps: int, decay: int) -> None:
    """Flags shared by both train.py front-ends (names and defaults as in the authors' code)."""
    p.add_argument("--ckpt_name", required=True, help="run name: checkpoints and logs go to <ckpt_dir>/<ckpt_name>/")
    p.add_argument("--ckpt_dir", default="checkpoint")
    p.add_argument("--train_data_path", default="datasets/DIV2K_train.h5")
    p.add_argument("--valid_data_path", default="datasets/benchmark/Set5", help="validation benchmark folder")
    p.add_argument("--print_interval", type=int, default=1000, help="validate and checkpoint every N steps")
    p.add_argument("--patch_size", type=int, default=64, help="LR patch size")
    p.add_argument("--batch_size", type=int, default=64, help="per process")
    p.add_argument("--max_steps", type=int, default=max_steps)
    p.add_argument("--decay", type=int, default=decay, help="halve the learning rate every N steps")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--clip", type=float, default=10.0, help="gradient-norm clipping")
    p.add_argument("--loss_fn", choices=sorted(LOSSES), default="L1")
    p.add_argument("--num_gpu", type=int, default=1, help="kept for the authors' scripts: launch several "
                   "processes with torchrun --nproc_per_node=N instead")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of this run")
    p.add_argument("--pretrained", default=None, help="initial weights (e.g. a released checkpoint)")
    p.add_argument("--keep", type=int, default=3, help="how many step checkpoints to keep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="data-loading processes")
    p.add_argument("--amp", choices=["fp16", "bf16"], default=None, help="mixed precision (CUDA only)")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--debug_sync", action="store_true", help="record a parameter digest per step and rank")


def setup_distributed(cpu: bool) -> tuple[int, int, torch.device]:
    """(rank, world, device). Under torchrun: one process per GPU (NCCL) or per CPU slot (gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() and not cpu
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    else:
        rank, local = 0, 0
    if use_cuda:
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def batch_loss(net: nn.Module, batch, loss_fn: nn.Module) -> torch.Tensor:
    """Loss of one batch (hr, lr, scale); for a list of such batches (OverNet's multi-scale loss), the sum."""
    if isinstance(batch, list):
        return sum(batch_loss(net, b, loss_fn) for b in batch)
    hr, lr, s = batch
    return loss_fn(net(lr, s), hr)


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
    """Trains ``model`` on :class:`StepBatches`; ``all_scales`` gives every step a batch per scale (summed loss)."""

    def __init__(self, model: nn.Module, cfg: argparse.Namespace, scales: tuple[int, ...],
                 make_optimizer: Callable, all_scales: bool = False) -> None:
        self.cfg, self.scales = cfg, scales
        self.rank, self.world, self.device = setup_distributed(cfg.cpu)
        self.run_dir = Path(cfg.ckpt_dir) / cfg.ckpt_name
        self._check_validation()
        if cfg.num_gpu > 1 and self.world == 1:
            raise SystemExit(f"--num_gpu {cfg.num_gpu}: launch one process per GPU with\n  torchrun "
                             f"--nproc_per_node={cfg.num_gpu} {sys.argv[0]} {' '.join(a for a in sys.argv[1:])}")
        torch.manual_seed(cfg.seed)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.pretrained:
            sd, _ = read_checkpoint(cfg.pretrained)
            self.model.load_state_dict(sd)
        self.optim = make_optimizer([p for p in self.model.parameters() if p.requires_grad], cfg.lr)
        self.loss_fn = LOSSES[cfg.loss_fn]()
        self.step, self.best = 0, -1.0
        if cfg.resume:
            self._resume()
        self.net = self.model
        if self.world > 1:
            unused = getattr(self.model, "multi_scale", False)  # multi-scale CARN: two branches idle per step
            self.net = nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=unused)
        self.data = StepBatches(cfg.train_data_path, scales, cfg.patch_size, cfg.batch_size, seed=cfg.seed,
                                rank=self.rank, all_scales=all_scales)
        self.amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.amp) if self.device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    # ---- set-up -------------------------------------------------------------------------------------
    def _check_validation(self) -> None:
        for s in self.scales:
            try:
                pairs, _ = find_pairs(Path(self.cfg.valid_data_path), s)
            except DatasetError as e:
                raise SystemExit(f"validation folder unusable: {e}") from None
            if not pairs:
                raise SystemExit(f"validation folder unusable: {self.cfg.valid_data_path} has no images for x{s}")

    def _checkpoints(self) -> list[Path]:
        return sorted(self.run_dir.glob("step_*.pth.tar"))

    def _resume(self) -> None:
        ckpts = self._checkpoints()
        if not ckpts:
            raise SystemExit(f"--resume: no checkpoint in {self.run_dir}")
        state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model_state_dict"])
        self.optim.load_state_dict(state["optimizer_state_dict"])
        self.step, self.best = int(state["step"]), float(state["best_psnr"])
        torch.set_rng_state(state["rng_torch"])  # the data RNG is a function of the step (see train_data)
        if self.rank == 0:
            print(f"resumed {ckpts[-1]} at step {self.step}")

    # ---- loop ---------------------------------------------------------------------------------------
    def train(self) -> list[float]:
        cfg, is_main = self.cfg, self.rank == 0
        writer, log = None, None
        if is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(vars(cfg), indent=2, default=str))
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step + 1)
            log = self._open_csv()
        if cfg.debug_sync:  # every rank writes its own digest file; rank 0 may not have made the folder yet
            self.run_dir.mkdir(parents=True, exist_ok=True)
        sync_log = open(self.run_dir / f"sync_rank{self.rank}.txt", "a") if cfg.debug_sync else None
        steps = range(self.step, cfg.max_steps)
        loader = DataLoader(self.data, batch_size=None, sampler=steps, num_workers=cfg.workers, collate_fn=_as_is,
                            worker_init_fn=_one_thread,
                            persistent_workers=False, pin_memory=self.device.type == "cuda")
        losses = []
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not is_main, unit="step", dynamic_ncols=True)
        self.model.train()
        for batch in loader:
            lr = lr_at(cfg, self.step)
            for g in self.optim.param_groups:
                g["lr"] = lr
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                loss = batch_loss(self.net, self._to_device(batch), self.loss_fn)
            self.optim.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optim)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
            self.scaler.step(self.optim)
            self.scaler.update()
            self.step += 1
            value = float(loss.detach())
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

    def _to_device(self, batch):
        if isinstance(batch, list):
            return [self._to_device(b) for b in batch]
        hr, lr, s = batch
        mf = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        return (hr.to(self.device, non_blocking=True), lr.to(self.device, non_blocking=True).contiguous(memory_format=mf), s)

    def _open_csv(self):
        path = self.run_dir / "log.csv"
        fields = ["step", "loss", "lr"] + [f"{m}_x{s}" for s in self.scales for m in ("psnr", "ssim")]
        rows = []
        if path.exists():  # resuming: keep the rows up to the resumed step only
            rows = [r for r in csv.DictReader(open(path)) if int(r["step"]) <= self.step]
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
            save_atomic(weights, self.run_dir / "best.pth")
        save_atomic(weights, self.run_dir / f"{self.cfg.ckpt_name}.pth")
        save_atomic({"step": self.step, "model_state_dict": weights, "optimizer_state_dict": self.optim.state_dict(),
                     "best_psnr": self.best, "config": {k: str(v) for k, v in vars(self.cfg).items()},
                     "rng_torch": torch.get_rng_state()},
                    self.run_dir / f"step_{self.step:07d}.pth.tar")
        for old in self._checkpoints()[:-self.cfg.keep]:
            old.unlink()
        return out
