"""What a new user meets first, tried as one would: a mistyped model name, messages that read as English."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT

from srkit.cli import upscale
from srkit.core import registry
from srkit.core.checkpoint import CheckpointError
from srkit.core.text import a
from srkit.inference.predictor import model_scale_for
from srkit.weights.load import load_model


@pytest.mark.parametrize("given,near", [("carn-m", "carn_m"), ("CARN_M", "carn_m"), ("overnet-x4", "overnet_x4"),
                                        ("./carn_m.pth", "carn_m"), ("no_such_model", None)])
def test_a_mistyped_name_lists_the_released_names_and_the_nearest(given, near, tmp_path, capsys):
    assert upscale.main(["-i", str(tmp_path), "-o", str(tmp_path / "o"), "-n", given, "--cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{given}: no such checkpoint file" in err
    assert "(carn, carn_m, overnet_x2, overnet_x3, overnet_x4)" in err
    assert (f"did you mean {near}?" in err) == (near is not None) and ("did you mean" in err) == (near is not None)
    assert not (tmp_path / "o").exists()


def test_articles():
    assert [a(w) for w in ("OverNet", "CARN / CARN-M", "int", "list", "")] == \
        ["an OverNet", "a CARN / CARN-M", "an int", "a list", "a "]


def test_messages_name_the_family_with_its_article(tmp_path):
    fam = registry.get("overnet")
    ex = fam.examples[0]
    path = tmp_path / "o.pth"
    torch.save(fam.build(ex.arch).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"o\.pth is an OverNet checkpoint: --reduce_upsample does not apply"):
        load_model(str(path), reduce_upsample=True)
    with pytest.raises(ValueError, match=r"^x1 is not an upscaling factor: give an output scale above 1$"):
        model_scale_for(fam, ex.arch, 1)


@pytest.mark.slow  # a signal run (the quick tier has none)
def test_ctrl_c_during_an_upscale_says_what_was_written_in_one_line(tmp_path, random_carn_m):
    """SIGINT to the command's process group, as a terminal's Ctrl-C delivers it, once the first output is
    there: one line saying what was written, exit 130, and every file in the output folder whole."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), np.uint8)).save(src / f"{i:02d}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "srkit.cli.upscale", "-i", str(src), "-o", str(out), "-n",
                             str(random_carn_m), "--cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.png")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Error" not in err
    said = [line for line in err.splitlines() if line.startswith("interrupted")]
    written = sorted(out.iterdir())
    assert len(said) == 1 and 1 <= len(written) < 40
    assert said[0] == (f"interrupted: upscaled {len(written)} of 40 image(s) x4 into {out}; no partial file is "
                       f"left (each output is written whole or not at all)")
    for p in written:  # no temporary file, nothing cut short
        with Image.open(p) as im:
            im.load()
            assert p.suffix == ".png" and im.size == (512, 384)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A checkout at tmp/checkout (the code's own root, as far as the benchmark default goes), and the working
    directory another folder."""
    from srkit.data import download
    checkout, cwd = tmp_path / "checkout", tmp_path / "elsewhere"
    (checkout / "datasets").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    cwd.mkdir()
    monkeypatch.setattr(download, "ROOT", checkout)
    monkeypatch.chdir(cwd)
    return checkout, cwd


def test_sample_from_another_folder_fetches_into_the_checkout_and_names_the_mirror(elsewhere, tmp_path, monkeypatch,
                                                                                     random_carn_m, capsys):
    from srkit.cli import sample
    from conftest import shared_path
    checkout, cwd = elsewhere
    mirror = tmp_path / "mirror"
    shutil.copytree(shared_path("benchmark", "Set5"), mirror / "Set5")
    monkeypatch.setenv("SRKIT_MIRROR", str(mirror))
    assert sample.main(["--ckpt_path", str(random_carn_m), "--scale", "4", "--no_save"]) == 0
    err = capsys.readouterr().err
    want = checkout / "datasets" / "benchmark" / "Set5"
    assert f"{want} is missing: fetching Set5 from the mirror folder {mirror / 'Set5'} (SRKIT_MIRROR)" in err
    assert "SelfExSR release" not in err
    assert len(list((want / "x4").glob("*_HR.png"))) == 5 and not (cwd / "datasets").exists()


def test_a_failed_fetch_leaves_no_empty_folders(elsewhere, tmp_path, monkeypatch, random_carn_m, capsys):
    from srkit.cli import sample
    checkout, cwd = elsewhere
    monkeypatch.setenv("SRKIT_MIRROR", "http://127.0.0.1:9")  # nothing listens on port 9
    assert sample.main(["--ckpt_path", str(random_carn_m), "--scale", "4"]) == 2
    err = capsys.readouterr().err
    assert "fetching Set5 from the mirror http://127.0.0.1:9 (SRKIT_MIRROR), laid out as the SelfExSR release" in err
    assert sorted(checkout.rglob("*")) == [checkout / "datasets", checkout / "pyproject.toml"]
    assert list(cwd.iterdir()) == []


def test_training_ends_saying_where_the_weights_went(div2k, tmp_path, capsys):
    from srkit.cli import train
    from conftest import train_argv
    h5, val, _ = div2k
    argv = ["--family", "carn", "--model", "carn_m", "--scale", "2", *train_argv(h5, val, tmp_path, 2)]
    assert train.main(argv) == 0
    run = tmp_path / "run"
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"trained 2 steps. Weights: {run / 'run.pth'} (best validation: {run / 'best.pth'}); the run " \
                   f"folder: {run}"
    assert (run / "run.pth").is_file() and (run / "best.pth").is_file()
    assert train.main([*argv, "--max_steps", "5", "--stop_after", "1", "--resume"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "trained 3 of 5 steps; continue with the same command plus --resume. Weights: ")


def test_train_help_without_a_family_lists_the_families_and_how_to_see_their_flags(capsys):
    from srkit.cli import train
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "srkit-train --family NAME --help" in out
    for fam in registry.families():
        assert f"  {fam.name:<10} {fam.title}\n" in out
        with pytest.raises(SystemExit):
            train.main(["--family", fam.name, "--help"])
        flags = capsys.readouterr().out
        assert all(f"--{f.name}" in flags for f in fam.flags) and "--max_steps" in flags and "--ckpt_name" in flags


def test_upscale_help_sets_the_architecture_flags_apart_from_the_model_name(capsys):
    with pytest.raises(SystemExit):
        upscale.main(["--help"])
    out = capsys.readouterr().out
    main, arch = out.split("\noptions:\n")[1].split(f"\n{upscale.ARCH_GROUP}:\n")
    assert "-n MODEL_NAME, --model_name MODEL_NAME" in main and "--model " not in main
    assert arch.startswith("  -n picks the model; these only describe a checkpoint")
    flags = {f"--{f.name}" for fam in registry.families() for f in fam.flags}
    shown = lambda text, f: re.search(rf"^  {f}\b(?!_)", text, re.M)  # noqa: E731 - an option's own line
    assert flags and all(shown(arch, f) for f in flags) and not any(shown(main, f) for f in flags)


def test_a_later_run_without_report_rebuilds_the_report_beside_the_summary(tmp_path, random_carn_m, capsys):
    from conftest import run_dir
    from srkit.cli import sample
    d = tmp_path / "Photos"
    d.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (48, 60, 3), np.uint8)).save(d / "p.png")
    argv = ["--ckpt_path", str(random_carn_m), "--test_data_dir", str(d), "--sample_dir", str(tmp_path / "s"),
            "--no_save", "--cpu"]
    assert sample.main([*argv, "--scale", "2"]) == 0
    run = run_dir(tmp_path / "s")
    assert not (run / "report.html").exists()  # none asked for, none made
    assert sample.main([*argv, "--scale", "2", "--report"]) == 0
    first = (run / "report.html").read_text()
    capsys.readouterr()
    assert sample.main([*argv, "--scale", "3"]) == 0
    out = capsys.readouterr().out
    assert f"report: {run / 'report.html'} (rebuilt: it was there from an earlier run, and summary.json changed)" in out
    summary = json.loads((run / "summary.json").read_text())
    assert (run / "report.html").read_text() != first
    assert (run / "report.html").stat().st_mtime_ns >= (run / "summary.json").stat().st_mtime_ns
    assert sorted(r["scale"] for r in summary["results"]) == [2, 3]
    assert "<td>x3</td>" not in first and "<td>x3</td>" in (run / "report.html").read_text()


def test_complexity_says_why_a_count_differs_from_the_paper(capsys):
    """The counts equal the authors' released state dicts (../shared/reference/official_state_dicts.json); the
    note's figures are recomputed here from the same file's shapes, and the paper's figures from
    paper_complexity.csv."""
    from conftest import shared_path
    from srkit.cli import complexity
    official = json.loads(shared_path("reference", "official_state_dicts.json").read_text())
    paper = {line.split(",")[0]: int(line.split(",")[2].rstrip("K")) for line in
             shared_path("reference", "paper_complexity.csv").read_text().splitlines()[2:]}
    assert complexity.main([]) == 0
    out = capsys.readouterr().out
    for name, entry in official.items():
        assert f"| {name} | x" in out and f"| {entry['params_total']:,} |" in out
    shapes = official["carn_m"]["state_dict"]
    biases = sum(math.prod(s) for k, s in shapes.items() if k.endswith("bias") and "mean" not in k)
    frozen = official["carn_m"]["params_total"] - official["carn_m"]["params_trainable"]
    carn_biases = sum(math.prod(s) for k, s in official["carn"]["state_dict"].items()
                      if k.endswith("bias") and "mean" not in k)
    assert (biases, frozen, paper["carn_m"], paper["carn"]) == (2755, 24, 412, 1592)
    assert (f"carn_m: 414,811 counts every value of the model ({biases:,} of them biases, {frozen} frozen mean-shift "
            f"values); the paper prints 412K. The count without the biases is {414_811 - biases:,}, the paper's "
            f"figure; carn counted so is {1_591_963 - carn_biases:,}, not its paper's 1592K, which is its full "
            f"count: the paper's table did not count its models alike.") in out
    assert "\ncarn:" not in out  # carn's count prints as its paper's


def _pins(path) -> tuple[list[str], dict[str, str]]:
    """(pip options, {package: version}) of a requirements file; a local version label (+cpu) is dropped."""
    options, pins = [], {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-"):
            options.append(line)
        elif line:
            name, version = line.split("==")
            pins[name.lower()] = version.split("+")[0]
    return options, pins


def test_the_cpu_requirements_pin_what_requirements_txt_pins_from_pytorchs_cpu_index():
    """What can be checked without PyTorch's index: the same packages at the same versions, torch and
    torchvision as the CPU build, both indexes named, and the README's line for it."""
    options, pins = _pins(ROOT / "requirements-cpu.txt")
    assert _pins(ROOT / "requirements.txt") == ([], pins)
    assert options == ["--index-url https://download.pytorch.org/whl/cpu", "--extra-index-url https://pypi.org/simple"]
    text = (ROOT / "requirements-cpu.txt").read_text()
    assert "torch==2.14.1+cpu\n" in text and "torchvision==0.29.1+cpu\n" in text
    line = "python3 -m venv .venv && .venv/bin/pip install -r requirements-cpu.txt -e ."
    assert f"`{line}`" in " ".join((ROOT / "README.md").read_text().split()) and line in text
