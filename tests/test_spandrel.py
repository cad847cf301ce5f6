"""The spandrel plug-in with the real spandrel package: the authors' released files, their random-weight layouts,
this project's checkpoints and safetensors load through spandrel's own ModelLoader with true descriptors, and
give the API's outputs; spandrel's registry and its own architectures are untouched until installed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

spandrel = pytest.importorskip("spandrel")
from spandrel import MAIN_REGISTRY, ModelLoader, UnsupportedModelError  # noqa: E402

from conftest import ROOT, load_ref  # noqa: E402
from srkit import api  # noqa: E402
from srkit.core.checkpoint import save_weights  # noqa: E402
from srkit.core.tolerances import FAST_PATH_ATOL, HALF_MAX_LEVELS  # noqa: E402
from srkit.inference.precision import resolve  # noqa: E402
from srkit.integrations import spandrel as plug  # noqa: E402

# the authors' layouts: (reference file, the family's arch id, the scale the descriptor serves, its license side)
RANDOM = [("carn_m", "srkit.carn", 4, "open"), ("carn", "srkit.carn", 4, "open"),
          ("overnet_x2", "srkit.overnet", 2, "noncommercial"), ("overnet_x3", "srkit.overnet", 3, "noncommercial"),
          ("overnet_x4", "srkit.overnet", 4, "noncommercial")]
SLOW = ("carn", "overnet_x3", "overnet_x4")  # about 20 s each on two cores: the fast tier keeps one per family


def _authors_file(tmp_path: Path, name: str) -> tuple[Path, torch.Tensor]:
    """The random-weight file as the authors' code saves it (a plain state dict for CARN, the checkpoint dict
    with model_state_dict and weight-norm pairs for OverNet), and the reference input."""
    ref = load_ref(f"{name}_random_io.pt")
    path = tmp_path / f"{name}.pth"
    torch.save(ref["state_dict"] if "state_dict" in ref else ref["checkpoint"], path)
    return path, ref["input"]


def _installed(scale: int | None = None, noncommercial: bool = True):
    reg = MAIN_REGISTRY.copy()
    plug.install(reg, scale=scale)
    if noncommercial:
        plug.install_noncommercial(reg, scale=scale)
    return reg


def _api_atol() -> float:
    """How close the API at its defaults comes to the plug-in's float32 forward: ``FAST_PATH_ATOL`` where its
    ``auto`` precision is fp32 on this CPU, ``HALF_MAX_LEVELS`` grey levels where it is bf16 (AMX-BF16)."""
    return FAST_PATH_ATOL if resolve("auto", torch.device("cpu")) is None else HALF_MAX_LEVELS / 255


def _check(desc, path: Path, x: torch.Tensor, arch_id: str, scale: int) -> None:
    assert desc.architecture.id == arch_id and desc.scale == scale and desc.purpose == "SR"
    assert (desc.input_channels, desc.output_channels) == (3, 3) and desc.size_requirements.none
    assert desc.tiling == spandrel.ModelTiling.SUPPORTED
    sd = ModelLoader().load_state_dict_from_file(path)
    assert [a.architecture.id for a in MAIN_REGISTRY.architectures("detection") if a.detect(sd)] == []
    out = desc(x)
    ours = api.load(str(path), device="cpu")(x, scale=scale)
    assert out.shape == ours.shape == (1, 3, x.shape[2] * scale, x.shape[3] * scale)
    assert (out - ours).abs().max().item() <= _api_atol()
    assert desc(x[..., :1, :1]).shape[-2:] == (scale, scale)  # no size requirement: 1x1 runs
    # half precision, measured here on the reference input (the plug-in measures on its own pattern)
    low = desc.model.to(torch.bfloat16)
    bf16 = low(x.to(torch.bfloat16), scale).float().clamp(0, 1)
    desc.model.float()
    assert desc.supports_bfloat16 == ((bf16 - out).abs().max().item() * 255 <= HALF_MAX_LEVELS)


def test_without_the_plug_in_spandrel_supports_none_of_our_files(tmp_path, carn_m_released):
    files = [carn_m_released] + [_authors_file(tmp_path, name)[0] for name, *_ in RANDOM]
    for f in files:
        with pytest.raises(UnsupportedModelError):
            ModelLoader().load_from_file(f)


def test_importing_changes_nothing_and_install_adds_only_after_spandrels_own():
    code = ("import spandrel; before = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures('detection')]\n"
            "from srkit.integrations import spandrel as p\n"
            "assert [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures('detection')] == before\n"
            "p.install(); after = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures('detection')]\n"
            "assert after[:len(before)] == before, after\n"
            "print(after[len(before):])\n"
            "p.install_noncommercial()\n"
            "print([a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures('detection')][len(after):])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[:2] == ["['srkit.carn']", "['srkit.overnet']"]


def test_spandrels_own_architectures_detect_as_before():
    from spandrel.architectures.Compact import Compact
    sd = Compact().state_dict()
    assert _installed().load(dict(sd)).architecture.id == MAIN_REGISTRY.load(dict(sd)).architecture.id == "Compact"


def test_the_released_carn_m_through_spandrels_main_registry_as_a_host_uses_it(carn_m_released):
    """What ComfyUI / chaiNNer do after the plug-in is installed: ModelLoader() with no arguments."""
    code = ("import sys, torch; from spandrel import ModelLoader\n"
            "from srkit.integrations import spandrel as p; p.install()\n"
            "m = ModelLoader().load_from_file(sys.argv[1])\n"
            "print(m.architecture.id, m.scale, m.tags, m(torch.rand(1, 3, 5, 7)).shape[-2:])\n")
    r = subprocess.run([sys.executable, "-c", code, str(carn_m_released)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "srkit.carn 4 ['carn_m', 'x2/x3/x4'] torch.Size([20, 28])"


def test_the_released_carn_m_equals_the_api(carn_m_released):
    ref = load_ref("carn_m_released_io.pt")["outputs"]["x4"]
    desc = ModelLoader(registry=_installed()).load_from_file(carn_m_released)
    _check(desc, carn_m_released, ref["input"][..., :40, :40], "srkit.carn", 4)


@pytest.mark.parametrize("name,arch_id,scale,side",
                         [pytest.param(*r, marks=pytest.mark.slow) if r[0] in SLOW else r for r in RANDOM],
                         ids=[r[0] for r in RANDOM])
def test_every_models_authors_layout_loads_with_a_true_descriptor(tmp_path, name, arch_id, scale, side):
    path, x = _authors_file(tmp_path, name)
    _check(ModelLoader(registry=_installed()).load_from_file(path), path, x, arch_id, scale)
    only_open = ModelLoader(registry=_installed(noncommercial=False))
    if side == "open":
        assert only_open.load_from_file(path).architecture.id == arch_id
    else:  # weights under a non-commercial license load only from the registry installed for them
        with pytest.raises(UnsupportedModelError):
            only_open.load_from_file(path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_this_projects_checkpoints_and_safetensors(tmp_path, suffix):
    """Files this project writes (weights plus their arch): torch files and safetensors, no pickle in the latter."""
    ref = load_ref("carn_m_random_io.pt")
    path = tmp_path / f"mine{suffix}"
    save_weights(path, ref["state_dict"], {"family": "carn", "model": "carn_m", "multi_scale": True, "scale": None,
                                           "group": 4, "reduce_upsample": False})
    _check(ModelLoader(registry=_installed()).load_from_file(path), path, ref["input"], "srkit.carn", 4)


def test_a_multi_scale_file_serves_the_scale_installed_for(tmp_path):
    """One descriptor per file; ``install(scale=...)`` picks the scale a multi-scale file serves, and a file
    that does not serve it keeps its own."""
    carn_m, x = _authors_file(tmp_path, "carn_m")
    overnet_x2, _ = _authors_file(tmp_path, "overnet_x2")
    desc = ModelLoader(registry=_installed(scale=3)).load_from_file(carn_m)
    assert desc.scale == 3 and desc(x).shape[-2:] == (x.shape[2] * 3, x.shape[3] * 3)
    assert (desc(x) - api.load(str(carn_m), device="cpu")(x, scale=3)).abs().max().item() <= _api_atol()
    assert ModelLoader(registry=_installed(scale=4)).load_from_file(overnet_x2).scale == 2  # serves up to x3
    assert plug.descriptor(ModelLoader().load_state_dict_from_file(carn_m), scale=2).scale == 2
