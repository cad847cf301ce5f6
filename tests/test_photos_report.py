"""Real photos in, a report out: hostile files in both paths (decompression bombs, truncated files, folders and
symlink loops under image names, blocked outputs), EXIF orientation, ICC / DPI / EXIF carried over,
--outscale, and the HTML report checked in headless Chromium."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import urllib.parse
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, JpegImagePlugin
from skimage import data

from carn import sample
from conftest import ROOT, run_dir
from srkit.core import registry
from srkit.core.checkpoint import save_weights
from srkit.core.tolerances import PSNR_REPRO_DB


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "carn_m.pth"
    fam = registry.get("carn")
    torch.manual_seed(0)
    save_weights(path, fam.build(fam.examples[1].arch).state_dict(), {"family": "carn", **fam.examples[1].arch})
    return path


def _photo(h=40, w=56, name="astronaut", y=100, x=180) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(getattr(data, name)())[y:y + h, x:x + w, :3])


def bomb_png(side: int = 30000) -> bytes:
    """A small PNG whose header declares side x side RGB pixels (one row of data follows)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(side * 3 + 1))) + \
        chunk(b"IEND", b"")


@pytest.mark.slow
def test_a_bomb_between_two_photos_through_both_paths(tmp_path, model):
    """Acceptance 1: both photos done, the bomb named in one line, no traceback, exit status 1."""
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_photo(48, 60)).save(d / "a.png")
    (d / "b.png").write_bytes(bomb_png())
    Image.fromarray(_photo(48, 60, "coffee", 50, 50)).save(d / "c.png")
    for argv, out, made in ((["--input", str(d)], tmp_path / "o1", ("upscaled", "x2")),
                            (["--test_data_dir", str(d)], tmp_path / "o2", ("in", "x2", "SR"))):
        r = subprocess.run([sys.executable, str(ROOT / "carn" / "sample.py"), "--ckpt_path", str(model), "--scale",
                            "2", "--sample_dir", str(out), *argv], capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-1500:]
        lines = [x for x in r.stderr.splitlines() if "b.png" in x and x.startswith("error")]
        assert lines and "30000x30000 is 900,000,000 pixels, over the limit of 89,478,485" in lines[0]
        assert lines[0].count("over the limit") == 1 and "Warning" not in r.stderr  # one message, not Pillow's too
        assert sorted(p.name for p in run_dir(out).joinpath(*made).iterdir()) == ["a.png", "c.png"]
    rows = (run_dir(tmp_path / "o2") / "in" / "x2" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and json.loads((run_dir(tmp_path / "o2") / "summary.json").read_text())["results"]


def test_an_explicit_limit_lets_a_large_image_through_or_stops_a_smaller_one(tmp_path, model, capsys):
    src = tmp_path / "p.png"
    Image.fromarray(_photo(40, 50)).save(src)
    assert sample.main(["--ckpt_path", str(model), "--input", str(src), "--max_pixels", "1000",
                        "--sample_dir", str(tmp_path)]) == 1
    assert "50x40 is 2,000 pixels, over the limit of 1,000" in capsys.readouterr().err
    assert sample.main(["--ckpt_path", str(model), "--input", str(src), "--max_pixels", "2000",
                        "--sample_dir", str(tmp_path)]) == 0
    with pytest.raises(SystemExit) as e:  # no "0 = unlimited": a limit is a number of pixels
        sample.main(["--ckpt_path", str(model), "--input", str(src), "--max_pixels", "0"])
    assert e.value.code == 2 and "--max_pixels: 0 must be at least 1" in capsys.readouterr().err


def test_hostile_entries_are_each_named(tmp_path, model, capsys):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_photo()).save(d / "good.png")
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, format="PNG")
    (d / "truncated.png").write_bytes(buf.getvalue()[:300])
    (d / "folder.png").mkdir()
    (d / "loop.png").symlink_to(d / "loop.png")
    (d / "dangling.jpg").symlink_to(d / "nowhere.jpg")
    loop = tmp_path / "cmdline_loop.png"
    loop.symlink_to(loop)
    for argv in (["--input", str(d), str(loop)], ["--test_data_dir", str(d)]):
        assert sample.main(["--ckpt_path", str(model), "--scale", "2", "--sample_dir", str(tmp_path / "o"),
                            *argv]) == 1
        err = capsys.readouterr().err
        assert "truncated.png: unreadable or corrupt image" in err
        assert "folder.png: a folder, not an image" in err
        assert "loop.png: a symlink loop" in err and "dangling.jpg: a dangling symlink" in err
        if "--input" in argv:  # a loop named on the command line
            assert "cmdline_loop.png: a symlink loop" in err


