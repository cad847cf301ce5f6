"""Benchmarks in one command, against a real HTTP server on 127.0.0.1 serving a miniature SelfExSR release
made here (synthetic PNGs with their real git blob SHA-1s): success, resume, a tampered file refused and
named, the offline message, Urban100 x2/x3 built from the full-resolution x4 HR. Then the main job in one
command: the released CARN-M and Set5 fetched from a mirror folder, and the table printed."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from srkit.data import download as bd
from srkit.weights import zoo
from srkit.data.benchmark import find_pairs, load_pair
from srkit.data.imresize import imresize
from srkit.core.tolerances import PSNR_REPRO_DB
from conftest import run_dir, serve_files


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _mini_release() -> dict[str, bytes]:
    """Set5 (2 images at x2/x3/x4) and Urban100 (2 images, image_SRF_2 as the trap and image_SRF_4)."""
    rng = np.random.default_rng(0)
    files = {}
    for set_name, scales in (("Set5", (2, 3, 4)), ("Urban100", (2, 4))):
        for i in (1, 2):
            full = rng.integers(0, 256, (48, 60, 3), dtype=np.uint8)
            for s in scales:
                hr = full[: 48 // 12 * 12, :60] if s != 2 or set_name != "Urban100" else full[::2, ::2]
                files[f"data/{set_name}/image_SRF_{s}/img_00{i}_SRF_{s}_HR.png"] = _png(hr)
                files[f"data/{set_name}/image_SRF_{s}/img_00{i}_SRF_{s}_LR.png"] = _png(imresize(hr, 1 / s))
    return files


@dataclasses.dataclass
class _Release:
    files: dict[str, bytes]  # what the release holds (the hashes in its listing)
    served: dict[str, bytes]  # what the server sends: a test may tamper with it
    requests: list[str]


@pytest.fixture
def release(monkeypatch):
    files = _mini_release()
    rel = _Release(files, dict(files), [])
    with serve_files(rel.served, rel.requests) as url:
        meta = {"raw_url_prefix": f"{url}/", "files": {p: [len(d), _blob(d)] for p, d in files.items()}}
        monkeypatch.setattr(bd, "release", lambda: meta)
        monkeypatch.delenv(zoo.MIRROR_ENV, raising=False)
        yield rel


def test_fetch_lays_out_verified_pairs_and_does_not_refetch(release, tmp_path):
    folder = bd.fetch_set("Set5", tmp_path, progress=False)
    for s in (2, 3, 4):
        pairs, layout = find_pairs(folder, s)
        assert layout == "a" and len(pairs) == 2
        assert (folder / f"x{s}" / f"img_001_SRF_{s}_HR.png").read_bytes() == \
            release.files[f"data/Set5/image_SRF_{s}/img_001_SRF_{s}_HR.png"]
    n = len(release.requests)
    bd.fetch_set("Set5", tmp_path, progress=False)
    assert len(release.requests) == n  # every file already there and intact


def test_a_tampered_file_is_refused_and_named_and_the_rest_resumes(release, tmp_path):
    bad = "data/Set5/image_SRF_3/img_002_SRF_3_LR.png"
    data = release.files[bad]
    release.served[bad] = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(zoo.DownloadError, match="1 of 12 files failed.*img_002_SRF_3_LR.png.*git_blob_sha1"):
        bd.fetch_set("Set5", tmp_path, progress=False)
    assert not (tmp_path / "Set5" / "x3" / "img_002_SRF_3_LR.png").exists()
    assert not list(tmp_path.rglob("*.part"))
    release.served[bad] = release.files[bad]
    release.requests.clear()
    bd.fetch_set("Set5", tmp_path, progress=False)  # resume: only the missing file is fetched
    assert release.requests == [bad]


def test_offline_says_what_to_put_where(release, tmp_path, monkeypatch):
    offline = dict(bd.release(), raw_url_prefix="http://127.0.0.1:9/")  # nothing listens on port 9
    monkeypatch.setattr(bd, "release", lambda: offline)
    with pytest.raises(zoo.DownloadError, match=r"put the release's data/Set5/image_SRF_<s>/ files into "
                                                rf"{tmp_path / 'Set5'}/x<s>/"):
        bd.fetch_set("Set5", tmp_path, timeout=2, progress=False)
    assert not (tmp_path / "Set5").exists()  # no empty x<s>/ folders left: the next run fetches again


def test_urban100_is_built_from_the_full_resolution_x4_hr(release, tmp_path):
    folder = bd.fetch_set("Urban100", tmp_path, progress=False)
    assert not any("image_SRF_2" in r for r in release.requests)  # the downscaled x2 HR is never used
    x4_hr = np.asarray(Image.open(folder / "x4" / "img_001_SRF_4_HR.png"))
    for s in (2, 3):
        pairs, _ = find_pairs(folder, s)
        assert len(pairs) == 2
        hr, lr = load_pair(pairs[0], s)
        h, w = x4_hr.shape[0] // s * s, x4_hr.shape[1] // s * s
        assert np.array_equal(hr, x4_hr[:h, :w])
        assert np.array_equal(lr, imresize(hr, 1 / s))


def test_the_main_job_in_one_command_from_a_mirror(tmp_path, monkeypatch, capsys, carn_m_released, benchmark_dir):
    """`carn/sample.py --ckpt_path carn_m` with no weights and no Set5: both come from $SRKIT_MIRROR (here a
    folder laid out as the releases), verified against the project's hashes, and the table is printed."""
    from carn import sample
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(carn_m_released, mirror / "carn_m.pth")
    for s in (2, 3, 4):
        dst = mirror / "data" / "Set5" / f"image_SRF_{s}"
        shutil.copytree(benchmark_dir / "Set5" / f"x{s}", dst)
    monkeypatch.setenv(zoo.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path / "weights"))
    data = tmp_path / "datasets" / "benchmark" / "Set5"
    rc = sample.main(["--ckpt_path", "carn_m", "--test_data_dir", str(data), "--sample_dir", str(tmp_path / "s"),
                      "--no_save"])
    assert rc == 0
    out, err = capsys.readouterr()
    assert "carn_m: fetching carn_m.pth" in err and "license: MIT" in err and "fetching Set5" in err
    summary = json.loads((run_dir(tmp_path / "s") / "summary.json").read_text())["results"]
    x4 = next(r for r in summary if r["scale"] == 4)
    assert abs(x4["psnr"] - 31.865) <= PSNR_REPRO_DB and "Set5" in out
