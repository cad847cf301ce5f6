"""Shared fixtures. Tests that need ../shared (reference data, benchmarks, released weights) skip with the
reason when it is absent; everything else makes its own data."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import os
import threading
import urllib.parse
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the clone; SRKIT_SHARED names another copy (scripts/device_check.py stages one)
SHARED = Path(os.environ.get("SRKIT_SHARED") or ROOT.parent / "shared")


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
    """The fast path without srkit.inference.fast.cpu_fp32's streamed kernels: oneDNN calls throughout, as on a CPU without
    AVX-512 or where the kernels were not built."""
    from srkit.inference.fast import cpu_fp32
    monkeypatch.setattr(cpu_fp32, "_LIB", False)


def io_atol(device: torch.device, cpu_atol: float) -> float:
    """The tolerance of a claim made on the CPU (``cpu_atol``) when the model runs on ``device``: on CUDA the
    float32 summation order differs from oneDNN's, which adds ``CUDA_FP32_ATOL``."""
    from srkit.core.tolerances import CUDA_FP32_ATOL
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


def run_dir(sample_dir: Path) -> Path:
    """The one checkpoint folder (``<name>-<sha256[:8]>``) an evaluation wrote under ``sample_dir``."""
    found = [p for p in Path(sample_dir).iterdir() if p.is_dir() and "-" in p.name]
    assert len(found) == 1, found
    return found[0]


@contextlib.contextmanager
def serve(handle: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 whose GET requests ``handle(handler)`` answers; yields its base URL."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            try:
                handle(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def serve_files(files: dict[str, bytes], requests: list | None = None) -> contextlib.AbstractContextManager[str]:
    """A loopback server of ``files`` (path without the leading slash -> bytes); 404 for anything else."""
    def handle(h):
        path = urllib.parse.unquote(h.path.lstrip("/"))
        if requests is not None:
            requests.append(path)
        data = files.get(path)
        if data is None:
            h.send_error(404)
            return
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    return serve(handle)


def synthetic_weights(monkeypatch, name: str, payload: bytes, url: str):
    """Make the released-weights entry ``name`` expect ``payload`` at ``url`` (for this test only)."""
    from srkit.core import registry
    fam, entry = registry.pretrained()[name]
    new = dataclasses.replace(entry, url=url, size=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
                              git_blob_sha1=hashlib.sha1(b"blob %d\0" % len(payload) + payload).hexdigest())
    monkeypatch.setattr(fam, "pretrained", tuple(new if p.name == name else p for p in fam.pretrained))
    return new


@pytest.fixture(scope="session")
def random_carn_m(tmp_path_factory) -> Path:
    """A CARN-M with random weights (seed 0), saved with its architecture flags."""
    from srkit.core import registry
    from srkit.core.checkpoint import save_weights
    path = tmp_path_factory.mktemp("w") / "random_carn_m.pth"
    fam = registry.get("carn")
    arch = next(e.arch for e in fam.examples if e.arch["model"] == "carn_m")
    torch.manual_seed(0)
    save_weights(path, fam.build(arch).state_dict(), {"family": "carn", **arch})
    return path


def train_argv(h5: Path, val: Path, run_dir: Path, steps: int, extra: Sequence[str] = (), name: str = "run",
               batch: int = 4, patch: int = 16, workers: int = 0, cpu: bool = True) -> list[str]:
    """The flags of a small training run into ``run_dir/name`` (``workers`` 0: the loader in this process;
    ``cpu`` False: the run takes the default device). Flags in ``extra`` come last and win."""
    return ["--ckpt_name", name, "--ckpt_dir", str(run_dir), "--train_data_path", str(h5), "--valid_data_path",
            str(val), "--patch_size", str(patch), "--batch_size", str(batch), "--max_steps", str(steps),
            "--print_interval", str(steps), "--workers", str(workers), *(["--cpu"] if cpu else []), *extra]
