"""Nothing a user made is overwritten or deleted: every command, run with default flags in a folder of the
user's files (photos, weights, a log, notes, a DIV2K-style folder), leaves every one of those files as it was
and writes only where it was told to (its named output, or its documented default beside its input). Outputs
the user named are theirs to replace; div2h5's --out built from other files needs --overwrite."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from test_one_bad_file import photo

BIN = Path(sys.executable).parent


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow  # nine commands as processes
def test_every_command_leaves_the_users_files_alone(tmp_path, random_carn_m):
    home = tmp_path / "user"
    (home / "photos").mkdir(parents=True)
    photo().save(home / "photos" / "a.png")
    photo(y=200).save(home / "photos" / "b.jpg")
    (home / "weights").mkdir()
    shutil.copy(random_carn_m, home / "weights" / "mine.pth")
    (home / "notes.txt").write_text("mine\n")
    (home / "log.csv").write_text("step,loss,psnr_x2\n1,0.5,20.0\n2,0.4,21.0\n")
    hr = home / "DIV2K" / "DIV2K_train_HR"
    hr.mkdir(parents=True)
    for i in range(2):
        photo(48, 48, y=60 * i).save(hr / f"000{i + 1}.png")
    (home / "done.h5").write_bytes(b"not made from this DIV2K")
    before = _snapshot(home)
    ckpt = "weights/mine.pth"
    commands = {
        "up": ["srkit-upscale", "-i", "photos", "-o", "up", "-n", ckpt, "-s", "2", "--cpu"],
        "s": ["srkit-sample", "--ckpt_path", ckpt, "--input", "photos", "--scale", "2", "--sample_dir", "s", "--cpu"],
        "bench": ["srkit-prepare-benchmark", "photos", "--out", "bench", "--scales", "2"],
        "s2": ["srkit-sample", "--ckpt_path", ckpt, "--test_data_dir", "bench", "--scale", "2", "--sample_dir", "s2",
               "--cpu", "--report"],
        "mine.safetensors": ["srkit-convert", ckpt, "mine.safetensors"],
        "m.onnx": ["srkit-export", "--ckpt_path", ckpt, "--scale", "2", "--out", "m.onnx"],
        "training.png": ["srkit-plot-log", "log.csv"],
        "train.h5": [sys.executable, str(ROOT / "div2h5.py"), "--div2k", "DIV2K", "--out", "train.h5"],
    }
    for out, cmd in commands.items():
        r = subprocess.run([str(BIN / cmd[0]) if cmd[0].startswith("srkit") else cmd[0], *cmd[1:]], cwd=home,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (cmd, r.stderr[-2000:])
        assert (home / out).exists(), cmd
        assert {k: v for k, v in _snapshot(home).items() if k in before} == before, cmd  # nothing changed or gone
    new = set(_snapshot(home)) - set(before)
    assert {k.split("/")[0] for k in new} <= set(commands) | {"DIV2K"}, sorted(new)
    assert {k for k in new if k.startswith("DIV2K/")} <= {f"DIV2K/DIV2K_train_LR_bicubic/X{s}/000{i}x{s}.png"
                                                          for s in (2, 3, 4) for i in (1, 2)}, sorted(new)
    r = subprocess.run([sys.executable, str(ROOT / "div2h5.py"), "--div2k", "DIV2K", "--out", "done.h5"], cwd=home,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and (home / "done.h5").read_bytes() == b"not made from this DIV2K", r.stderr[-2000:]
