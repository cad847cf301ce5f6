"""Where researchers reach for models: torch.hub entries, safetensors files (loaded without any pickle), the
weights folder (checkout, $SRKIT_WEIGHTS_DIR, torch hub cache), mirrors (a URL or a folder), licenses."""
from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch

from conftest import ROOT, load_ref, run_dir, serve_files, synthetic_weights
from srkit.weights import zoo
from srkit.weights.convert import convert
from srkit.weights.load import load_model
from srkit.core.tolerances import AUTHORS_IO_ATOL

PAYLOAD = bytes(range(256)) * 1000


def test_hub_loads_the_released_carn_m_through_a_mirror_folder(tmp_path, monkeypatch, carn_m_released):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(carn_m_released, mirror / "carn_m.pth")
    monkeypatch.setenv(zoo.MIRROR_ENV, str(mirror))
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path / "cache"))
    model = torch.hub.load(str(ROOT), "carn_m", source="local", pretrained=True)
    assert (tmp_path / "cache" / "carn_m.pth").is_file()  # verified copy in the cache
    ref = load_ref("carn_m_released_io.pt")
    with torch.no_grad():
        for key, case in ref["outputs"].items():
            assert (model(case["input"], int(key[1:])) - case["output"]).abs().max().item() <= AUTHORS_IO_ATOL


def test_hub_entries_build_and_say_paper_and_license():
    import importlib.util
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    for entry, needles in (("carn", ("ECCV 2018", "MIT")), ("carn_m", ("ECCV 2018", "MIT")),
                           ("overnet", ("WACV 2021", "NON-COMMERCIAL"))):
        doc = getattr(hub, entry).__doc__  # what torch.hub.help() returns
        assert all(n.lower() in doc.lower() for n in needles), entry
    net = torch.hub.load(str(ROOT), "overnet", source="local", scale=3)
    assert net.upscale == 4 and net(torch.rand(1, 3, 8, 8), 2.5).shape == (1, 3, 20, 20)


def test_safetensors_reproduce_the_set5_row_without_any_pickle(tmp_path, monkeypatch, carn_m_released,
                                                              benchmark_dir):
    from carn import sample
    st = tmp_path / "carn_m.safetensors"
    arch = convert(str(carn_m_released), st)
    assert arch["family"] == "carn" and arch["model"] == "carn_m" and arch["group"] == 4
    scores = {}
    for name, ckpt in (("pth", carn_m_released), ("safetensors", st)):
        if name == "safetensors":  # from here on, any unpickling is an error
            def refuse(*a, **k):
                raise AssertionError("a .safetensors load must not unpickle")
            monkeypatch.setattr(torch, "load", refuse)
            monkeypatch.setattr(pickle, "loads", refuse)
            monkeypatch.setattr(pickle, "load", refuse)
        out = tmp_path / name
        assert sample.main(["--ckpt_path", str(ckpt), "--test_data_dir", str(benchmark_dir / "Set5"), "--scale",
                            "4", "--sample_dir", str(out), "--no_save"]) == 0
        scores[name] = json.loads((run_dir(out) / "summary.json").read_text())["results"][0]
    assert scores["safetensors"]["psnr"] == scores["pth"]["psnr"] and scores["pth"]["ssim"] == scores["safetensors"]["ssim"]
    net, loaded = load_model(str(st))
    assert loaded == arch


def test_a_corrupt_safetensors_file_is_one_clear_error(tmp_path):
    from srkit.core.checkpoint import CheckpointError
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(str(bad))


def test_weights_folder_checkout_env_and_hub_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(zoo.WEIGHTS_ENV, raising=False)
    assert zoo.weights_dir() == ROOT / "checkpoint"  # running from the repository checkout
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path / "w"))
    assert zoo.weights_dir() == tmp_path / "w"
    monkeypatch.delenv(zoo.WEIGHTS_ENV)
    monkeypatch.setattr(zoo, "ROOT", tmp_path / "site-packages")  # installed elsewhere: the torch hub cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert zoo.weights_dir() == tmp_path / "torch" / "hub" / "checkpoints"


def test_a_mirror_url_serves_the_download_and_the_license_is_said(tmp_path, monkeypatch, capsys):
    synthetic_weights(monkeypatch, "overnet_x4", PAYLOAD, "https://example.invalid/OverNet_test_x4.pth.tar")
    paths: list = []
    with serve_files({"weights/OverNet_test_x4.pth.tar": PAYLOAD}, paths) as url:
        monkeypatch.setenv(zoo.MIRROR_ENV, f"{url}/weights")
        path = zoo.download("overnet_x4", tmp_path, progress=True)
    assert path.read_bytes() == PAYLOAD and paths == ["weights/OverNet_test_x4.pth.tar"]
    assert "license: non-commercial research use only" in capsys.readouterr().err


def test_a_read_only_cache_gets_a_clear_message(monkeypatch):
    ro = "/sys/srkit_weights_cache"  # sysfs refuses new folders, even to root
    synthetic_weights(monkeypatch, "carn_m", PAYLOAD, "https://example.invalid/carn_m.pth")
    monkeypatch.setenv(zoo.WEIGHTS_ENV, ro)
    with pytest.raises(zoo.DownloadError, match=f"cannot write to {ro} .*set {zoo.WEIGHTS_ENV} to a writable"):
        zoo.download("carn_m", progress=False)
