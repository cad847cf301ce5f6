"""One loader for every registered model family: a manifest name or a checkpoint path in, a model out.

    from srkit.weights.load import load_model
    net, arch = load_model(NAME)                            # released weights, by manifest name
    net, arch = load_model("runs/x/best.pth")               # a file this project wrote: flags read from it
    net, arch = load_model("authors_file.pth.tar", group=4)   # a flag given must agree with the file

Which family: the ``arch`` saved in files this project writes (checked against the family's declared fields),
else the manifest entry's family, else the family whose ``infer_flags`` recognises the state dict (the
authors' released files).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from srkit.core import registry
from srkit.core.checkpoint import CheckpointError, load_weights, read_checkpoint, resolve_flags
from srkit.core.fetch import hashes
from srkit.core.registry import ArchError, Family, RegistryError
from srkit.core.text import a
from srkit.weights import zoo


@dataclass(frozen=True)
class Source:
    """Where a loaded model came from: what the user named, the file, its sha256, the manifest entry."""
    given: str
    path: str
    sha256: str
    pretrained: str | None = None

    @property
    def short(self) -> str:
        """A name for output folders: the manifest name, or the file's stem, plus 8 hex digits of its sha256."""
        stem = self.pretrained or Path(self.path).name.split(".")[0] or "model"
        return f"{stem}-{self.sha256[:8]}"


def read_arch(path: str, saved: Any) -> tuple[Family, dict]:
    """The family and validated arch of a file's saved ``arch`` entry; one-line CheckpointError otherwise."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: its 'arch' is {a(type(saved).__name__)}, not an object of "
                              f"architecture flags")
    name = saved.get("family")
    if not isinstance(name, str):
        raise CheckpointError(f"{path}: its 'arch' has no 'family' name (field 'family' is {name!r})")
    try:
        fam = registry.get(name)
        return fam, fam.check_arch(saved)
    except RegistryError as e:
        raise CheckpointError(f"{path}: field 'family': {e}") from None
    except ArchError as e:
        raise CheckpointError(f"{path}: 'arch' {e}") from None


def check_finite(path: str, sd: dict) -> None:
    """A one-line CheckpointError naming the first tensor holding NaN or infinity (such weights make black
    or garbage images that would otherwise be written as if they were results)."""
    for key, v in sd.items():
        if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex()) and \
                not bool(torch.isfinite(v).all()):
            n = int((~torch.isfinite(v)).sum())
            raise CheckpointError(f"{path}: weight {key!r} holds {n:,} NaN or infinite value(s); the checkpoint is "
                                  f"damaged (a diverged training run?)")


def load_model(name_or_path: str, family: Family | str | None = None, **flags: Any) -> tuple[nn.Module, dict]:
    """(model in eval mode, its arch with ``"family"``). ``family`` restricts what is accepted (a front-end's
    own family); ``flags`` are architecture flags, None meaning "read it from the checkpoint". Raises
    CheckpointError (or zoo.DownloadError) with a message naming what would fit."""
    net, arch, _ = load_model_with_source(name_or_path, family, **flags)
    return net, arch


def load_model_with_source(name_or_path: str, family: Family | str | None = None,
                           **flags: Any) -> tuple[nn.Module, dict, Source]:
    """:func:`load_model` plus the :class:`Source` it loaded (for provenance records)."""
    want = registry.get(family) if isinstance(family, str) else family
    path, entry = zoo.resolve(name_or_path)
    sd, extra = read_checkpoint(path)
    check_finite(path, sd)
    if "arch" in extra:
        fam, known = read_arch(path, extra["arch"])
    else:
        fam = registry.pretrained()[entry.name][0] if entry is not None else None
        hit = registry.detect(sd)
        if hit is None or (fam is not None and hit[0] is not fam):
            what = f"not {a(fam.title)} checkpoint" if fam else "not a checkpoint of any registered model family"
            raise CheckpointError(f"{path}: {what} ({', '.join(f.title for f in registry.families())})")
        fam, known = hit
        if entry is not None:
            known = resolve_flags(dict(entry.flags), known, f"{path} (against its manifest entry)", fam.describe)
    if want is not None and fam is not want:
        raise CheckpointError(f"{path} holds {fam.title} weights, not {want.title}: use {fam.name}/sample.py")
    own = {f.name for f in fam.flags}
    foreign = sorted(k for k, v in flags.items() if v is not None and k not in own)
    if foreign:
        raise CheckpointError(f"{path} is {a(fam.title)} checkpoint: {', '.join('--' + k for k in foreign)} "
                              f"does not apply to it")
    arch = resolve_flags(flags, known, str(path), fam.describe)
    try:
        net = fam.build(arch)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    load_weights(net, sd, str(path), registry.describe_any)
    source = Source(str(name_or_path), str(path), str(hashes(Path(path))["sha256"]),
                    entry.name if entry is not None else None)
    return net.eval(), {"family": fam.name, **arch}, source
