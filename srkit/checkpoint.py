"""Checkpoint I/O: safe loading (``weights_only=True``; ``.safetensors`` without any pickle), exact key/shape
matching, atomic writes, weights that carry their architecture flags."""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model; the message says why and what would fit."""


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, extra) from a plain state dict, an authors' OverNet dict (``model_state_dict``), or a file
    this project wrote (``state_dict`` + ``arch``: the architecture flags, see :func:`save_weights`); a
    DataParallel/DDP ``module.`` prefix is removed. Tensors land on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is reported the same way
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    extra: dict[str, Any] = {}
    # the OverNet authors' (and our step files), our weights files, other trainers
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
    arch = extra.get("arch")
    if arch is not None and not (isinstance(arch, Mapping) and isinstance(arch.get("family"), str)):
        raise CheckpointError(f"{path}: its 'arch' entry does not name a model family")
    return sd, extra


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the ``arch`` metadata of a safetensors file: a JSON header and raw bytes, no pickle."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
        extra = {"arch": json.loads(meta["arch"])} if "arch" in meta else {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if "arch" in extra and not isinstance(extra["arch"].get("family"), str):
        raise CheckpointError(f"{path}: its 'arch' metadata does not name a model family")
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


def _umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status); 0o022 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, fsync, give it the user's umask (mkstemp makes it
    0600), rename: never a half-written file under ``path``. A full disk is named as the cause."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        free = shutil.disk_usage(path.parent).free
        # torch.save reports a failed write as "unexpected pos N vs M"
        if isinstance(e, OSError) and e.errno == errno.ENOSPC or ("unexpected pos" in str(e) and free < 1 << 26):
            raise OSError(errno.ENOSPC, f"no space left on the device writing {path} ({free:,} bytes free)") from None
        raise


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save, atomically (see _write_atomic)."""
    _write_atomic(Path(path), lambda tmp: torch.save(obj, tmp))


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

    _write_atomic(path, lambda tmp: save_file(weights, tmp, metadata={"arch": json.dumps(dict(arch))}))
