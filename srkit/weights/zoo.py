"""The released weights: the manifest (every family's ``pretrained`` entries), where weights live, verified
downloads, and name -> path resolution.

A name or a path? A **manifest name** is a bare word such as ``NAME`` (no path separator, no suffix): it
always means the released file, verified, whatever is in the working directory. Anything with a separator
or a suffix (``./NAME``, ``runs/best.pth``, ``model.safetensors``) is a path. So a file or folder named like a
manifest entry in the working directory never shadows it.

Where weights go (:func:`weights_dir`): ``$SRKIT_WEIGHTS_DIR`` if set; else ``checkpoint/`` of the repository
checkout the package runs from; else the torch hub cache (``$TORCH_HOME/hub/checkpoints``). For machines
without internet, ``$SRKIT_MIRROR`` names a base URL or a folder holding the files under their release names
(``<mirror>/<file>``); they are verified the same way (srkit.core.fetch).
"""
from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any

from srkit.core import registry
from srkit.core.checkpoint import CheckpointError
from srkit.core.fetch import MIRROR_ENV, DownloadError, NotWritableError, fetch, mirrored
from srkit.core.registry import Pretrained

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_ENV = "SRKIT_WEIGHTS_DIR"

__all__ = ["DownloadError", "NotWritableError", "manifest", "weights_dir", "download", "resolve", "is_name"]


def manifest() -> dict[str, Pretrained]:
    """Every registered family's released weights, by name."""
    return {name: p for name, (_, p) in registry.pretrained().items()}


def weights_dir() -> Path:
    """Where weights are looked for and downloaded to (see the module docstring)."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    if (ROOT / "pyproject.toml").is_file() and (ROOT / "checkpoint").is_dir():  # a repository checkout
        return ROOT / "checkpoint"
    import torch.hub
    return Path(torch.hub.get_dir()) / "checkpoints"


def is_name(name_or_path: str) -> bool:
    """Whether ``name_or_path`` has the form of a manifest name: a bare word, no separator, no suffix."""
    s = str(name_or_path)
    return bool(s) and os.sep not in s and "/" not in s and (os.altsep or "/") not in s and "." not in s


def download(name: str, dest_dir: Path | None = None, timeout: float = 30, progress: bool = True) -> Path:
    """Fetch the manifest's ``name`` into ``dest_dir`` (default :func:`weights_dir`; no-op if a verified copy
    is there); says which license applies before fetching."""
    dest_dir = weights_dir() if dest_dir is None else Path(dest_dir)
    entries = manifest()
    entry = entries.get(name)
    if entry is None:
        raise DownloadError(f"unknown released weights {name!r}; known: {', '.join(entries) or 'none'}")
    final = dest_dir / entry.file
    if not final.exists() and progress:
        print(f"{name}: fetching {entry.file} into {dest_dir} (license: {entry.license})", file=sys.stderr)
    try:
        return fetch(mirrored(entry.url, entry.file), final, entry.expect(), timeout, progress)
    except NotWritableError as e:
        raise NotWritableError(f"{e}: set {WEIGHTS_ENV} to a writable folder (or download into one with "
                               f"srkit-download --dir)") from None
    except DownloadError as e:
        raise DownloadError(f"{e}.\nWithout network access, download {entry.url} by hand and put it at "
                            f"{final} (or set {MIRROR_ENV} to a folder or URL that has {entry.file})") from None


def resolve(name_or_path: str, dest_dir: Path | None = None) -> tuple[str, Pretrained | None]:
    """A checkpoint path for a manifest name (downloaded if missing) or a path, and the manifest entry."""
    if is_name(name_or_path):
        entry = manifest().get(name_or_path)
        if entry is not None:
            return str(download(name_or_path, dest_dir)), entry
    if not Path(name_or_path).exists():
        raise CheckpointError(unknown_message(str(name_or_path)))
    return str(name_or_path), None  # a path; the loader names what is wrong with it


def unknown_message(given: str) -> str:
    """What to say about a name or path that is neither released weights nor a file: the released names, and
    the nearest one (case, ``-`` for ``_``, a file suffix and small typos forgiven)."""
    names = list(manifest())
    key = Path(given).name.split(".")[0].lower().replace("-", "_")
    near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else ""
    return (f"{given}: no such checkpoint file, and not the name of released weights ({', '.join(names)})"
            f"{hint}")


def entry_info(entry: Pretrained) -> dict[str, Any]:
    return {"name": entry.name, "file": entry.file, "url": entry.url, "license": entry.license, **entry.expect()}
