"""The complexity report reproduces the CARN paper's table; the fast inference path equals the plain forward."""
from __future__ import annotations

import pytest
import torch

from carn import CARN, CARN_M
from conftest import load_ref
from overnet import OverNet
from srkit.complexity import multadds_1280x720, table
from srkit.fast import prepare_fast, to_fast_input
from srkit.layers import count_parameters

PAPER_G = {("carn", 2): 222.8, ("carn", 4): 90.9, ("carn_m", 2): 91.2, ("carn_m", 4): 32.5}


def test_multadds_and_params_reproduce_the_paper():
    rows = {(r["model"], r["scale"]): r for r in table()}
    for key, g in PAPER_G.items():
        assert abs(rows[key]["multadds_G"] - g) <= 0.1, (key, rows[key]["multadds_G"])
    assert rows[("carn", 2)]["params"] == 1_591_963 and rows[("carn_m", 2)]["params"] == 414_811
    # x3: the paper's 118.8 G is the fractional input; a real 426x240 input costs 118.6 G
    assert rows[("carn", 3)]["multadds_G"] == pytest.approx(118.8, abs=0.05)
    assert rows[("carn", 3)]["multadds_int_input_G"] == pytest.approx(118.6, abs=0.05)


def test_multadds_count_is_resolution_proportional():
    net = CARN_M()
    from srkit.complexity import conv_multadds
    small = conv_multadds(net, torch.zeros(1, 3, 9, 16), 4)
    big = conv_multadds(net, torch.zeros(1, 3, 18, 32), 4)
    assert big == 4 * small
    assert multadds_1280x720(net, 4) == pytest.approx(32.5, abs=0.05)
    assert count_parameters(net) == 414_811


@pytest.mark.parametrize("name", ["carn", "carn_m", "overnet_x2", "overnet_x3", "overnet_x4"])
def test_fast_path_equals_plain_forward(name):
    ref = load_ref(f"{name}_random_io.pt")
    if name.startswith("overnet"):
        net = OverNet(upscale={"overnet_x2": 3, "overnet_x3": 4, "overnet_x4": 5}[name])
        net.load_state_dict(ref["checkpoint"]["model_state_dict"])
    else:
        net = (CARN() if name == "carn" else CARN_M())
        net.load_state_dict(ref["state_dict"])
    fast = prepare_fast(net.eval())
    assert not any(isinstance(m, torch.nn.Conv2d) and m.in_channels == 3 == m.out_channels and m.kernel_size == (1, 1)
                   for m in fast.modules())  # mean-shift convs are gone
    with torch.inference_mode():
        for key, want in ref["outputs"].items():
            got = fast(to_fast_input(ref["input"]), int(key[1:]))
            assert (got - want).abs().max().item() <= 1e-4, key
