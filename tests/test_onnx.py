"""ONNX export (dynamic height/width) verified with onnxruntime for CARN, CARN-M and OverNet."""
from __future__ import annotations

import pytest
import torch

from carn import CARN, CARN_M
from conftest import load_ref
from overnet import OverNet
from srkit.export_onnx import export, verify


@pytest.mark.parametrize("name,scale", [("carn", 4), ("carn_m", 2), ("overnet_x4", 3)])
def test_export_matches_pytorch(name, scale, tmp_path):
    ref = load_ref(f"{name}_random_io.pt")
    if name.startswith("overnet"):
        net = OverNet(upscale=5)
        net.load_state_dict(ref["checkpoint"]["model_state_dict"])
    else:
        net = CARN() if name == "carn" else CARN_M()
        net.load_state_dict(ref["state_dict"])
    path = export(net.eval(), scale, tmp_path / f"{name}.onnx")
    for hw in ((45, 37), (20, 64)):  # sizes other than the traced 32x40
        assert verify(net, scale, path, hw) < 1e-4
    torch.manual_seed(0)
