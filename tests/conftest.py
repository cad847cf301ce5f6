"""Shared fixtures. Tests that need ../shared (reference data, benchmarks, released weights) skip with the
reason when it is absent; everything else makes its own data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


# Every model / fast-path / tiling / self-ensemble / training-step / half-precision test takes the ``device``
# fixture: it runs on the CPU always and on CUDA where there is a GPU (scripts/device_check.py runs those).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """A device to run on. On CUDA, float32 means float32: TF32 is switched off for the test (PyTorch's
    default lets cuDNN convolutions round inputs to 10-bit mantissas), and cuDNN is made deterministic so a
    resumed training run can be bit-exact; both are restored afterwards."""
    dev = torch.device(request.param)
    if dev.type != "cuda":
        yield dev
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield dev
    finally:
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


@pytest.fixture
def no_cpu_kernels(monkeypatch) -> None:
    """The fast path without srkit.cpu_kernels' streamed kernels: oneDNN calls throughout, as on a CPU without
    AVX-512 or where the kernels were not built."""
    from srkit import cpu_kernels
    monkeypatch.setattr(cpu_kernels, "_LIB", False)


def io_atol(device: torch.device, cpu_atol: float) -> float:
    """The tolerance of a claim made on the CPU (``cpu_atol``) when the model runs on ``device``: on CUDA the
    float32 summation order differs from oneDNN's, which adds ``CUDA_FP32_ATOL``."""
    from srkit.tolerances import CUDA_FP32_ATOL
    return cpu_atol if device.type == "cpu" else cpu_atol + CUDA_FP32_ATOL


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
