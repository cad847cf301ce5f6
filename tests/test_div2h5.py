"""div2h5.py as users run it: the toy set goes where --div2k says and never packs someone else's folder; a
damaged image is named and no partial training set is written; the output is never one of its inputs."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import div2h5
from train_fixtures import make_div2k


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_the_toy_set_goes_into_the_folder_named_and_is_what_is_packed(tmp_path, capsys):
    mine, out = tmp_path / "mine", tmp_path / "toy.h5"
    assert div2h5.main(["--toy", "4", "--div2k", str(mine), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"toy set: 4 training images in {mine / 'DIV2K_train_HR'}, a validation folder {tmp_path / 'valid'}" in said
    assert sorted(p.name for p in (mine / "DIV2K_train_HR").iterdir()) == [f"{i:04d}.png" for i in range(1, 5)]
    assert not (tmp_path / "DIV2K").exists()
    with h5py.File(out) as f:
        assert len(f["HR"]) == 4
        assert np.array_equal(f["HR/0"][()], np.asarray(Image.open(mine / "DIV2K_train_HR" / "0001.png")))
    assert div2h5.main(["--toy", "4", "--div2k", str(mine), "--out", str(out)]) == 0  # again: kept
    assert "is up to date (4 images): kept" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["real data", "a larger toy set"])
def test_the_toy_set_refuses_a_folder_that_holds_other_files_and_writes_nothing(case, tmp_path, capsys):
    """--toy into an existing folder packed that folder (a user's images) as the toy set; now nothing is
    written and the folder is named."""
    div, out = tmp_path / "DIV2K", tmp_path / "toy.h5"
    if case == "real data":
        hr = div / "DIV2K_train_HR"
        hr.mkdir(parents=True)
        Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(hr / "0001.png")
        Image.fromarray(np.full((64, 64, 3), 9, np.uint8)).save(hr / "holiday.png")
    else:
        make_div2k(tmp_path, count=8)
    before = _tree(tmp_path)
    capsys.readouterr()
    assert div2h5.main(["--toy", "4", "--div2k", str(div), "--out", str(out)]) == 1
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 1 and f"error: {div}: holds " in errors[0] and "choose an empty or absent folder" in errors[0]
    assert _tree(tmp_path) == before and not out.exists()


def test_damaged_images_are_each_named_and_no_partial_training_set_is_written(tmp_path, capsys):
    div, _ = make_div2k(tmp_path, count=6)
    hr = div / "DIV2K_train_HR"
    lr2 = div / "DIV2K_train_LR_bicubic" / "X2"
    lr2.mkdir(parents=True)
    for p in sorted(hr.iterdir()):
        Image.open(p).resize((96, 96), Image.BICUBIC).save(lr2 / f"{p.stem}x2.png")
    (hr / "0002.png").write_bytes((hr / "0002.png").read_bytes()[:300])  # truncated
    (hr / "0004.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a PNG signature, then garbage
    (lr2 / "0005x2.png").write_bytes(b"not an image at all")
    out = tmp_path / "train.h5"
    capsys.readouterr()
    assert div2h5.main(["--div2k", str(div), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = _errors(err)
    assert [any(str(p) in e for e in errors[:-1]) for p in (hr / "0002.png", hr / "0004.png", lr2 / "0005x2.png")] \
        == [True, True, True] and len(errors) == 4, errors
    assert errors[-1].startswith("error: 3 of 12 images could not be read; nothing written")
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_the_output_is_never_an_input_nor_a_folder(tmp_path, capsys):
    div, _ = make_div2k(tmp_path, count=4)
    first = div / "DIV2K_train_HR" / "0001.png"
    before = first.read_bytes()
    for out, message in ((first, "is one of the input images; div2h5 never writes onto its input"),
                         (tmp_path, "a folder; give the h5 file to write")):
        capsys.readouterr()
        assert div2h5.main(["--div2k", str(div), "--out", str(out), "--overwrite"]) == 1
        errors = _errors(capsys.readouterr().err)
        assert errors == [f"error: --out {out}: {message}"], errors
    assert first.read_bytes() == before


@pytest.mark.parametrize("flag", ["--div2k", "--out"])
def test_an_empty_path_is_refused(flag, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path meant the current folder
    with pytest.raises(SystemExit) as e:
        div2h5.main([flag, ""])
    assert e.value.code == 2 and f"argument {flag}: empty: give a path" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
