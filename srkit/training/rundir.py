"""A run's folder ``<ckpt_dir>/<ckpt_name>/``: claimed, resumed or refused, never overwritten.

- A folder *holds a run* when it has a step checkpoint. Without ``--resume`` such a folder is refused; a
  launch that died before its first checkpoint leaves nothing that counts, so the same command starts again.
- ``--resume`` (yes) continues from the newest intact checkpoint (a truncated newest file is skipped with a
  warning); ``auto`` (the default under torchrun) resumes when there is one and starts otherwise.
- Every rank reads its own view of the folder (on several machines, the folder under the same path there);
  the views are gathered and must agree with rank 0's: a rank that finds another step, or none, stops every
  rank with one line naming it, its step and rank 0's, before anything is written.
- The folder is locked (srkit.training.runlock) before anything in it is read or written, for the run's
  life, by rank 0: a second writer, while the first is alive, is refused naming it and changes nothing.
- Step checkpoints are written atomically and rotated by verified contents: after each save the newest
  ``keep`` that load are kept and older ones deleted; one that does not load is moved aside as ``*.corrupt``,
  never counted, so a readable checkpoint always survives. Orphans of a save killed half-way (``*.tmp``) are
  removed when a run starts.
"""
from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from srkit.core.atomic import TMP_SUFFIX
from srkit.core.checkpoint import save_atomic, save_weights
from srkit.training.agreement import gather
from srkit.training.errors import TrainingError
from srkit.training.runlock import RunLock, RunLocked

STEP_FILE = re.compile(r"step_(\d+)\.pth\.tar")
CORRUPT_SUFFIX = ".corrupt"  # an unreadable checkpoint moved aside: kept for inspection, never resumed from


def step_of(path: Path) -> int:
    return int(STEP_FILE.fullmatch(path.name).group(1))


