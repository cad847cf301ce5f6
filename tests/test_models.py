"""The models have the authors' state-dict keys, shapes and parameter counts; the released CARN-M reproduces
the authors' outputs. (Random-weight outputs of every model: tests/test_families.py.)"""
from __future__ import annotations

import json

import pytest
import torch

from carn import CARN, CARN_M
from conftest import io_atol, load_ref, shared_path
from overnet import OverNet
from srkit.core.layers import count_parameters
from srkit.core.tolerances import AUTHORS_IO_ATOL

CARN_CLASSES = {"carn": CARN, "carn_m": CARN_M}
OVERNET_UPSCALE = {"overnet_x2": 3, "overnet_x3": 4, "overnet_x4": 5}


@pytest.fixture(scope="module")
def official() -> dict:
    return json.loads(shared_path("reference", "official_state_dicts.json").read_text())


def _shapes(model: torch.nn.Module) -> dict:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["carn", "carn_m"])
def test_carn_keys_shapes_and_params(official, name):
    ref = official[name]
    net = CARN_CLASSES[name](multi_scale=True)
    assert _shapes(net) == ref["state_dict"]
    assert count_parameters(net) == ref["params_total"]
    assert count_parameters(net, trainable_only=True) == ref["params_trainable"]
    for s in (2, 3, 4):
        assert count_parameters(CARN_CLASSES[name](scale=s, multi_scale=False)) == ref[f"params_x{s}_single"]


@pytest.mark.parametrize("name", ["overnet_x2", "overnet_x3", "overnet_x4"])
def test_overnet_keys_shapes_and_params(official, name):
    ref = official[name]
    net = OverNet(upscale=OVERNET_UPSCALE[name], group=4)
    assert _shapes(net) == ref["state_dict"]
    assert count_parameters(net) == ref["params_total"]
    assert count_parameters(net, trainable_only=True) == ref["params_trainable"]


def test_carn_m_released_io(carn_m_released, device):
    ref = load_ref("carn_m_released_io.pt")
    net = CARN_M(multi_scale=True, group=4).eval()
    net.load_state_dict(torch.load(carn_m_released, map_location="cpu", weights_only=True))
    net = net.to(device)
    with torch.no_grad():
        for key, case in ref["outputs"].items():
            got = net(case["input"].to(device), int(key[1:])).cpu()
            assert (got - case["output"]).abs().max().item() <= io_atol(device, AUTHORS_IO_ATOL), key


def test_carn_m_shares_one_residual_e_block():
    net = CARN_M()
    assert not hasattr(net.b1, "b2") and not hasattr(net.b1, "b3")
    calls = []
    net.b1.b1.register_forward_hook(lambda *a: calls.append(1))
    net(torch.rand(1, 3, 8, 8), 2)
    assert len(calls) == 3


def test_reduce_upsample_uses_1x1_convs():
    net = CARN(multi_scale=True, reduce_upsample=True)
    assert net.upsample.up3.body[0].kernel_size == (1, 1)
    assert net(torch.rand(1, 3, 6, 7), 3).shape == (1, 3, 18, 21)
