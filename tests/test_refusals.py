"""Inputs that are refused in one line, as users run the commands: no command writes onto its input or onto a
released weights file; non-finite weights and API tensors the model cannot take; empty paths; export scales the
model does not serve; a --suffix holding a path; and messages that read right."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from srkit.core import registry
from srkit.core.checkpoint import save_weights
from test_one_bad_file import photo

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*cmd: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, env=env or ENV, cwd=cwd,
                          timeout=300)


def one_line(r: subprocess.CompletedProcess, rc: int, message: str) -> None:
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == rc and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(errors) == 1 and message in errors[0], r.stderr[-3000:]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_convert_refuses_to_write_onto_the_released_file_it_reads(tmp_path, carn_m_released):
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(carn_m_released, weights / "carn_m.pth")
    before = _sha(weights / "carn_m.pth")
    r = run("srkit-convert", "carn_m", str(weights / "carn_m.pth"), env={**ENV, "SRKIT_WEIGHTS_DIR": str(weights)})
    one_line(r, 2, f"{weights / 'carn_m.pth'} holds the released weights 'carn_m': writing it would replace them")
    shutil.copy(carn_m_released, tmp_path / "copy.pth")  # any copy of released weights, whatever the input
    r = run("srkit-convert", str(carn_m_released), str(tmp_path / "copy.pth"))
    one_line(r, 2, f"{tmp_path / 'copy.pth'} holds the released weights 'carn_m'")
    assert _sha(weights / "carn_m.pth") == before == _sha(tmp_path / "copy.pth")
    assert sorted(p.name for p in weights.iterdir()) == ["carn_m.pth"]  # no temporary file left


def test_convert_export_and_plot_log_refuse_their_own_input_and_folders(tmp_path, random_carn_m):
    ckpt = tmp_path / "mine.pth"
    shutil.copy(random_carn_m, ckpt)
    link = tmp_path / "link.pth"
    link.symlink_to(ckpt)
    before = _sha(ckpt)
    one_line(run("srkit-convert", str(ckpt), str(link)), 2, f"{link} is the input {ckpt}")
    one_line(run("srkit-export", "--ckpt_path", str(ckpt), "--scale", "2", "--out", str(ckpt)), 2,
             f"{ckpt} is the input {ckpt}")
    one_line(run("srkit-export", "--ckpt_path", str(ckpt), "--scale", "2", "--out", str(tmp_path)), 2,
             f"{tmp_path}: a folder; give a file name for the --out")
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n1,0.5\n2,0.4\n")
    one_line(run("srkit-plot-log", str(log), "--out", str(log)), 1, f"{log} is the input {log}")
    assert _sha(ckpt) == before and log.read_text() == "step,loss\n1,0.5\n2,0.4\n"


@pytest.mark.parametrize("scale, message", [("5", "--scale 5: this model serves x2, x3, x4, not x5"),
                                            ("0", "argument --scale: 0 must be at least 1"),
                                            ("-1", "argument --scale: -1 must be at least 1")])
def test_export_refuses_a_scale_the_model_does_not_serve(scale, message, tmp_path, random_carn_m):
    r = run("srkit-export", "--ckpt_path", str(random_carn_m), "--scale", scale, "--out", str(tmp_path / "m.onnx"))
    one_line(r, 2, message)
    assert len(r.stderr.splitlines()) <= 3 and not (tmp_path / "m.onnx").exists()


def test_non_finite_weights_are_refused_at_load(tmp_path, random_carn_m):
    fam = registry.get("carn")
    arch = next(e.arch for e in fam.examples if e.arch["model"] == "carn_m")
    sd = fam.build(arch).state_dict()
    key = next(k for k, v in sd.items() if v.is_floating_point())
    sd[key].view(-1)[0] = float("nan")
    bad = save_weights(tmp_path / "nan.pth", sd, {"family": "carn", **arch}) or tmp_path / "nan.pth"
    src = tmp_path / "in"
    src.mkdir()
    photo().save(src / "a.png")
    r = run("srkit-upscale", "-i", str(src), "-o", str(tmp_path / "out"), "-n", str(bad), "--cpu")
    one_line(r, 2, f"{bad}: weight {key!r} holds 1 NaN or infinite value(s)")
    assert not (tmp_path / "out").exists()


def test_the_api_refuses_tensors_the_model_cannot_take(random_carn_m):
    from srkit.api import load
    sr = load(str(random_carn_m), device="cpu")
    good = torch.rand(1, 3, 12, 12)
    assert sr(good, 2).shape == (1, 3, 24, 24)
    nan = good.clone()
    nan[0, 1, 2, 3] = float("nan")
    inf = good.clone()
    inf[0, 0, 0, 0] = float("inf")
    cases = {"NaN": (nan, "holding 1 NaN or infinite value(s)"), "inf": (inf, "holding 1 NaN or infinite value(s)"),
             "gray": (torch.rand(1, 1, 12, 12), "shape (1, 1, 12, 12): give (N, 3, H, W)"),
             "3-D": (torch.rand(3, 12, 12), "shape (3, 12, 12): give (N, 3, H, W) RGB (a single image: x[None]"),
             "bool": (good > 0.5, "a torch.bool tensor"), "complex": (good.to(torch.complex64), "a torch.complex64"),
             "uint8": ((good * 255).to(torch.uint8), "a torch.uint8 tensor: give a floating-point tensor")}
    for name, (x, message) in cases.items():
        with pytest.raises(ValueError) as e:
            sr(x, 2)
        assert message in str(e.value) and "\n" not in str(e.value), (name, str(e.value))


@pytest.mark.parametrize("argv, message", [
    (["-i", "", "-o", "OUT"], "argument -i/--input: an empty path"),
    (["-i", "IN", "-o", ""], "argument -o/--output: an empty path"),
    (["-i", "IN", "-o", "OUT", "--suffix", "/x"], "argument --suffix: '/x' holds a path separator")])
def test_upscale_refuses_empty_paths_and_a_suffix_holding_a_path(argv, message, tmp_path, random_carn_m):
    src = tmp_path / "IN"
    src.mkdir()
    photo().save(src / "a.png")
    r = run("srkit-upscale", *argv, "-n", str(random_carn_m), "--cpu", cwd=tmp_path)
    one_line(r, 2, message)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["IN", "a.png"]  # nothing written, the cwd included


@pytest.mark.parametrize("cmd", [["srkit-sample", "--ckpt_path", "CKPT", "--input", ""],
                                 ["srkit-sample", "--ckpt_path", "CKPT", "--test_data_dir", "IN", "--sample_dir", ""],
                                 ["srkit-export", "--ckpt_path", "CKPT", "--scale", "2", "--out", ""],
                                 ["srkit-convert", "CKPT", ""], ["srkit-convert", "", "x.pth"],
                                 ["srkit-report", ""], ["srkit-plot-log", ""], ["srkit-plot-log", "IN", "--out", ""]])
def test_every_path_flag_refuses_an_empty_path(cmd, tmp_path, random_carn_m):
    (tmp_path / "IN").mkdir()
    r = run(*[str(random_carn_m) if c == "CKPT" else c for c in cmd], cwd=tmp_path)
    one_line(r, 2, "an empty path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["IN"]


def test_messages_read_right(random_carn_m, monkeypatch):
    from srkit.api import load
    sr = load(str(random_carn_m), device="cpu")
    with pytest.raises(ValueError) as e:
        sr(torch.rand(1, 3, 8, 8), 4.0000001)
    assert "not x4.0000001" in str(e.value), str(e.value)
    hub = torch.hub.load(str(ROOT), "carn_m", source="local", trust_repo=True)
    assert isinstance(hub, torch.nn.Module)
    with pytest.raises(TypeError, match="the carn_m hub entry takes no arguments besides pretrained \\(foo given\\)"):
        torch.hub.load(str(ROOT), "carn_m", source="local", trust_repo=True, foo=1)


def test_an_unwritable_weights_folder_names_no_flag_the_command_lacks(tmp_path, monkeypatch):
    from srkit.weights import zoo
    (tmp_path / "a_file").write_text("")  # a file in the way: unwritable even for root
    monkeypatch.setenv("SRKIT_WEIGHTS_DIR", str(tmp_path / "a_file" / "weights"))
    monkeypatch.setenv("SRKIT_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(zoo.NotWritableError) as e:
        zoo.download("carn_m", progress=False)
    assert "or pass --dir" not in str(e.value) and "srkit-download --dir" in str(e.value), str(e.value)
