"""Nothing lost in the field, as users run the tools: malformed checkpoint metadata and bad flags are one line,
outputs never overwrite an input or another checkpoint's results, same-named benchmark folders and file names
that are not UTF-8 keep every row, animations keep every frame, and float images holding NaN are refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from carn import sample
from conftest import ROOT, run_dir
from srkit.core import registry
from srkit.core.checkpoint import save_weights

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _photo(h=36, w=44, name="astronaut", y=100, x=180) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(getattr(data, name)())[y:y + h, x:x + w, :3])


def _carn_m_sd() -> dict:
    fam = registry.get("carn")
    torch.manual_seed(0)
    return fam.build(next(e.arch for e in fam.examples if e.arch["model"] == "carn_m")).state_dict()


def _with_arch(path: Path, arch) -> Path:
    torch.save({"state_dict": _carn_m_sd(), "arch": arch}, path)
    return path


def _deep_safetensors(path: Path) -> Path:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in _carn_m_sd().items()}, str(path),
              metadata={"arch": "[" * 100_000 + "]" * 100_000})
    return path


def _authors_layout(path: Path, key: str, shape: tuple) -> Path:
    sd = _carn_m_sd()
    sd[key] = torch.zeros(shape)
    torch.save(sd, path)
    return path


GOOD = {"family": "carn", "model": "carn_m", "multi_scale": True, "scale": None, "group": 4, "reduce_upsample": False}
BAD_ARCH = {
    "a list": (lambda p: _with_arch(p, [1, 2]), "'arch' is a list"),
    "null": (lambda p: _with_arch(p, None), "'arch' is a NoneType"),
    "a number": (lambda p: _with_arch(p, 3), "'arch' is an int"),
    "a string": (lambda p: _with_arch(p, "carn"), "'arch' is a str"),
    "deep nesting": (_deep_safetensors, "not a readable safetensors file (RecursionError"),
    "group as a string": (lambda p: _with_arch(p, {**GOOD, "group": "4"}), "field 'group' is '4', expected int"),
    "group as a float": (lambda p: _with_arch(p, {**GOOD, "group": 4.0}), "field 'group' is 4.0, expected int"),
    "group as a bool": (lambda p: _with_arch(p, {**GOOD, "group": True}), "field 'group' is True, expected int"),
    "multi_scale as a string": (lambda p: _with_arch(p, {**GOOD, "multi_scale": "yes"}),
                                "field 'multi_scale' is 'yes', expected bool"),
    "an unknown model": (lambda p: _with_arch(p, {**GOOD, "model": "carn_xl"}), "field 'model' is 'carn_xl'"),
    "an unknown field": (lambda p: _with_arch(p, {**GOOD, "depth": 3}), "field 'depth' is not an architecture flag"),
    "an unknown family": (lambda p: _with_arch(p, {**GOOD, "family": "nope"}), "field 'family': unknown model family"),
    "no family": (lambda p: _with_arch(p, {"model": "carn_m"}), "has no 'family' name"),
    "a zero-width weight": (lambda p: _authors_layout(p, "upsample.up2.body.0.weight", (256, 0, 3, 3)),
                            "not a checkpoint of any registered model family"),
    "a 1-D weight": (lambda p: _authors_layout(p, "upsample.up2.body.0.weight", (256,)),
                     "not a checkpoint of any registered model family"),
}
BAD_FLAGS = {
    "--shave -1": (["--shave", "-1"], "argument --shave: -1 must not be negative"),
    "--tile -5": (["--tile", "-5"], "argument --tile: -5 must not be negative"),
    "--max_pixels 0": (["--max_pixels", "0"], "argument --max_pixels: 0 must be at least 1"),
    "--max_pixels -3": (["--max_pixels", "-3"], "argument --max_pixels: -3 must be at least 1"),
    "--outscale 2.0000001": (["--outscale", "2.0000001"], "2.0000001 is within rounding of 2: give 2"),
    "--outscale 0.5": (["--outscale", "0.5"], "0.5 is not an upscaling factor"),
    "--outscale nan": (["--outscale", "nan"], "nan is not an upscaling factor"),
    "--scale -2": (["--scale", "-2"], "-2 is not an upscaling factor"),
}


@pytest.mark.parametrize("case", [*BAD_ARCH, *BAD_FLAGS])
def test_malformed_metadata_and_bad_flags_are_one_line(case, tmp_path, random_carn_m, capsys):
    """Exit 2, one line naming the file and the field (or the flag), nothing written; as the front-end runs
    (in this process: the same code as the command line, tested as a subprocess below)."""
    if case in BAD_ARCH:
        make, message = BAD_ARCH[case]
        ckpt = make(tmp_path / ("bad.safetensors" if case == "deep nesting" else "bad.pth"))
        argv = ["--ckpt_path", str(ckpt)]
    else:
        extra, message = BAD_FLAGS[case]
        argv = ["--ckpt_path", str(random_carn_m), *extra]
    try:
        rc = sample.main([*argv, "--test_data_dir", str(tmp_path), "--sample_dir", str(tmp_path / "o")])
    except SystemExit as e:  # argparse: usage and one error line
        rc = e.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2 and "Traceback" not in err, err[-2000:]
    assert len(errors) == 1 and message in errors[0], err[-2000:]
    if case in BAD_ARCH:
        assert str(ckpt) in errors[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["a list", "group as a float", "--max_pixels 0"])
def test_as_a_command_the_same_is_one_line_and_no_traceback(case, tmp_path, random_carn_m):
    if case in BAD_ARCH:
        make, message = BAD_ARCH[case]
        argv = ["--ckpt_path", str(make(tmp_path / "bad.pth"))]
    else:
        extra, message = BAD_FLAGS[case]
        argv = ["--ckpt_path", str(random_carn_m), *extra]
    r = subprocess.run([sys.executable, str(ROOT / "carn" / "sample.py"), *argv, "--test_data_dir", str(tmp_path),
                        "--sample_dir", str(tmp_path / "o")], capture_output=True, text=True, env=ENV, timeout=300)
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(errors) == 1 and message in errors[0], r.stderr


def test_two_checkpoints_into_one_sample_dir_keep_their_own_results(tmp_path, random_carn_m):
    d = tmp_path / "Set"
    d.mkdir()
    Image.fromarray(_photo(40, 40)).save(d / "a.png")
    fam = registry.get("carn")
    other = tmp_path / "finetuned.pth"
    torch.manual_seed(1)
    save_weights(other, fam.build(GOOD).state_dict(), GOOD)
    out = tmp_path / "o"
    for ck in (random_carn_m, other, random_carn_m):  # the first one again: its own folder, its own summary
        assert sample.main(["--ckpt_path", str(ck), "--test_data_dir", str(d), "--scale", "2", "--sample_dir",
                            str(out), "--cpu"]) == 0
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 2 and folders[0].startswith("finetuned-") and folders[1].startswith("random_carn_m-")
    summaries = {f: json.loads((out / f / "summary.json").read_text()) for f in folders}
    assert summaries[folders[0]]["results"][0]["psnr"] != summaries[folders[1]]["results"][0]["psnr"]
    assert len(summaries[folders[1]]["runs"]) == 2 and len(summaries[folders[1]]["results"]) == 1
    for f in folders:
        rows = (out / f / "Set" / "x2" / "metrics.csv").read_text().splitlines()
        assert summaries[f]["checkpoint"]["sha256"] in rows[1]  # each row says which checkpoint made it


def test_two_benchmark_folders_of_one_name_keep_every_row(tmp_path, random_carn_m):
    for parent, photo in (("A", "astronaut"), ("B", "coffee")):
        d = tmp_path / parent / "Set5"
        d.mkdir(parents=True)
        Image.fromarray(_photo(40, 40, photo, 50, 50)).save(d / "img.png")
        Image.fromarray(_photo(40, 40, photo, 60, 70)).save(d / "img2.png")
    out = tmp_path / "o"
    assert sample.main(["--ckpt_path", str(random_carn_m), "--test_data_dir", str(tmp_path / "A" / "Set5"),
                        str(tmp_path / "B" / "Set5"), "--scale", "2", "--sample_dir", str(out), "--cpu",
                        "--report"]) == 0
    folder = run_dir(out)
    results = json.loads((folder / "summary.json").read_text())["results"]
    assert sorted(r["dataset"] for r in results) == ["A_Set5", "B_Set5"] and all(r["images"] == 2 for r in results)
    for label in ("A_Set5", "B_Set5"):
        assert len((folder / label / "x2" / "metrics.csv").read_text().splitlines()) == 3
        assert sorted(p.name for p in (folder / label / "x2" / "SR").iterdir()) == ["img.png", "img2.png"]
    assert (folder / "report.html").read_text().count("<tr class='img'") == 4


def test_a_file_name_that_is_not_utf8_keeps_its_row(tmp_path, random_carn_m):
    d = tmp_path / "Set"
    d.mkdir()
    Image.fromarray(_photo(40, 40)).save(d / "plain.png")
    odd = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    Image.fromarray(_photo(40, 40, "coffee", 40, 40)).save(d / odd)
    Image.fromarray(_photo(40, 40, "chelsea", 40, 40)).save(d / "z.png")  # a later file, after the odd one
    out = tmp_path / "o"
    assert sample.main(["--ckpt_path", str(random_carn_m), "--test_data_dir", str(d), "--scale", "2",
                        "--sample_dir", str(out), "--cpu", "--report"]) == 0
    folder = run_dir(out)
    from srkit.inference.evaluate import read_metrics
    assert sorted(r["image"] for r in read_metrics(folder / "Set" / "x2" / "metrics.csv")) == sorted(
        [odd, "plain.png", "z.png"])
    assert json.loads((folder / "summary.json").read_text())["results"][0]["images"] == 3
    assert (folder / "report.html").is_file()


def test_an_input_is_never_an_output(tmp_path, random_carn_m, capsys):
    """Upscaling a folder holding earlier outputs into the same --sample_dir, two inputs with one file name,
    and an output folder equal to the input: nothing of the inputs is replaced."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(_photo()).save(photos / "a.png")
    Image.fromarray(_photo(30, 30, "coffee", 10, 10)).save(photos / "sub" / "a.png")
    before = {p: p.read_bytes() for p in photos.rglob("*.png")}
    for _ in range(2):  # the second run sees the first run's outputs inside photos/: never as inputs
        assert sample.main(["--ckpt_path", str(random_carn_m), "--input", str(photos), "--scale", "2",
                            "--sample_dir", str(photos), "--cpu"]) == 0
    assert all(p.read_bytes() == b for p, b in before.items())
    made = sorted(str(p.relative_to(run_dir(photos))) for p in run_dir(photos).rglob("*.png"))
    assert made == ["upscaled/x2/a.png", "upscaled/x2/sub/a.png"]
    from srkit.cli import upscale
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(_photo()).save(other / "a.png")
    capsys.readouterr()
    assert upscale.main(["-i", str(photos / "a.png"), str(other / "a.png"), "-o", str(tmp_path / "o"), "-n",
                         str(random_carn_m), "--cpu"]) == 2
    err = capsys.readouterr().err
    assert "would both be written to" in err and not (tmp_path / "o").exists()
    assert upscale.main(["-i", str(photos), "-o", str(photos), "-n", str(random_carn_m), "--cpu"]) == 2
    assert "is an input: the output of" in capsys.readouterr().err
    assert all(p.read_bytes() == b for p, b in before.items())


