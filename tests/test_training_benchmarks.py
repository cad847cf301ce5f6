"""The training benchmarks measure what they say: scripts/bench_training.py's PSS is the loader's (a fresh
process, every worker having mapped all the images: one copy counted), its training rate runs on the real
loader's hand-over, and the figures in docs/training.md are the scripts' renderings of their JSON (no figure
typed by hand). Nothing here is timed."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from conftest import ROOT
from srkit.core.text import block, replace_block
from train_fixtures import packed_div2k

DOCS = ROOT / "docs" / "training.md"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _script("bench_training")


@pytest.fixture(scope="module")
def toy_h5(tmp_path_factory):
    return packed_div2k(tmp_path_factory.mktemp("toy"), size=96, count=16)


@pytest.mark.slow  # 1 GiB held, a process and 4 workers
def test_pss_is_the_loaders_in_a_fresh_process_and_counts_one_copy(bench, toy_h5):
    """Memory this process holds (here 1 GiB, as a benchmark's earlier phases leave behind, and forked workers
    would share) is not in the figures: measured here, the five processes' PSS would add up to it plus their
    own ~370 MiB; the images' shared memory is counted once over all five, and each worker has its part of
    every page."""
    held = np.ones(1 << 30, dtype=np.uint8)  # written, so resident
    raw = bench.loader_pss(toy_h5, patch=16, workers=4)
    s = bench.pss_summary(raw)
    assert held.sum() == held.size
    assert len(s["workers"]) == 4 and s["total"] - s["images"] < 768, s
    images = raw["image_bytes"] / 1024
    assert 0.95 * images <= sum(q["Pss_Shmem"] for q in [raw["main"], *raw["workers"]]) <= images + 2048, raw
    assert all(w["Pss_Shmem"] >= 0.9 * images / 5 for w in raw["workers"]), raw  # every page, split five ways


def test_the_shared_memory_loader_is_timed_whatever_ram_is_available(bench, toy_h5, monkeypatch):
    """On a busy machine the trainer's default budget (half the available RAM) reads from the h5 file instead;
    the benchmark's in-RAM figures must still be the shared-memory loader's."""
    import srkit.data.shared_images as shared
    monkeypatch.setattr(shared, "available_ram", lambda: 0)
    assert bench.in_ram(toy_h5, (2,), 16, 4).memory is not None


def test_train_rate_runs_on_the_real_loader_and_on_held_windows(bench, toy_h5):
    assert bench.train_rate(toy_h5, 1, True, workers=1, patch=16, batch=4) > 0
    assert bench.train_rate(toy_h5, 1, False, patch=16, batch=4) > 0


@pytest.mark.parametrize("name,json_name", [("bench_training", "training_loader.json"),
                                            ("measure_fast_options", "fast_options.json")])
def test_docs_figures_are_the_scripts_renderings(name, json_name):
    measured = json.loads((ROOT / "assets" / "perf" / json_name).read_text())
    module = _script(name)
    assert block(DOCS.read_text(), module.BLOCK) == module.render(measured).strip("\n")


def test_replace_block_keeps_the_rest_of_the_page():
    page = "# T\n\ntext\n<!-- x: begin -->\nold\n<!-- x: end -->\nafter\n"
    new = replace_block(page, "x", "| a |\n")
    assert new == "# T\n\ntext\n<!-- x: begin -->\n| a |\n<!-- x: end -->\nafter\n"
    assert block(new, "x") == "| a |"
    with pytest.raises(ValueError, match="no <!-- y: begin -->"):
        replace_block(page, "y", "z")
