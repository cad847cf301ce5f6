"""The README as a new user reads it: its Python runs as written, its set-up and test commands are the ones CI
runs, and its first five commands run as written, offline, through a documented mirror (SRKIT_MIRROR)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, shared_path

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)


def _commands() -> list[str]:
    return [line for lang, body in BLOCKS if lang == "sh" for line in body.strip().splitlines() if line.strip()]


def _mirror(tmp: Path) -> Path:
    """A mirror folder as docs/datasets.md lays it out: the released weights under their release names, and
    the benchmarks in this project's own layout."""
    mirror = tmp / "mirror"
    mirror.mkdir()
    shutil.copy(shared_path("checkpoints", "carn_m.pth"), mirror / "carn_m.pth")
    for name in ("Set5", "Set14"):
        shutil.copytree(shared_path("benchmark", name), mirror / name)
    return mirror


def _env(tmp: Path, mirror: Path) -> dict:
    """The user's environment (its PATH as it is: every command names .venv/bin/), offline through the mirror."""
    return {**os.environ, "SRKIT_MIRROR": str(mirror), "SRKIT_WEIGHTS_DIR": str(tmp / "weights"),
            "OMP_NUM_THREADS": "2"}


def test_the_set_up_and_test_commands_are_the_ones_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    setup, tests = _commands()[0], next(c for c in _commands() if "pytest" in c)
    assert setup == "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt -e ."
    assert setup in " ".join(ci.split()).replace(" --quiet --disable-pip-version-check", "")
    assert tests == ".venv/bin/python -m pytest -q tests" and tests in ci


def test_every_python_block_runs_as_written(tmp_path):
    """Each ```python block of the README (the API, torch.hub from the checkout, spandrel), in a fresh process from the
    repository root, offline (the released weights through a mirror folder)."""
    mirror = _mirror(tmp_path)
    blocks = [body for lang, body in BLOCKS if lang == "python"]
    assert any('torch.hub.load(".", "carn_m", source="local", pretrained=True)' in b for b in blocks)
    assert any("ModelLoader().load_from_file(" in b for b in blocks)  # the spandrel plug-in
    for body in blocks:
        r = subprocess.run([sys.executable, "-c", body], cwd=ROOT, env=_env(tmp_path, mirror), capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]


def _clone(tmp: Path) -> Path:
    """A copy of the checkout's layout: the code linked, data and outputs its own."""
    work = tmp / "clone"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("datasets", "checkpoint", "sample", ".git"):
            (work / entry.name).symlink_to(entry)
    for folder in ("datasets", "checkpoint"):  # what a clone holds there: the tracked files, no data
        (work / folder).mkdir()
        for tracked in subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True,
                                      check=True).stdout.split():
            (work / tracked).symlink_to(ROOT / tracked)
    return work


@pytest.mark.slow
def test_the_toy_training_block_runs_as_written_and_says_where_the_weights_went(tmp_path):
    """The Train section's first block, both commands as printed, in a clone's layout."""
    block = next(body for lang, body in BLOCKS if lang == "sh" and "div2h5.py --toy" in body)
    cmds = block.strip().splitlines()
    assert len(cmds) == 2
    work = _clone(tmp_path)
    for cmd in cmds:
        r = subprocess.run(cmd, shell=True, cwd=work, env=_env(tmp_path, tmp_path), capture_output=True, text=True,
                           timeout=1200)
        assert r.returncode == 0, (cmd, r.stderr[-3000:])
    run = work / "checkpoint" / "toy"
    assert r.stderr.strip().splitlines()[-1] == (f"trained 50 steps. Weights: checkpoint/toy/toy.pth (best "
                                                 f"validation: checkpoint/toy/best.pth); the run folder: "
                                                 f"checkpoint/toy")
    assert (run / "toy.pth").is_file() and (run / "best.pth").is_file()


@pytest.mark.slow
def test_the_first_five_commands_run_as_written(tmp_path):
    """Set-up aside (CI runs it), commands 2 to 5 run as written in a copy of the checkout's layout (the code
    linked, data and outputs its own), with the mirror the README documents for offline machines."""
    cmds = _commands()[:5]
    assert cmds[0].startswith("python3 -m venv")
    work = _clone(tmp_path)
    mirror = _mirror(tmp_path)
    for cmd in cmds[1:]:
        r = subprocess.run(cmd, shell=True, cwd=work, env=_env(tmp_path, mirror), capture_output=True, text=True,
                           timeout=1200)
        assert r.returncode == 0, (cmd, r.stderr[-3000:])
    run = next((work / "sample").glob("carn_m-*"))
    assert (run / "report.html").is_file() and (run / "Set14" / "x4" / "metrics.csv").is_file()
    upscaled = sorted((work / "sample" / "upscaled").iterdir())  # Set5/x4's five LR files, not their HR files
    assert [p.name for p in upscaled] == [f"img_00{i}_SRF_4_LR.png" for i in range(1, 6)]
    for p in upscaled:
        with Image.open(p) as sr, Image.open(work / "datasets" / "benchmark" / "Set5" / "x4" / p.name) as lr:
            assert sr.size == (4 * lr.size[0], 4 * lr.size[1])
