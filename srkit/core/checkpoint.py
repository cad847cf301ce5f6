"""Checkpoint I/O: safe loading (``weights_only=True``; ``.safetensors`` without any pickle), exact key/shape
matching, atomic writes (srkit.core.atomic), weights that carry their architecture flags."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from srkit.core.atomic import atomic_write
from srkit.core.text import a


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model; the message says why and what would fit."""


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, extra) from a plain state dict, a dict holding it (``model_state_dict``, as some authors'), or a file
    this project wrote (``state_dict`` + ``arch``: the architecture flags, see :func:`save_weights`); a
    DataParallel/DDP ``module.`` prefix is removed. Tensors land on the CPU."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is reported the same way
        why = str(e).splitlines()[0][:200] if str(e) else ""
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({type(e).__name__}: {why})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds {a(type(obj).__name__)}, not a state dict")
    extra: dict[str, Any] = {}
    # some authors' files (and our step files), our weights files, other trainers
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            extra = {k: v for k, v in obj.items() if k != key}
            obj = obj[key]
            break
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: entry {k!r} is {a(type(v).__name__)}, not a tensor")
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    return sd, extra


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the ``arch`` metadata of a safetensors file: a JSON header and raw bytes, no pickle."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
        extra = {"arch": json.loads(meta["arch"])} if "arch" in meta else {}
    except (SafetensorError, OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
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
    """torch.save, atomically and flushed to the disk (srkit.core.atomic)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp), fsync=True)


def resolve_flags(requested: Mapping[str, Any], known: Mapping[str, Any], source: str,
                  describe: Callable[[Mapping], str]) -> dict[str, Any]:
    """``known`` (flags read from a checkpoint or the manifest) completed by the ``requested`` ones the user
    set (not None). A requested value that ``known`` contradicts is an error, never a silent override."""
    out = dict(known)
    clashes = []
    for k, v in requested.items():
        if v is None:
            continue
        if known.get(k) is not None and known[k] != v:
            clashes.append(f"--{k} {v} (checkpoint has {known[k]})")
        else:
            out[k] = v
    if clashes:
        raise CheckpointError(f"{source}: flags contradict the checkpoint: {'; '.join(clashes)}. "
                              f"It fits: {describe(known)}")
    return out


def save_weights(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], arch: Mapping[str, Any]) -> None:
    """Weights plus their architecture flags (``arch``, with ``"family"``), so that loading never guesses.
    A ``.safetensors`` path writes safetensors (flags in its metadata), anything else a torch file."""
    if "family" not in arch:
        raise ValueError("arch must name its family")
    weights = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    path = Path(path)
    if path.suffix != ".safetensors":
        save_atomic({"state_dict": weights, "arch": dict(arch)}, path)
        return
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file(weights, str(tmp), metadata={"arch": json.dumps(dict(arch))}), fsync=True)
