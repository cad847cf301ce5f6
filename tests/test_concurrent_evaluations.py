"""Two evaluations running at once into one folder merge their rows: the second waits for the lock on
summary.json (held here by the test, as a third writer would) and adds to what the first wrote."""
from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_dir
from srkit.weights.load import load_model_with_source
from test_one_bad_file import photo

BIN = Path(sys.executable).parent


def test_two_evaluations_into_one_folder_keep_both_rows(tmp_path, random_carn_m):
    sets = []
    for i, name in enumerate(("SetA", "SetB")):
        d = tmp_path / name
        d.mkdir()
        photo(y=100 + 60 * i).save(d / "a.png")
        sets.append(d)
    out = tmp_path / "o"
    folder = out / load_model_with_source(str(random_carn_m))[2].short
    folder.mkdir(parents=True)
    with open(folder / ".summary.json.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        procs = [subprocess.Popen([str(BIN / "srkit-sample"), "--ckpt_path", str(random_carn_m), "--test_data_dir",
                                   str(d), "--scale", "2", "--sample_dir", str(out), "--cpu"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for d in sets]
        deadline = time.monotonic() + 240
        while not all((folder / d.name / "x2" / "metrics.csv").is_file() for d in sets):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.2)
        time.sleep(2)  # both are past their images, at summary.json
        assert all(p.poll() is None for p in procs) and not (folder / "summary.json").exists()
        fcntl.flock(lock, fcntl.LOCK_UN)
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert run_dir(out) == folder
    summary = json.loads((folder / "summary.json").read_text())
    assert sorted(r["dataset"] for r in summary["results"]) == ["SetA", "SetB"] and len(summary["runs"]) == 2