class RunDir:
    def __init__(self, path: Path, rank: int = 0) -> None:
        self.path, self.rank = Path(path), rank
        self.lock = RunLock(self.path)
        self._verified: set[tuple[str, int, int]] = set()  # (name, size, mtime) of checkpoints that loaded

    def checkpoints(self) -> list[Path]:
        """Step checkpoints, oldest first, ordered by step number."""
        if not self.path.is_dir():
            return []
        return sorted((p for p in self.path.iterdir() if STEP_FILE.fullmatch(p.name)), key=step_of)

    def step_file(self, step: int) -> Path:
        return self.path / f"step_{step:07d}.pth.tar"

    def claim(self, mode: str) -> dict[str, Any] | None:
        """Resume (the newest readable checkpoint's state), start fresh (None), or refuse: ``mode`` is
        "yes", "auto" or "no". Every rank returns alike or raises alike (see the module docstring)."""
        self._lock()
        if self.rank == 0 and self.path.is_dir():
            for orphan in self.path.glob(f"*{TMP_SUFFIX}"):  # a save killed half-way; never under a final name
                orphan.unlink(missing_ok=True)
        ckpts = self.checkpoints()
        state, error = None, None
        try:
            if mode == "no" and ckpts:
                raise TrainingError(f"{self.path} already holds a run (newest checkpoint: step "
                                    f"{step_of(ckpts[-1])}): add --resume to continue it, or choose another "
                                    f"--ckpt_name")
            state = self._newest_state(ckpts) if ckpts else None
        except TrainingError as e:
            error = str(e)
        views = gather((None if state is None else int(state["step"]), error, str(self.path)))
        problem = _disagreement(views, self.rank)
        if problem is None and mode == "yes" and state is None:
            problem = f"--resume: no checkpoint in {self.path}"
        if problem:
            raise TrainingError(problem)
        return state

    def _lock(self) -> None:
        """Rank 0 takes the folder's lock; every rank learns whether it could (a refusal ends them all)."""
        error = None
        if self.rank == 0 and self.path.exists() and not self.path.is_dir():
            error = f"{self.path} is a file, not a run folder: choose another --ckpt_name"
        elif self.rank == 0:
            try:
                self.lock.acquire()
            except RunLocked as e:
                error = (f"{self.path} is in use by a live run ({e or 'another process'}): wait for it to end, "
                         f"or choose another --ckpt_name")
            except OSError as e:
                error = _unwritable(self.path, e)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            box = [error]
            dist.broadcast_object_list(box, src=0)
            error = box[0]
        if error:
            raise TrainingError(error)

    def release(self) -> None:
        """Give the folder up (a folder that holds nothing but the lock, made by this launch, goes too)."""
        self.lock.release(remove_if_alone=True)

    def _newest_state(self, ckpts: list[Path]) -> dict[str, Any]:
        for path in reversed(ckpts):
            try:
                state = _load(path)
                state["_path"] = str(path)
                return state
            except Exception as e:  # noqa: BLE001 - a truncated or corrupt file: fall back to the previous one
                if self.rank == 0:
                    tqdm.write(f"warning: {path.name} is unreadable ({_why(e)}); trying the previous checkpoint",
                               file=sys.stderr)
        raise TrainingError(f"--resume: no readable checkpoint in {self.path}")

    def _rotate(self, keep: int) -> None:
        """Keep the newest ``keep`` checkpoints that load; move the unreadable aside; delete the rest."""
        kept = 0
        for path in reversed(self.checkpoints()):
            if kept >= keep:
                path.unlink(missing_ok=True)
                continue
            stat = path.stat()
            key = (path.name, stat.st_size, stat.st_mtime_ns)
            if key not in self._verified:
                try:
                    _load(path)
                except Exception as e:  # noqa: BLE001 - whatever makes it unloadable, it cannot be resumed from
                    aside = path.with_name(path.name + CORRUPT_SUFFIX)
                    os.replace(path, aside)
                    tqdm.write(f"warning: {path.name} is unreadable ({_why(e)}): moved aside as {aside.name}, "
                               f"not counted among the --keep {keep}", file=sys.stderr)
                    continue
                self._verified.add(key)
            kept += 1

    def save(self, step: int, state: dict[str, Any], weights: dict[str, torch.Tensor], arch: dict,
             names: list[str], ext: str, keep: int) -> None:
        """Write the weights files ``names`` (with their arch), then the step checkpoint, then rotate."""
        try:
            for name in names:
                save_weights(self.path / f"{name}.{ext}", weights, arch)
            save_atomic(state, self.step_file(step))
        except OSError as e:
            raise TrainingError(f"could not save the checkpoint of step {step}: {e.strerror or e}. The previous "
                                f"checkpoints are intact") from None
        self._rotate(keep)


def _disagreement(views: list[tuple[int | None, str | None, str]], rank: int) -> str | None:
    """The line every rank stops with when the ranks' views of the run folder, (newest step or None, error or
    None, folder) by rank, do not agree with rank 0's; None when they do."""
    errors = [(r, e) for r, (_, e, _) in enumerate(views) if e is not None]
    if errors:
        mine = views[rank][1]
        return mine if mine is not None else f"rank {errors[0][0]}: {errors[0][1]}"
    step0 = views[0][0]
    other = next((r for r, (s, _, _) in enumerate(views) if s != step0), None)
    if other is None:
        return None

    def found(r: int) -> str:
        s, _, folder = views[r]
        return f"{'no checkpoint' if s is None else f'step {s}'} in {folder}"
    return (f"rank {other} finds {found(other)}, but rank 0 finds {found(0)}: every process must see "
            f"the same run folder (one file system shared by the machines, or the same checkpoints on each). "
            f"Nothing was changed")


def _load(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model_state_dict" not in state or "step" not in state:
        raise ValueError("not a step checkpoint of this trainer")
    return state


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def _unwritable(run: Path, e: OSError) -> str:
    """One line for a run folder that cannot be made or written (read-only, under a file, a full disk)."""
    ckpt_dir = run.parent
    if e.errno == errno.ENOSPC:
        why = "no space left on the device"
    elif ckpt_dir.is_file():
        why = f"{ckpt_dir} is a file, not a folder"
    elif e.errno in (errno.ENOTDIR, errno.EEXIST):
        why = "a part of the path is a file, not a folder"
    elif e.errno == errno.EROFS:
        why = "a read-only file system"
    else:
        why = e.strerror or str(e)
    return f"--ckpt_dir {ckpt_dir}: cannot write the run folder {run}: {why}"