def test_blocked_outputs_are_named_and_the_run_still_reports(tmp_path, model, capsys):
    """A file where the SR folder must go, a folder where an HR image must go: one line each, metrics.csv and
    summary.json written, no temporary file left."""
    d = tmp_path / "set"
    d.mkdir()
    for i, name in enumerate(("chelsea", "coffee")):
        Image.fromarray(_photo(40, 40, name, 30, 30 + 10 * i)).save(d / f"im{i}.png")
    from srkit.weights.load import load_model_with_source
    out = tmp_path / "o" / load_model_with_source(str(model))[2].short / "set" / "x2"
    out.mkdir(parents=True)
    (out / "SR").write_text("a file in the way")
    assert sample.main(["--ckpt_path", str(model), "--test_data_dir", str(d), "--scale", "2", "--sample_dir",
                        str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("cannot write the output image") == 4 and "Traceback" not in err  # as it happens + closing list
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    summary = json.loads((run_dir(tmp_path / "o") / "summary.json").read_text())
    assert len(summary["errors"]) == 2 and summary["results"][0]["images"] == 2
    assert not list((tmp_path / "o").rglob("*.tmp"))


def _srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_exif_orientation_icc_dpi_and_exif_are_kept(tmp_path, model):
    """Acceptance 2: a phone's portrait JPEG (orientation 6) comes out upright (pixel-transposed, no stale
    tag), with the ICC profile byte-identical, the DPI scaled, the other EXIF kept and 4:4:4 sampling."""
    stored = _photo(40, 56)  # as the sensor stored it: landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "srkit test camera"  # Make
    icc = _srgb()  # one profile: each one made carries its creation time
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(stored).save(d / "phone.jpg", exif=exif.tobytes(), icc_profile=icc, dpi=(72, 72),
                                 quality=95, subsampling=0)
    Image.fromarray(stored).save(d / "phone.png", exif=exif.tobytes(), icc_profile=icc)
    assert sample.main(["--ckpt_path", str(model), "--input", str(d), "--scale", "2", "--sample_dir",
                        str(tmp_path / "o")]) == 0
    out = run_dir(tmp_path / "o") / "upscaled" / "x2"
    jpg = Image.open(out / "phone.jpg")
    assert jpg.size == (40 * 2, 56 * 2)  # displayed portrait: width = the stored height
    assert jpg.getexif().get(0x0112) in (None, 1) and jpg.getexif().get(0x010F) == "srkit test camera"
    assert jpg.info["icc_profile"] == icc and tuple(round(v) for v in jpg.info["dpi"]) == (144, 144)
    assert JpegImagePlugin.get_sampling(jpg) == 0
    # the pixels: the lossless PNG output equals the model run on the upright (rotated) photo
    from srkit.api import load
    upright = Image.fromarray(np.ascontiguousarray(np.rot90(stored, k=-1)))
    want = np.asarray(load(str(model), device="cpu")(upright, scale=2))
    png = Image.open(out / "phone.png")
    assert png.info["icc_profile"] == icc and png.getexif().get(0x0112) in (None, 1)
    assert np.array_equal(np.asarray(png), want)


def test_outscale_gives_the_exact_size_with_any_family(tmp_path, model):
    src = tmp_path / "p.png"
    Image.fromarray(_photo(33, 47)).save(src)
    assert sample.main(["--ckpt_path", str(model), "--input", str(src), "--outscale", "1.5", "3.2",
                        "--sample_dir", str(tmp_path / "o")]) == 0
    for s, size in ((1.5, (71, 50)), (3.2, (150, 106))):  # round half up of 47*s, 33*s
        assert Image.open(run_dir(tmp_path / "o") / "upscaled" / f"x{s:g}" / "p.png").size == size


def test_outscale_3_2_with_the_released_carn_m_on_set5(tmp_path, carn_m_released, benchmark_dir, capsys):
    """Acceptance 3: x4 then MATLAB-bicubic down to exactly HR size at 3.2; the score lies between the x3 and
    x4 scores of the same images (as the scale does)."""
    hr_only = tmp_path / "Set5HR"
    hr_only.mkdir()
    for p in sorted((benchmark_dir / "Set5" / "x4").glob("*_HR.png")):
        shutil.copy(p, hr_only / p.name.replace("_SRF_4_HR", ""))
    scores = {}
    for flag, s in (("--outscale", "3.2"), ("--scale", "3"), ("--scale", "4")):
        out = tmp_path / f"o{s}"
        assert sample.main(["--ckpt_path", str(carn_m_released), "--test_data_dir", str(hr_only), flag, s,
                            "--sample_dir", str(out)]) == 0
        summary = json.loads((run_dir(out) / "summary.json").read_text())
        scores[s] = summary["results"][0]["psnr"]
        for sr in (run_dir(out) / "Set5HR" / f"x{s}" / "SR").iterdir():
            assert Image.open(sr).size == Image.open(run_dir(out) / "Set5HR" / f"x{s}" / "HR" / sr.name).size
    print(f"released CARN-M, Set5 (HR-only, LR by MATLAB imresize): x3 {scores['3']:.3f}, "
          f"--outscale 3.2 {scores['3.2']:.3f}, x4 {scores['4']:.3f} dB")
    assert scores["4"] - PSNR_REPRO_DB < scores["3.2"] < scores["3"] + PSNR_REPRO_DB
    assert json.loads((run_dir(tmp_path / "o3.2") / "summary.json").read_text())["runs"][-1]["model_scales"] == \
        {"3.2": 4}


def _chromium() -> str:
    """Headless Chromium: required where SRKIT_REQUIRE_BROWSER=1 (CI sets it), else the test skips saying why."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        why = "headless Chromium is needed for the report test: run .ci/setup_browser.sh (Debian's chromium, root)"
        if os.environ.get("SRKIT_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return path


def _browse(page: Path, fragment: str = "", *extra: str) -> tuple[str, str]:
    r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                        "--v=0", *extra, f"file://{page}{fragment}"], capture_output=True, text=True, timeout=120)
    return r.stdout, r.stderr


@pytest.mark.slow
def test_the_report_in_a_real_browser(tmp_path, model):
    """Headless Chromium opens the page from disk: the header names the checkpoint's sha256 and the command,
    the tables, rows and crops are there, the rows sort by any column (an unknown column is ignored), the
    filter by dataset and scale hides the rest, the links reach the full-size images, and the console has no
    errors. The page is built from absolute paths, so another working directory changes nothing."""
    from srkit.core.fetch import hashes
    d = tmp_path / "Photos"
    d.mkdir()
    for i, name in enumerate(("astronaut", "coffee", "chelsea")):
        Image.fromarray(_photo(60, 72, name, 40, 60 + 10 * i)).save(d / f"{name}.png")
    assert sample.main(["--ckpt_path", str(model), "--test_data_dir", str(d), "--scale", "2", "4", "--sample_dir",
                        str(tmp_path / "o"), "--report"]) == 0
    folder = run_dir(tmp_path / "o")
    page = folder / "report.html"
    cols = ["dataset", "scale", "image", "psnr", "ssim", "bicubic", "gain", "seconds"]
    for fragment, column, desc in (("", "gain", True), ("#sort=psnr-asc", "psnr", False), ("#sort=nope-asc", "gain", True)):
        dom, log = _browse(page, fragment, "--dump-dom")
        assert not [x for x in log.splitlines() if "CONSOLE" in x], log  # no script error or warning
        assert f'data-sorted="{column}-{"desc" if desc else "asc"}"' in dom
        rows = re.findall(r'<tr class="img"[^>]*>(.*?)</tr>', dom)
        assert len(rows) == 6  # 3 images x 2 scales
        values = [float(re.findall(r'data-v="([^"]*)"', r)[cols.index(column)]) for r in rows]
        assert values == sorted(values, reverse=desc)
        assert dom.count('<figure class="crop"') == 4 and dom.count('src="data:image/png;base64,') == 12
    assert hashes(model)["sha256"] in dom and "--scale 2 4" in dom and "--report" in dom  # what produced it
    for href in set(re.findall(r'href="([^"]+)"', dom)):
        assert (folder / urllib.parse.unquote(href)).is_file(), href
    dom, log = _browse(page, "#filter=Photos%7Cx4", "--dump-dom")
    shown = re.findall(r'<tr class="img[^"]*"[^>]*data-key="([^"]*)"[^>]*>', dom)
    assert len(shown) == 6 and not [x for x in log.splitlines() if "CONSOLE" in x], log
    visible = [k for k in re.findall(r'<tr class="img( hidden)?"', dom)]
    assert visible.count("") == 3  # only the x4 rows
    figures = re.findall(r'<figure class="crop( hidden)?" data-key="([^"]*)"', dom)
    assert sorted(k for h, k in figures if not h) == ["Photos|x4", "Photos|x4"]
    shot = tmp_path / "shot.png"
    _browse(page, "", f"--screenshot={shot}", "--window-size=1200,900", "--hide-scrollbars")
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (900, 1200) and len(np.unique(img)) > 50  # rendered, not blank
    before = page.read_text()
    from srkit.report import write_report
    os.chdir(tmp_path / "o")  # another working directory: the same page
    try:
        write_report(folder)
    finally:
        os.chdir(ROOT)
    assert page.read_text() == before


def test_an_output_larger_than_memory_is_refused_with_what_it_needs(tmp_path, model, monkeypatch, capsys):
    from srkit.inference import upscale
    src = tmp_path / "p.png"
    Image.fromarray(_photo(40, 50)).save(src)
    monkeypatch.setattr(upscale, "_memory_available", lambda: 1_000_000)  # as if 1 MB were free
    assert sample.main(["--ckpt_path", str(model), "--input", str(src), "--scale", "4", "--sample_dir",
                        str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "p.png: the x4 output would be 200x160 and need about 1.5 MB, more than the 1.0 MB available" in err
    assert not list((tmp_path / "o").rglob("p.png"))
