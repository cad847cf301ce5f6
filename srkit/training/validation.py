"""Validation during training: Y-channel PSNR / SSIM at every training scale on a benchmark folder, the
images sharded over the ranks and the means gathered (srkit.inference.evaluate). A rank whose shard fails
says so before the gather, so every rank raises (the others naming it) instead of waiting in it."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from srkit.data.benchmark import DatasetError, find_pairs
from srkit.inference.evaluate import evaluate_folder, gather_result
from srkit.inference.predictor import Predictor
from srkit.training.agreement import gather, one_line
from srkit.training.errors import PeerFailed, TrainingError


def check_folder(folder: str, scales: tuple[int, ...]) -> None:
    """A one-line TrainingError unless ``folder`` has images for every scale (checked at set-up, not at the
    first validation hours later)."""
    for s in scales:
        try:
            pairs, _ = find_pairs(Path(folder), s)
        except DatasetError as e:
            raise TrainingError(f"--valid_data_path: {e}") from None
        if not pairs:
            raise TrainingError(f"--valid_data_path {folder} has no images for x{s}")


def validate(model: nn.Module, folder: str, scales: tuple[int, ...], device: torch.device, rank: int,
             world: int, step: int = 0) -> dict[str, float]:
    """``{"psnr_x2": ..., "ssim_x2": ..., ...}`` of the model as it is (the plain forward, whole images) after
    ``step`` steps."""
    was_training = model.training
    model.eval()
    predict = Predictor(model, tile=0, fast=False)
    out = {}
    try:
        for s in scales:
            try:
                res = evaluate_folder(predict, Path(folder), s, None, device, progress=False, shard=(rank, world))
            except Exception as e:  # noqa: BLE001 - told to the other ranks, then one line here
                line = f"validation at x{s} failed on {folder}: {one_line(e)}"
                _all_or_none(line, step)
                raise TrainingError(line) from None
            _all_or_none(None, step)
            summ = gather_result(res).summary()
            out[f"psnr_x{s}"], out[f"ssim_x{s}"] = summ["psnr"], summ["ssim"]
    finally:
        model.train(was_training)
    return out


def _all_or_none(failure: str | None, step: int) -> None:
    """Every rank's shard evaluated, or PeerFailed on the ranks whose shard was fine (one all-gather)."""
    failures = gather(failure)
    failed = next((r for r, f in enumerate(failures) if f is not None), None)
    if failed is not None and failure is None:
        raise PeerFailed(f"rank {failed} failed at step {step}: {failures[failed]}")
