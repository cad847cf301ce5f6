"""Every registered model family passes the same checks: build from flags, load the released layout,
forward at every served scale vs the authors' outputs, fast path vs plain, tiling vs whole image, ONNX
export, the complexity row, a short train + exact resume.

A family's reference configurations (``Family.examples``) parametrise the tests. Another test module can run
this suite for its own family: set ``FAMILY_OBJECTS = [family]`` (or ``FAMILIES = [name]`` for a registered
one) and ``reference_io``, register it while its tests run, and ``from test_families import *``
(tests/test_toy_family.py does).
"""
from __future__ import annotations

import csv

import pytest
import torch

from conftest import SHARED, io_atol, train_argv
from srkit.core import registry
from srkit.cli import train as train_cli
from srkit.core.complexity import multadds_1280x720, table
from srkit.inference.export_onnx import export, verify
from srkit.inference.fast import prepare_fast, to_fast_input
from srkit.core.layers import count_parameters
from srkit.weights.load import load_model
from srkit.core.resize import sr_size
from srkit.inference.tiling import forward_tiled
from srkit.core.tolerances import AUTHORS_IO_ATOL, FAST_PATH_ATOL, ONNX_ATOL, TILING_ATOL

FAMILIES = ["carn", "overnet"]


def reference_io(example: str) -> dict | None:
    """The authors' code's outputs for an example (../shared/reference/<example>_random_io.pt): the file to
    load as the released layout, the input, and {scale: output}. None when absent."""
    path = SHARED / "reference" / f"{example}_random_io.pt"
    if not path.exists():
        return None
    ref = torch.load(path, map_location="cpu", weights_only=True)
    return {"checkpoint": ref["checkpoint"] if "checkpoint" in ref else ref["state_dict"], "input": ref["input"],
            "outputs": {int(k[1:]): v for k, v in ref["outputs"].items()}}


def pytest_generate_tests(metafunc):
    fams = getattr(metafunc.module, "FAMILY_OBJECTS", None) or \
        [registry.get(n) for n in getattr(metafunc.module, "FAMILIES", FAMILIES)]
    if "example" in metafunc.fixturenames:
        pairs = [(f, ex) for f in fams for ex in f.examples]
        metafunc.parametrize("fam,example", pairs, ids=[f"{f.name}-{ex.name}" for f, ex in pairs])
    elif "fam" in metafunc.fixturenames:
        metafunc.parametrize("fam", fams, ids=[f.name for f in fams])


def _random_model(fam, example):
    torch.manual_seed(0)
    return fam.build(example.arch).eval()


def test_flags_round_trip_through_the_state_dict(fam, example):
    net = _random_model(fam, example)
    sd = net.state_dict()
    assert fam.infer_flags(sd) == example.arch
    assert registry.detect(sd)[0] is fam  # no other family claims it
    assert fam.describe(example.arch)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        for s in fam.served_scales(example.arch):
            assert fam.check_scale(example.arch, s) is None
            assert net(x, s).shape == (1, 3, sr_size(9, s), sr_size(11, s))


def test_released_layout_loads_and_reproduces_the_authors(fam, example, tmp_path, request, device):
    ref = request.module.reference_io(example.name)
    if ref is None:
        pytest.skip(f"needs reference outputs for {example.name} (../shared/reference), absent")
    path = tmp_path / "released.pth"
    torch.save(ref["checkpoint"], path)
    net, arch = load_model(str(path), fam)
    assert arch == {"family": fam.name, **example.arch}
    assert sorted(ref["outputs"]) == list(fam.served_scales(arch))  # every served scale is checked
    net, x = net.to(device), ref["input"].to(device)
    with torch.no_grad():
        for s, want in ref["outputs"].items():
            assert (net(x, s).cpu() - want).abs().max().item() <= io_atol(device, AUTHORS_IO_ATOL), s


def test_fast_path_equals_plain_forward(fam, example, device):
    net = _random_model(fam, example).to(device)
    fast = prepare_fast(net)
    x = torch.rand(1, 3, 20, 23, device=device)
    with torch.inference_mode():
        for s in fam.served_scales(example.arch):
            assert (fast(to_fast_input(x), s) - net(x, s)).abs().max().item() <= io_atol(device, FAST_PATH_ATOL), s


def test_tiled_forward_equals_whole_image(fam, example, device):
    net = _random_model(fam, example).to(device)
    x = torch.rand(1, 3, 44, 52, device=device)
    scales = list(fam.served_scales(example.arch))[-1:]
    real = scales[0] - 0.5
    if fam.check_scale(example.arch, real) is None:
        scales.append(real)
    with torch.inference_mode():
        for s in scales:
            whole = net(x, s)
            tiled = forward_tiled(net, x, s, tile=24, overlap=24)
            assert tiled.shape == whole.shape
            assert (tiled - whole).abs().max().item() <= TILING_ATOL, s


@pytest.mark.slow
def test_onnx_export_matches_pytorch(fam, tmp_path):
    example = fam.examples[-1]
    s = example.scales[-1]
    net = _random_model(fam, example)
    path = export(net, s, tmp_path / f"{example.name}.onnx")
    for hw in ((45, 37), (20, 64)):  # sizes other than the traced 32x40
        assert verify(net, s, path, hw) <= ONNX_ATOL


def test_complexity_rows(fam, example):
    rows = {(r["model"], r["scale"]): r for r in table()}
    net = fam.build(example.arch)
    for s in example.scales:
        row = rows[example.name, s]
        assert row["params"] == count_parameters(net)
        assert row["multadds_G"] == pytest.approx(multadds_1280x720(net, s)) and row["multadds_G"] > 0


def _train_argv(fam, example, h5, val, run_dir, steps, extra=()):
    flags = []
    for f in fam.flags:
        v = example.arch.get(f.name)
        if f.type is bool:
            flags += [f"--{f.name}"] if v else []
        elif v is not None:
            flags += [f"--{f.name}", str(v)]
    return train_argv(h5, val, run_dir, steps, [*flags, "--scale", str(fam.train_scales[0]), "--print_interval", "2",
                                                "--lr", "1e-3", *extra], batch=2, cpu=False)


def test_train_then_resume_exactly(fam, div2k, tmp_path, device):
    h5, val, _ = div2k
    example = fam.examples[0]
    on = ["--cpu"] if device.type == "cpu" else []
    full = train_cli.run(_train_argv(fam, example, h5, val, tmp_path / "a", 4, on), fam)
    first = train_cli.run(_train_argv(fam, example, h5, val, tmp_path / "b", 2, on), fam)
    second = train_cli.run(_train_argv(fam, example, h5, val, tmp_path / "b", 4, ["--resume", *on]), fam)
    assert first + second == full  # bit-identical losses after resuming
    a, arch_a = load_model(str(tmp_path / "a" / "run" / "run.pth"), fam)
    b, arch_b = load_model(str(tmp_path / "b" / "run" / "run.pth"), fam)
    assert arch_a == arch_b and arch_a["family"] == fam.name  # the weights say what they are
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    rows = list(csv.DictReader(open(tmp_path / "b" / "run" / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
