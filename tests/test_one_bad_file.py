"""One bad file never stops the rest: damaged files (made here with Pillow, then damaged) of every exception type
Pillow raises, in srkit-upscale, benchmark evaluation and srkit-prepare-benchmark, as the commands run; and two
benchmark images that would write one SR output are refused before anything runs."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence
from skimage import data

from conftest import run_dir
from srkit.inference.precision import NAMES, resolve

BIN = Path(sys.executable).parent


def photo(h: int = 24, w: int = 28, y: int = 100, x: int = 180) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(np.asarray(data.astronaut())[y:y + h, x:x + w, :3]))


def two_frames(fmt: str, size: int = 16) -> bytes:
    """A two-frame file (animation or two pages) of ``fmt``, of fixed content."""
    a = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, save_all=True, append_images=[Image.fromarray(a[::-1].copy())])
    return buf.getvalue()


def _poke(raw: bytes, at: int, value: int) -> bytes:
    b = bytearray(raw)
    b[at] = value
    return bytes(b)


# name -> (bytes, the exception type Pillow itself raises for it, checked below so that each case is what it says)
def damaged() -> dict[str, tuple[bytes, str]]:
    gif, tif = two_frames("GIF"), two_frames("TIFF")
    return {"cut_animation.gif": (gif[:len(gif) * 3 // 4], "IndexError"),
            "no_dimensions.tif": (_poke(tif, 8, 7), "TypeError"),
            "page2_mode.tif": (_poke(tif, 946, 0), "SyntaxError"),
            "page2_tag.tif": (_poke(tif, 962, 7), "KeyError")}


def pillow_raises(raw: bytes) -> str:
    """The exception type Pillow raises opening, decoding and walking every frame of ``raw``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(raw))
            for frame in ImageSequence.Iterator(img):
                frame.load()
                frame.convert("RGB")
    except Exception as e:  # noqa: BLE001
        return type(e).__name__
    return "nothing"


def _folder(root: Path) -> tuple[Path, dict[str, tuple[bytes, str]]]:
    root.mkdir()
    bad = damaged()
    for name, (raw, kind) in bad.items():
        assert pillow_raises(raw) == kind, name
        (root / name).write_bytes(raw)
    photo().save(root / "a_good.png")
    photo(y=200).save(root / "z_good.png")
    return root, bad


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line or line.startswith("  ")]


def test_upscale_names_each_damaged_file_once_and_writes_the_rest(tmp_path, random_carn_m):
    src, bad = _folder(tmp_path / "in")
    out = tmp_path / "out"
    r = subprocess.run([str(BIN / "srkit-upscale"), "-i", str(src), "-o", str(out), "-n", str(random_carn_m),
                        "-s", "2", "--cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    for name in bad:
        assert sum(str(src / name) in line for line in errors) == 1, (name, r.stderr[-3000:])
    assert len(errors) == len(bad)
    assert sorted(p.name for p in out.iterdir()) == ["a_good.png", "z_good.png"]
    ran = NAMES[resolve("auto", torch.device("cpu"))]  # the default precision on this CPU (bf16 on AMX-BF16)
    assert f"upscaled 2 of 6 image(s) x2 into {out} ({ran}); 4 failed" in r.stdout


def test_evaluation_scores_the_good_images_and_lists_the_failures(tmp_path, random_carn_m):
    src, bad = _folder(tmp_path / "Set")
    r = subprocess.run([str(BIN / "srkit-sample"), "--ckpt_path", str(random_carn_m), "--test_data_dir", str(src),
                        "--scale", "2", "--sample_dir", str(tmp_path / "o"), "--cpu"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    summary = json.loads((run_dir(tmp_path / "o") / "summary.json").read_text())
    res = summary["results"][0]
    assert (res["images"], res["failed"]) == (2, 4)
    for name in bad:
        assert sum(str(src / name) in e for e in summary["errors"]) == 1, (name, summary["errors"])
    rows = (run_dir(tmp_path / "o") / "Set" / "x2" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["a_good.png", "z_good.png"]


def test_prepare_benchmark_goes_on_past_damaged_files(tmp_path):
    src, bad = _folder(tmp_path / "hr")
    r = subprocess.run([str(BIN / "srkit-prepare-benchmark"), str(src), "--out", str(tmp_path / "b"), "--scales",
                        "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad) and all(any(name in e for e in errors) for name in bad), r.stderr
    assert sorted(p.name for p in (tmp_path / "b" / "x2").iterdir()) == [
        "a_good_HR.png", "a_good_LR.png", "z_good_HR.png", "z_good_LR.png"]


def test_two_images_that_would_write_one_sr_output_are_refused_before_running(tmp_path, random_carn_m):
    src = tmp_path / "Set"
    src.mkdir()
    photo().save(src / "photo_HR.png")
    photo(y=200).save(src / "photo_SR.png")
    r = subprocess.run([str(BIN / "srkit-sample"), "--ckpt_path", str(random_carn_m), "--test_data_dir", str(src),
                        "--scale", "2", "--sample_dir", str(tmp_path / "o"), "--cpu"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert (f"{src / 'photo_HR.png'} and {src / 'photo_SR.png'} would both be written to SR/photo_SR.png"
            in r.stderr), r.stderr
    out = run_dir(tmp_path / "o")
    assert not (out / "Set" / "x2" / "SR").exists()
    assert json.loads((out / "summary.json").read_text())["results"][0]["images"] == 0
