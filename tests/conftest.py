"""Shared fixtures. Tests that need ../shared (reference data, benchmarks, released weights) skip with the
reason when it is absent."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
torch.set_num_threads(max(1, torch.get_num_threads()))


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
