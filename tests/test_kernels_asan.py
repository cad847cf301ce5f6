"""The streamed CPU kernels' tests (float32 and bf16) again under AddressSanitizer (scripts/asan_kernels.sh): an
out-of-bounds read or write in the C libraries, at any of the odd sizes and strides those tests use, fails this test."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from srkit.inference.fast import cpu_fp32


def _asan_runtime() -> Path | None:
    if not shutil.which("gcc"):
        return None
    found = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return Path(found) if Path(found).is_absolute() and Path(found).exists() else None


@pytest.mark.slow
@pytest.mark.skipif(not cpu_fp32.available(), reason=f"the kernels do not run here: {cpu_fp32.unavailable_reason()}")
@pytest.mark.skipif(_asan_runtime() is None, reason="gcc with libasan is needed to build the sanitized kernels")
def test_kernels_under_address_sanitizer():
    r = subprocess.run(["bash", str(ROOT / "scripts" / "asan_kernels.sh")], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable}, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "sanitized build: " in r.stdout and " passed" in r.stdout and "failed" not in r.stdout
