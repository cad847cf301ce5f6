"""Checkpoint I/O: safe loading (``weights_only=True``), exact key/shape matching, atomic writes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model; the message says why and what would fit."""


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, extra) from a plain state dict, an authors' OverNet dict (``model_state_dict``), or one of
    our training checkpoints; a DataParallel/DDP ``module.`` prefix is removed. Tensors land on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is reported the same way
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    extra: dict[str, Any] = {}
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            extra = {k: v for k, v in obj.items() if k != key}
            obj = obj[key]
            break
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    return sd, extra


def load_weights(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "checkpoint",
                 suggest: Callable[[Mapping[str, torch.Tensor]], str] | None = None) -> None:
    """Load ``sd`` into ``model`` only if every key and shape matches; otherwise raise a
    :class:`CheckpointError` naming the mismatch and (via ``suggest``) the flags that would fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or shapes:
        lines = [f"{source} does not fit the requested model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected[:6])}"
                         f"{' ...' if len(unexpected) > 6 else ''}")
        for k in shapes[:6]:
            lines.append(f"  {k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}")
        if suggest is not None:
            lines.append(f"  it looks like: {suggest(sd)}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(sd, strict=True)


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def family_of(sd: Mapping[str, torch.Tensor]) -> str | None:
    """Which paper's model a state dict belongs to, from its keys ('carn', 'overnet' or None)."""
    if "GDG1.RB1.SE.conv.0.weight" in sd:
        return "overnet"
    if "b1.b1.body.0.weight" in sd and "entry.weight" in sd:
        return "carn"
    return None


def resolve_flags(requested: Mapping[str, Any], inferred: Mapping[str, Any], source: str,
                  describe: Callable[[Mapping], str]) -> dict[str, Any]:
    """Fill flags the user left unset (None) from the checkpoint; a flag set explicitly to a value the
    checkpoint contradicts is an error, never a silent override."""
    out = dict(requested)
    clashes = []
    for k, v in inferred.items():
        if k not in out:
            continue
        if out[k] is None:
            out[k] = v
        elif v is not None and out[k] != v:
            clashes.append(f"--{k} {out[k]} (checkpoint has {v})")
    if clashes:
        raise CheckpointError(f"{source}: flags contradict the checkpoint: {'; '.join(clashes)}. "
                              f"It fits: {describe(inferred)}")
    return out
