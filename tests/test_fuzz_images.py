"""Seeded fuzzing of image files, as the commands run: PNG, JPEG, GIF, TIFF and WebP files made here are
mutated (byte flips, truncation, header edits) and a folder of every mutant plus two good images goes through
srkit-upscale and benchmark evaluation. No traceback, both good images processed, and every mutant either
processed or named in one error line. ``--max_pixels`` is lowered so that a mutant whose header claims a huge
(but allowed) size is refused rather than upscaled for minutes: the bound keeps the test's time fixed."""
from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_dir
from test_one_bad_file import photo

BIN = Path(sys.executable).parent
SEED, PER_FORMAT, MAX_PIXELS = 2024, 12, 65536
FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "TIFF": "tif", "WEBP": "webp"}


def _base(fmt: str) -> bytes:
    a = np.asarray(photo(24, 24))
    buf = io.BytesIO()
    frames = [Image.fromarray(a), Image.fromarray(np.ascontiguousarray(a[::-1]))]
    if fmt == "JPEG":
        frames[0].save(buf, format=fmt)
    else:  # the multi-frame formats as animations / pages: their frame-walking code is fuzzed too
        frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
    return buf.getvalue()


def mutants(rng: random.Random) -> dict[str, bytes]:
    out = {}
    for fmt, ext in FORMATS.items():
        base = _base(fmt)
        for i in range(PER_FORMAT):
            b, op = bytearray(base), ("flip", "truncate", "header")[i % 3]
            if op == "flip":
                for _ in range(rng.randint(1, 8)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
            elif op == "truncate":
                b = b[:rng.randrange(8, len(b))]
            else:
                for _ in range(rng.randint(1, 4)):
                    b[rng.randrange(min(64, len(b)))] = rng.randrange(256)
            out[f"m{len(out):03d}_{op}.{ext}"] = bytes(b)
    return out


@pytest.mark.slow  # two commands over 62 images: about 45 s of CPU
def test_fuzzed_images_through_upscale_and_evaluation(tmp_path, random_carn_m):
    src = tmp_path / "Set"
    src.mkdir()
    bad = mutants(random.Random(SEED))
    for name, raw in bad.items():
        (src / name).write_bytes(raw)
    photo().save(src / "good_a.png")
    photo(y=200).save(src / "good_b.png")
    n = len(bad) + 2
    print(f"{len(bad)} mutants (seed {SEED})")
    out = tmp_path / "up"
    r = subprocess.run([str(BIN / "srkit-upscale"), "-i", str(src), "-o", str(out), "-n", str(random_carn_m), "-s", "2",
                        "--max_pixels", str(MAX_PIXELS), "--cpu"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    written = {p.name for p in out.iterdir()} if out.exists() else set()
    assert {"good_a.png", "good_b.png"} <= written
    for name in bad:
        assert (name in written) != any(str(src / name) in e for e in errors), (name, r.stderr[-3000:])
    assert f"upscaled {len(written)} of {n} image(s)" in r.stdout and len(errors) == n - len(written)
    r = subprocess.run([str(BIN / "srkit-sample"), "--ckpt_path", str(random_carn_m), "--test_data_dir", str(src),
                        "--scale", "2", "--max_pixels", str(MAX_PIXELS), "--sample_dir", str(tmp_path / "o"),
                        "--cpu"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    summary = json.loads((run_dir(tmp_path / "o") / "summary.json").read_text())
    res = summary["results"][0]
    assert res["images"] + res["failed"] == n, res
    scored = [row.split(",")[0] for row in
              (run_dir(tmp_path / "o") / "Set" / "x2" / "metrics.csv").read_text().splitlines()[1:]]
    assert {"good_a.png", "good_b.png"} <= set(scored)
    for name in bad:
        assert (name in scored) != any(str(src / name) in e for e in summary["errors"]), name
