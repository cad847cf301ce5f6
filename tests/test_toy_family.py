"""The plug-in proof: a family defined in this file alone, registered at run time, passes the whole family
suite (tests/test_families.py) and the front-ends, with no edit to srkit/.

ToyNet: entry conv, one conv + ReLU block, a pixel-shuffle branch per scale (x2, x3), exit conv, the DIV2K
mean shifts. Its "authors' code" is the functional re-implementation ``_reference_forward`` below.
"""
from __future__ import annotations

from typing import Any, Mapping

import hashlib
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from srkit.core import registry
from srkit.cli import sample as sample_cli
from srkit.core.layers import FastPath, Fusion, MeanShift, pixel_shuffle_stages
from srkit.core.registry import ArchFlag, Example, Family, Pretrained, Recipe
from test_families import *  # noqa: F401,F403 - the same checks, run for FAMILY_OBJECTS

FAMILIES = ["toy"]
SCALES = (2, 3)


class ConvReLU(nn.Module):
    fusion = Fusion.CONV_RELU  # forward is relu(self.conv(x)): the fast path may fuse it

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class ToyNet(nn.Module):
    fast_path = FastPath(exit_conv="exit")

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.sub_mean, self.add_mean = MeanShift(sub=True), MeanShift(sub=False)
        self.entry = nn.Conv2d(3, width, 3, 1, 1)
        self.body = ConvReLU(width)
        self.up = nn.ModuleDict({f"x{s}": pixel_shuffle_stages(width, s, nn.Conv2d) for s in SCALES})
        self.exit = nn.Conv2d(width, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        x = self.body(self.entry(self.sub_mean(x)))
        return self.add_mean(self.exit(self.up[f"x{int(scale)}"](x)))


def _released_bytes() -> bytes:
    """The toy's "released weights": a safetensors file made the same way every time (seed 2)."""
    from safetensors.torch import save
    torch.manual_seed(2)
    sd = {k: v.contiguous() for k, v in ToyNet().state_dict().items()}
    return save(sd, metadata={"arch": json.dumps({"family": "toy", "model": "toy", "width": 8})})


class ToyFamily(Family):
    name, title, models = "toy", "ToyNet", ("toy",)
    flags = (ArchFlag("width", int, "feature channels"),)
    recipe = Recipe(optimizer=lambda params, lr: torch.optim.Adam(params, lr), lr=1e-3, max_steps=10, decay=5)
    examples = (Example("toy_w8", {"model": "toy", "width": 8}, SCALES),)

    def build(self, arch: Mapping[str, Any]) -> ToyNet:
        return ToyNet(arch.get("width") or 8)

    def infer_flags(self, sd):
        if "up.x2.0.weight" not in sd or "body.conv.weight" not in sd:
            return None
        return {"model": "toy", "width": sd["entry.weight"].shape[0]}

    def describe(self, arch):
        return f"--width {arch['width']}"

    def served_scales(self, arch):
        return SCALES

    def train_arch(self, scale, given):
        return {"model": "toy", "width": given.get("width") or 8}


RELEASED = _released_bytes()
ToyFamily.pretrained = (Pretrained("toy_w8", "toy_w8.safetensors", "https://example.invalid/toy_w8.safetensors",
                                   "MIT (a test's toy)", {"model": "toy", "width": 8}, size=len(RELEASED),
                                   sha256=hashlib.sha256(RELEASED).hexdigest()),)
TOY = ToyFamily()
FAMILY_OBJECTS = [TOY]  # test_families' parametrisation takes these: the family is registered only while this
                        # file's tests run, so no other test sees it


@pytest.fixture(autouse=True, scope="module")
def _toy_registered():
    registry.register(TOY)
    yield
    registry.unregister(TOY.name)


def _reference_forward(sd: dict, x: torch.Tensor, s: int) -> torch.Tensor:
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)
    y = F.conv2d(x - mean, sd["entry.weight"], sd["entry.bias"], padding=1)
    y = F.relu(F.conv2d(y, sd["body.conv.weight"], sd["body.conv.bias"], padding=1))
    stages = [2, 2] if s == 4 else [s]
    for i, r in enumerate(stages):
        y = F.pixel_shuffle(F.relu(F.conv2d(y, sd[f"up.x{s}.{3 * i}.weight"], sd[f"up.x{s}.{3 * i}.bias"], padding=1)), r)
    return F.conv2d(y, sd["exit.weight"], sd["exit.bias"], padding=1) + mean


def reference_io(example: str) -> dict:
    torch.manual_seed(1)
    sd = {k: v + 0.01 * torch.randn_like(v) if "mean" not in k else v for k, v in ToyNet().state_dict().items()}
    x = torch.rand(1, 3, 12, 10)
    return {"checkpoint": sd, "input": x, "outputs": {s: _reference_forward(sd, x, s) for s in SCALES}}


def test_the_sample_front_end_serves_the_toy(tmp_path, div2k, capsys):
    _, val, _ = div2k
    path = tmp_path / "toy.pth"
    torch.save(reference_io("toy_w8")["checkpoint"], path)
    out = tmp_path / "out"
    assert sample_cli.main(["--ckpt_path", str(path), "--test_data_dir", str(val), "--sample_dir", str(out),
                            "--scale", "0", "--cpu"]) == 0
    assert sorted(p.name for p in (next(out.glob("toy-*")) / "valid").iterdir()) == ["x2", "x3"]
    assert sample_cli.main(["--ckpt_path", str(path), "--scale", "4", "--test_data_dir", str(val)]) == 2
    assert "serves x2, x3, not x4" in capsys.readouterr().err


def test_its_released_weights_and_hub_entry_come_from_its_own_declaration(tmp_path, monkeypatch):
    """The toy's weights entry lives in this file; the model zoo, --ckpt_path NAME and torch.hub serve it with
    no edit to srkit/ or hubconf.py: fetched through a mirror folder, verified, loaded."""
    from conftest import ROOT
    from srkit.weights import zoo
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "toy_w8.safetensors").write_bytes(RELEASED)
    monkeypatch.setenv(zoo.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path / "cache"))
    assert "toy_w8" in zoo.manifest()
    import importlib.util
    spec = importlib.util.spec_from_file_location("hubconf_toy", ROOT / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    assert callable(hub.toy_w8) and "MIT (a test's toy)" in hub.toy_w8.__doc__ and callable(hub.toy)
    net = torch.hub.load(str(ROOT), "toy_w8", source="local", pretrained=True)
    assert (tmp_path / "cache" / "toy_w8.safetensors").read_bytes() == RELEASED
    torch.manual_seed(2)
    want = ToyNet().state_dict()
    assert all(torch.equal(v, want[k]) for k, v in net.state_dict().items())
    from PIL import Image
    photo = tmp_path / "in.png"
    Image.fromarray((torch.rand(12, 10, 3) * 255).byte().numpy()).save(photo)
    out = tmp_path / "out"
    assert sample_cli.main(["--ckpt_path", "toy_w8", "--input", str(photo), "--sample_dir", str(out), "--scale", "3"]) == 0
    assert Image.open(next(out.glob("toy_w8-*")) / "upscaled" / "x3" / "in.png").size == (30, 36)
