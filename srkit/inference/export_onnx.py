"""Export a model to ONNX (one scale per file; dynamic batch, height and width) with metadata saying what
it is, and verify it with onnxruntime (``srkit-export``).

The exported graph is the fast path's portable form (mean shift folded, weight norm baked), with the output
clamped to [0, 1] as images are. Its ``metadata_props`` hold the family, the arch (JSON), the scale, the
value range, the license and, for released weights, the name and sha256. ``verify`` runs onnxruntime on a
random input of a size other than the one traced and returns the max abs difference from PyTorch.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

from srkit.core import registry
from srkit.core.atomic import atomic_write
from srkit.inference.fast import prepare_fast

VALUE_RANGE = "input: float32 RGB in [0, 1], NCHW; output: float32 RGB clamped to [0, 1], NCHW"


class _AtScale(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.scale).clamp(0, 1)


def metadata(arch: dict | None, scale: float, source=None) -> dict[str, str]:
    """What the file says about itself (ONNX ``metadata_props``)."""
    meta = {"scale": f"{scale:g}", "value_range": VALUE_RANGE, "producer": "srkit"}
    if arch:
        fam = registry.get(arch["family"])
        meta.update(family=fam.name, arch=json.dumps(arch, sort_keys=True), paper=fam.paper, license=fam.license)
    if source is not None:
        meta.update(checkpoint=source.short, sha256=source.sha256)
        if source.pretrained:
            entry = registry.pretrained()[source.pretrained][1]
            meta["license"] = entry.license
    return meta


def export(model: torch.nn.Module, scale: float, out: Path, opset: int = 18,
           fixed_hw: tuple[int, int] | None = None, arch: dict | None = None, source=None) -> Path:
    """Integer scales export with dynamic batch, height and width. A real scale's output size (n * scale
    rounded) is not expressible as a dynamic ONNX shape here, so it needs ``fixed_hw``: a graph for that
    input size only (the batch stays dynamic)."""
    import onnx

    if not float(scale).is_integer() and fixed_hw is None:
        raise ValueError(f"x{scale}: a real scale exports for one input size only; give fixed_hw")
    net = _AtScale(prepare_fast(model, fuse=False).cpu().to(memory_format=torch.contiguous_format), scale).eval()
    x = torch.rand(2, 3, *(fixed_hw or (32, 40)))
    n = torch.export.Dim("n", min=1, max=1024)
    h, w = torch.export.Dim("h", min=8, max=4096), torch.export.Dim("w", min=8, max=4096)
    shapes = {"x": {0: n}} if fixed_hw else {"x": {0: n, 2: h, 3: w}}
    program = torch.onnx.export(net, (x,), None, input_names=["lr"], output_names=["sr"], opset_version=opset,
                                dynamic_shapes=shapes, dynamo=True, external_data=False)
    proto = program.model_proto
    for k, v in metadata(arch, scale, source).items():
        proto.metadata_props.add(key=k, value=v)
    atomic_write(out, lambda tmp: onnx.save(proto, str(tmp)))
    return out


def _on_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` on the CPU without moving the caller's module."""
    return model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()


def verify(model: torch.nn.Module, scale: float, path: Path, hw: tuple[int, int] = (45, 37)) -> float:
    import onnxruntime as ort

    x = torch.rand(3, 3, *hw)  # a batch size other than the traced one, too
    with torch.no_grad():
        want = _on_cpu(model).eval()(x, scale).clamp(0, 1).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"lr": x.numpy()})[0]
    if got.shape != want.shape:
        raise AssertionError(f"onnxruntime output {got.shape} != PyTorch {want.shape}")
    return float(np.abs(got - want).max())
