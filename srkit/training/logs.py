"""What a run writes besides checkpoints: config.json, log.csv, TensorBoard scalars and, with
``--debug_sync``, a parameter digest per step and rank (``sync_rank<r>.txt``).

Only rank 0 writes config.json, the CSV and TensorBoard; every rank writes its own digests. Resuming keeps the
CSV's rows up to the resumed step and drops the rest (they belong to steps that will run again).
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import torch.nn as nn

from srkit.core.atomic import atomic_write, write_text


def digest(model: nn.Module) -> str:
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


class RunLogs:
    def __init__(self, run_dir: Path, rank: int, scales: tuple[int, ...], start_step: int, config: dict[str, Any],
                 debug_sync: bool = False) -> None:
        self.run_dir, self.rank = Path(run_dir), rank
        self.run_dir.mkdir(parents=True, exist_ok=True)  # every rank: --debug_sync writes per-rank files
        self.fields = ["step", "loss", "lr", "grad_norm"] + [f"{m}_x{s}" for s in scales for m in ("psnr", "ssim")]
        self.sync = open(self.run_dir / f"sync_rank{rank}.txt", "a") if debug_sync else None
        self.writer = self.csv = self.table = None
        if rank != 0:
            return
        write_text(self.run_dir / "config.json", json.dumps(config, indent=2, default=str))
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start_step + 1)
        self.csv, self.table = self._open_csv(start_step)

    def _open_csv(self, start_step: int):
        path = self.run_dir / "log.csv"
        rows = []
        if path.exists() and start_step > 0:  # resuming: keep the rows up to the resumed step only
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
        atomic_write(path, lambda tmp: _write_rows(tmp, self.fields, rows))
        f = open(path, "a", newline="")
        return f, csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")

    def digest(self, step: int, model: nn.Module) -> None:
        """--debug_sync: the parameter digest after ``step`` (read from the device: a sync every step)."""
        if self.sync is not None:
            self.sync.write(f"{step} {digest(model)}\n")
            self.sync.flush()

    def step(self, step: int, row: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        for k, v in row.items():
            if k != "step" and isinstance(v, float):
                self.writer.add_scalar(k, v, step)
        self.table.writerow(row)
        self.csv.flush()

    def close(self) -> None:
        for f in (self.sync, self.csv):
            if f is not None:
                f.close()
        if self.writer is not None:
            self.writer.close()


def _write_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
