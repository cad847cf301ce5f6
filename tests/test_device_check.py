"""scripts/device_check.py, the one command to run on a GPU machine, cannot rot: CI runs its --cpu mode (the same
code at toy sizes) and checks every section of the report."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED
from srkit.core.tolerances import CUDA_FP32_ATOL, HALF_PSNR_DB, PSNR_REPRO_DB


@pytest.mark.slow
def test_device_check_cpu_mode_reports_every_section(tmp_path):
    out = tmp_path / "report.md"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "device_check.py"), "--cpu", "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = out.read_text()
    assert "all checks passed" in report
    assert int(re.search(r"\| (\d+) tests \|", report).group(1)) > 10  # the device-parametrised tests
    speed = re.findall(r"^\| (carn_m|carn|overnet) \| x([234]) \|" + r" ([\d.]+) \|" * 6, report, re.M)
    assert len(speed) == 9 and all(float(t) > 0 for row in speed for t in row[2:])
    api = re.findall(r"^\| (carn_m|overnet) x([24]) \| (\d+)x(\d+) \| (whole image|\d+x\d+) \| (\d+) \|", report, re.M)
    assert len(api) == 3 and api[0][4] == "whole image"
    train = re.findall(r"^\| (carn_m|carn|overnet) \| 4 x 16 \| ([\d.]+) \|", report, re.M)
    assert [m for m, _ in train] == ["carn_m", "carn", "overnet"] and all(float(v) > 0 for _, v in train)
    view = re.findall(r"^\| 4 x 16 \| ([^|]+) \| ([\d.]+) \|", report, re.M)
    assert len(view) == 7 and all(float(v) > 0 for _, v in view)  # every feed and fast option trained
    assert "| torchrun --nproc_per_node=1, gloo | exit 0, 3 of 3 steps with digests |" in report
    if (SHARED / "checkpoints" / "carn_m.pth").exists():
        psnr = re.findall(r"^\| Set5 \| x([234]) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([+-][\d.]+) \| ([\d.e+-]+) \|",
                          report, re.M)
        assert [s for s, *_ in psnr] == ["2", "3", "4"]
        for _, cpu, dev, half, gap, diff in psnr:
            assert abs(float(gap)) <= PSNR_REPRO_DB and float(diff) <= CUDA_FP32_ATOL
            assert 30 < float(cpu) < 40 and abs(float(half) - float(cpu)) < HALF_PSNR_DB
    else:
        assert "no data" in report
