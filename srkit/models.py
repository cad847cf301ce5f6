"""One loader for every registered model family: a manifest name or a checkpoint path in, a model out.

    from srkit.models import load_model
    net, arch = load_model("carn_m")                       # released weights, by manifest name
    net, arch = load_model("runs/x/best.pth")              # a file this project wrote: flags read from it
    net, arch = load_model("OverNet_test_x4.pth.tar", upscale=5)   # a flag given must agree with the file

Which family: the ``arch`` saved in files this project writes, else the manifest's ``family``, else the
family whose ``infer_flags`` recognises the state dict (the authors' released files).
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from srkit import registry, zoo
from srkit.checkpoint import CheckpointError, load_weights, read_checkpoint, resolve_flags
from srkit.registry import Family


def load_model(name_or_path: str, family: Family | str | None = None, **flags: Any) -> tuple[nn.Module, dict]:
    """(model in eval mode, its arch with ``"family"``). ``family`` restricts what is accepted (a front-end's
    own family); ``flags`` are architecture flags, None meaning "read it from the checkpoint". Raises
    CheckpointError (or zoo.DownloadError) with a message naming what would fit."""
    want = registry.get(family) if isinstance(family, str) else family
    path, entry = zoo.resolve(name_or_path)
    sd, extra = read_checkpoint(path)
    saved = extra.get("arch")
    if saved is not None:
        fam = registry.get(saved["family"])
        known = {k: v for k, v in saved.items() if k != "family"}
    else:
        fam = registry.get(entry["family"]) if entry is not None else None
        hit = registry.detect(sd)
        if hit is None or (fam is not None and hit[0] is not fam):
            what = f"not a {fam.title} checkpoint" if fam else "not a checkpoint of any registered model family"
            raise CheckpointError(f"{path}: {what} ({', '.join(f.title for f in registry.families())})")
        fam, known = hit
        if entry is not None:
            known = resolve_flags(entry["flags"], known, f"{path} (against its manifest entry)", fam.describe)
    if want is not None and fam is not want:
        raise CheckpointError(f"{path} holds {fam.title} weights, not {want.title}: use {fam.name}/sample.py")
    own = {f.name for f in fam.flags}
    foreign = sorted(k for k, v in flags.items() if v is not None and k not in own)
    if foreign:
        raise CheckpointError(f"{path} is a {fam.title} checkpoint: {', '.join('--' + k for k in foreign)} "
                              f"does not apply to it")
    arch = resolve_flags(flags, known, str(path), fam.describe)
    try:
        net = fam.build(arch)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    load_weights(net, sd, str(path), registry.describe_any)
    return net.eval(), {"family": fam.name, **arch}
