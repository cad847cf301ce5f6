"""Convert a checkpoint of any registered family (the authors' files included) to a file that says what it
is (``srkit-convert``).

The output holds the weights plus the architecture flags (family, model, group, scales / upscale, ...):
``.safetensors`` as its metadata (loading it needs no pickle at all), other suffixes as a torch file.
"""
from __future__ import annotations

from pathlib import Path

from srkit.core.checkpoint import save_weights
from srkit.weights.guard import check_output
from srkit.weights.load import load_model_with_source


def convert(src: str, out: Path) -> dict:
    """Write ``src`` (a path or a manifest name) to ``out``; returns the architecture flags written. An ``out``
    that is the source or released weights is refused (srkit.weights.guard.OutputError), nothing written."""
    check_output(out, [src])
    net, arch, source = load_model_with_source(src)
    check_output(out, [src, source.path])
    save_weights(out, net.state_dict(), arch)
    return arch
