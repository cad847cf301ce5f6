"""Deterministic kernels for a training run that claims bit-exact resume or world-size invariance.

The claims (a resumed run retraces the uninterrupted one; N processes retrace one) hold on a GPU only when
every kernel is deterministic: cuDNN's deterministic algorithms and no autotuning (``cudnn.benchmark``
picks per run, so two runs may differ), ``torch.use_deterministic_algorithms``, and a fixed cuBLAS workspace
(``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS starts). These are process-wide, so the trainer sets them for
the duration of its run and puts them back afterwards; ops without a deterministic kernel warn (named by
PyTorch) instead of stopping the run. ``--cudnn_benchmark`` (a fast option) gives the claims up.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def kernels(deterministic: bool, benchmark: bool = False) -> Iterator[None]:
    """Deterministic kernels (``deterministic``) or cuDNN autotuning (``benchmark``) while the block runs."""
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    try:
        torch.backends.cudnn.benchmark = benchmark and not deterministic
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
            torch.backends.cudnn.deterministic = True
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]
