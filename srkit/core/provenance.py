"""What produced a result: the software and the machine, recorded beside every evaluation and training run."""
from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def project_version() -> str:
    """The installed distribution's version (whatever the project's distribution is named)."""
    try:
        names = packages_distributions().get("srkit") or []
        return version(names[0]) if names else "not installed"
    except PackageNotFoundError:
        return "not installed"


def git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when it has local changes), or None outside a git checkout."""
    if not (ROOT / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu ({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"


def program() -> str:
    """The program as typed from the current folder (``folder/script.py``), or its name when it lies elsewhere."""
    path = Path(sys.argv[0] or "python")
    try:
        rel = Path(os.path.relpath(path.resolve()))
        return str(rel) if not rel.parts or rel.parts[0] != ".." else path.name
    except ValueError:  # another drive
        return path.name


def environment(device: torch.device, argv: list[str] | None = None) -> dict:
    """The command line (shell-quoted), the date, the device and the versions of a run."""
    return {"command": shlex.join([program(), *(sys.argv[1:] if argv is None else argv)]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device_name(device), "torch": torch.__version__, "version": project_version(),
            "commit": git_commit()}
