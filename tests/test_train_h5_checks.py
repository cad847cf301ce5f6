"""Training files that would train on garbage, or fail mid-run, are refused at set-up in one line, exit 2:
real h5 files, each the toy training file with one thing changed, given to carn/train.py --scale 0 (every
LR group checked)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT, train_argv

ENV_KEYS = {"OMP_NUM_THREADS": "1"}


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f.create_dataset(name, data=data)


def _float01(f):
    _replace(f, "HR/0", f["HR/0"][()].astype(np.float32) / 255)


def _uint16(f):
    _replace(f, "X2/3", f["X2/3"][()].astype(np.uint16) * 257)


def _int8(f):
    _replace(f, "X4/5", (f["X4/5"][()].astype(np.int16) - 128).astype(np.int8))


def _two_d(f):
    _replace(f, "HR/2", f["HR/2"][()][..., 0])


def _four_channels(f):
    hr = f["HR/1"][()]
    _replace(f, "HR/1", np.concatenate([hr, np.full(hr.shape[:2] + (1,), 255, np.uint8)], axis=2))


def _one_channel_lr(f):
    _replace(f, "X3/4", f["X3/4"][()][..., :1])


def _hr_dataset(f):
    stack = np.stack([f["HR"][str(i)][()] for i in range(len(f["HR"]))])
    del f["HR"]
    f.create_dataset("HR", data=stack)


def _hr_external(f):
    other = f.filename + ".hr.h5"
    with h5py.File(other, "w") as g:
        f.copy(f["HR"], g, "HR")
    del f["HR"]
    f["HR"] = h5py.ExternalLink(other, "/HR")


CASES = {
    "float32 in [0,1]": (_float01, "HR/0 holds float32, not uint8"),
    "uint16": (_uint16, "X2/3 holds uint16, not uint8"),
    "int8": (_int8, "X4/5 holds int8, not uint8"),
    "2-D HR": (_two_d, "HR/2 is 192x192, not an HxWx3 RGB image"),
    "4-channel HR": (_four_channels, "HR/1 is 192x192x4, not an HxWx3 RGB image"),
    "1-channel LR": (_one_channel_lr, "X3/4 is 64x64x1, not an HxWx3 RGB image"),
    "HR a dataset": (_hr_dataset, "HR is a dataset, not a group of images"),
    "HR an external link": (_hr_external, "HR is an external link (to "),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_training_file_of_the_wrong_kind_is_one_line_at_set_up(case, div2k, tmp_path, capsys):
    from carn import train
    h5, val, _ = div2k
    change, message = CASES[case]
    bad = tmp_path / "bad.h5"
    shutil.copy(h5, bad)
    with h5py.File(bad, "r+") as f:
        change(f)
    capsys.readouterr()
    code = train.main(["--model", "carn_m", "--scale", "0", *train_argv(bad, val, tmp_path / "r", 2)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, err[-1500:]
    assert f"--train_data_path {bad}: {message}" in errors[0], errors
    assert not (tmp_path / "r" / "run").exists()  # the refused launch left nothing behind


def test_as_a_command_a_float_training_file_is_one_line_and_no_traceback(div2k, tmp_path):
    import os
    h5, val, _ = div2k
    bad = tmp_path / "bad.h5"
    shutil.copy(h5, bad)
    with h5py.File(bad, "r+") as f:
        _float01(f)
    r = subprocess.run([sys.executable, str(ROOT / "carn" / "train.py"), "--model", "carn_m", "--scale", "0",
                        *train_argv(bad, val, tmp_path / "r", 2)], capture_output=True, text=True,
                       env={**os.environ, **ENV_KEYS}, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert [line for line in r.stderr.splitlines() if line.strip()] == [
        f"error: --train_data_path {bad}: HR/0 holds float32, not uint8 (0-255, as div2h5.py stores images): "
        f"training divides by 255; repack the images with div2h5.py"]
