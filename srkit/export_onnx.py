"""Export a checkpoint to ONNX (one scale per file, dynamic height and width) and verify it with onnxruntime.

    python -m srkit.export_onnx --ckpt_path carn_m --scale 2 --out carn_m_x2.onnx     # or: srkit-export ...

The exported graph is the fast inference path (mean shift folded, weight norm baked). The export is checked
by running onnxruntime on a random input of a size other than the one traced and comparing with PyTorch;
the max abs difference is printed (and returned).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from srkit.checkpoint import CheckpointError
from srkit.fast import prepare_fast
from srkit.models import load_model
from srkit.tolerances import ONNX_ATOL
from srkit.zoo import DownloadError


class _AtScale(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, scale: int) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.scale)


def export(model: torch.nn.Module, scale: float, out: Path, opset: int = 18,
           fixed_hw: tuple[int, int] | None = None) -> Path:
    """Integer scales export with dynamic height and width. A real scale's output size (n * scale rounded) is
    not expressible as a dynamic ONNX shape here, so it needs ``fixed_hw``: a graph for that input size only."""
    if not float(scale).is_integer() and fixed_hw is None:
        raise ValueError(f"x{scale}: a real scale exports for one input size only; give fixed_hw")
    net = _AtScale(prepare_fast(model, fuse=False).to(memory_format=torch.contiguous_format), scale).eval()
    x = torch.rand(1, 3, *(fixed_hw or (32, 40)))
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = torch.export.Dim("h", min=8, max=4096), torch.export.Dim("w", min=8, max=4096)
    torch.onnx.export(net, (x,), str(out), input_names=["lr"], output_names=["sr"], opset_version=opset,
                      dynamic_shapes=None if fixed_hw else {"x": {2: h, 3: w}}, dynamo=True, external_data=False)
    return out


def verify(model: torch.nn.Module, scale: int, path: Path, hw: tuple[int, int] = (45, 37)) -> float:
    import onnxruntime as ort

    x = torch.rand(1, 3, *hw)
    with torch.no_grad():
        want = model.eval()(x, scale).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"lr": x.numpy()})[0]
    if got.shape != want.shape:
        raise AssertionError(f"onnxruntime output {got.shape} != PyTorch {want.shape}")
    return float(np.abs(got - want).max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", required=True, help="checkpoint path or manifest name")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    try:
        net, _ = load_model(a.ckpt_path)
    except (CheckpointError, DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    export(net, a.scale, a.out)
    diff = verify(net, a.scale, a.out)
    print(f"wrote {a.out}; onnxruntime vs PyTorch max abs difference {diff:.2e} (tolerance ONNX_ATOL {ONNX_ATOL:g})")
    return 0 if diff < ONNX_ATOL else 1


if __name__ == "__main__":
    sys.exit(main())
