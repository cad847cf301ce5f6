"""srkit-upscale with the conventions people type from habit (-i, -o, -n, -s, --suffix, --ext), and the report
and export commands, run as users run them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from conftest import ROOT, run_dir
from srkit.cli import upscale

BIN = Path(sys.executable).parent


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    photo = np.asarray(data.astronaut())
    (root / "holiday" / "day2").mkdir(parents=True)
    files = {"a.png": (30, 24), "holiday/b.jpg": (28, 20), "holiday/day2/c.png": (22, 26)}
    for i, (rel, (w, h)) in enumerate(files.items()):
        Image.fromarray(np.ascontiguousarray(photo[40 * i:40 * i + h, 60:60 + w])).save(root / rel)
    return files


def _written(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): Image.open(p).size for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_nested_folder_at_one_scale_writes_exactly_its_tree(tmp_path, random_carn_m, capsys):
    src = tmp_path / "in"
    files = _tree(src)
    out = tmp_path / "out"
    assert subprocess.run([str(BIN / "srkit-upscale"), "-i", str(src), "-o", str(out), "-n", str(random_carn_m),
                           "-s", "2", "--cpu"], capture_output=True, text=True).returncode == 0
    assert _written(out) == {rel: (w * 2, h * 2) for rel, (w, h) in files.items()}  # nothing else, no nesting
    assert upscale.main(["-i", str(src), "-o", str(tmp_path / "o2"), "-n", str(random_carn_m), "--cpu"]) == 0
    assert "upscaled 3 of 3 image(s) x4 into" in capsys.readouterr().out  # one scale: the model's own (x4)
    assert _written(tmp_path / "o2") == {rel: (w * 4, h * 4) for rel, (w, h) in files.items()}


def test_suffix_ext_and_outscale(tmp_path, random_carn_m):
    src = tmp_path / "in"
    files = _tree(src)
    out = tmp_path / "out"
    assert upscale.main(["-i", str(src), "-o", str(out), "-n", str(random_carn_m), "--outscale", "1.5",
                         "--suffix", "_up", "--ext", "webp", "--cpu"]) == 0
    want = {str(Path(rel).with_name(Path(rel).stem + "_up.webp")): (int(w * 1.5 + 0.5), int(h * 1.5 + 0.5))
            for rel, (w, h) in files.items()}
    assert _written(out) == want
    assert all(Image.open(out / rel).format == "WEBP" for rel in want)
    assert upscale.main(["-i", str(src / "a.png"), "-o", str(out), "-n", str(random_carn_m), "-s", "3", "--ext",
                         "jpg", "--cpu"]) == 0
    assert Image.open(out / "a.jpg").size == (90, 72) and Image.open(out / "a.jpg").format == "JPEG"


def test_a_name_or_a_path_and_the_refusals(tmp_path, random_carn_m, capsys):
    src = tmp_path / "in"
    _tree(src)
    with pytest.raises(SystemExit):
        upscale.main(["-i", str(src), "-o", str(tmp_path / "o"), "-n", str(random_carn_m), "-s", "2.0000001"])
    assert "2.0000001 is within rounding of 2" in capsys.readouterr().err
    assert upscale.main(["-i", str(src), "-o", str(tmp_path / "o"), "-n", "no_such_model", "--cpu"]) == 2
    assert "no_such_model: no such checkpoint file" in capsys.readouterr().err


@pytest.mark.slow
def test_report_and_export_commands(tmp_path, random_carn_m):
    d = tmp_path / "Set"
    d.mkdir()
    Image.fromarray(np.asarray(data.coffee())[50:110, 60:140]).save(d / "x.png")
    from carn import sample
    assert sample.main(["--ckpt_path", str(random_carn_m), "--test_data_dir", str(d), "--scale", "2",
                        "--sample_dir", str(tmp_path / "s"), "--cpu"]) == 0
    folder = run_dir(tmp_path / "s")
    for cmd in ([str(BIN / "srkit-report"), str(folder)], [sys.executable, "-m", "srkit.report", str(folder)]):
        (folder / "report.html").unlink(missing_ok=True)
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0 and (folder / "report.html").is_file(), r.stderr[-1000:]
    r = subprocess.run([str(BIN / "srkit-report"), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "no summary.json here" in r.stderr and "Traceback" not in r.stderr
    onnx_path = tmp_path / "m.onnx"
    r = subprocess.run([str(BIN / "srkit-export"), "--ckpt_path", str(random_carn_m), "--scale", "2", "--out",
                        str(onnx_path)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-1500:]
    import onnx
    model = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["family"] == "carn" and meta["scale"] == "2" and '"model": "carn_m"' in meta["arch"]
    assert "clamped to [0, 1]" in meta["value_range"] and meta["license"] and meta["sha256"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True]  # dynamic batch, height, width
