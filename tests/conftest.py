"""Shared fixtures. Tests that need ../shared (reference data, benchmarks, released weights) skip with the
reason when it is absent; everything else makes its own data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the project's ../shared reference data), which is absent")
    return p


@pytest.fixture(scope="session")
def carn_m_released() -> Path:
    return shared_path("checkpoints", "carn_m.pth")


@pytest.fixture(scope="session")
def benchmark_dir() -> Path:
    return shared_path("benchmark")


def load_ref(name: str) -> dict:
    return torch.load(shared_path("reference", name), map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def div2k(tmp_path_factory):
    """(h5 training file, validation folder, DIV2K folder) made from scikit-image's photographs."""
    import div2h5
    from train_fixtures import make_div2k

    root = tmp_path_factory.mktemp("div2k")
    div, val = make_div2k(root)
    h5 = root / "train.h5"
    assert div2h5.main(["--div2k", str(div), "--out", str(h5)]) == 0
    return h5, val, div