def _animation(path: Path, fmt: str) -> list[int]:
    frames = [Image.fromarray(_photo(24, 28, n, 60, 60)) for n in ("astronaut", "coffee", "chelsea")]
    durations = [80, 120, 200]
    if fmt == "TIFF":
        frames[0].save(path, save_all=True, append_images=frames[1:])
    else:
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=3)
    return durations


@pytest.mark.parametrize("name,fmt", [("anim.gif", "GIF"), ("anim.webp", "WEBP"), ("pages.tiff", "TIFF")])
def test_every_frame_of_an_animation_is_upscaled_with_its_timing(name, fmt, tmp_path, random_carn_m, capsys):
    d = tmp_path / "in"
    d.mkdir()
    durations = _animation(d / name, fmt)
    from srkit.cli import upscale
    assert upscale.main(["-i", str(d), "-o", str(tmp_path / "o"), "-n", str(random_carn_m), "-s", "2", "--cpu"]) == 0
    assert "(3 frames)" in capsys.readouterr().out
    out = Image.open(tmp_path / "o" / name)
    assert out.n_frames == 3 and out.size == (56, 48)
    if fmt != "TIFF":
        got = []
        for i in range(3):
            out.seek(i)
            out.load()  # WebP says a frame's duration once the frame is read
            got.append(out.info["duration"])
        assert got == durations and out.info.get("loop") == 3
    # the benchmark path: one frame is what a benchmark image is; named, the rest of the run goes on
    Image.fromarray(_photo(40, 40)).save(d / "still.png")
    assert sample.main(["--ckpt_path", str(random_carn_m), "--test_data_dir", str(d), "--scale", "2",
                        "--sample_dir", str(tmp_path / "b"), "--cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{name}: holds 3 frames" in err
    assert json.loads((run_dir(tmp_path / "b") / "summary.json").read_text())["results"][0]["images"] == 1


def test_a_float_image_holding_nan_is_refused_in_both_paths(tmp_path, random_carn_m, capsys):
    d = tmp_path / "in"
    d.mkdir()
    a = np.random.default_rng(0).random((20, 24), dtype=np.float32)
    a[3, 4], a[5, 6] = np.nan, np.inf
    Image.fromarray(a, mode="F").save(d / "nan.tiff")
    Image.fromarray(_photo(30, 30)).save(d / "good.png")
    assert sample.main(["--ckpt_path", str(random_carn_m), "--input", str(d), "--scale", "2", "--sample_dir",
                        str(tmp_path / "o"), "--cpu"]) == 1
    err = capsys.readouterr().err
    assert "nan.tiff: a float image holding 2 NaN or infinite value(s)" in err
    assert sorted(p.name for p in (run_dir(tmp_path / "o") / "upscaled" / "x2").iterdir()) == ["good.png"]
    assert sample.main(["--ckpt_path", str(random_carn_m), "--test_data_dir", str(d), "--scale", "2",
                        "--sample_dir", str(tmp_path / "b"), "--cpu"]) == 1
    assert "nan.tiff: mode 'F' (32-bit float) is not an 8-bit RGB or grayscale image" in capsys.readouterr().err
