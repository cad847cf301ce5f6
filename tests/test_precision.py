"""The precision choice (srkit.inference.precision): what ``auto`` gives where, what runs, what is recorded, and
what bf16 costs in quality."""
from __future__ import annotations

import json

import pytest
import torch

from srkit.core.tolerances import BF16_PSNR_DB
from srkit.inference import precision
from srkit.inference.precision import native_bf16, resolve

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU with AVX512-BF16 on which the bf16 path is listed as the faster one."""
    monkeypatch.delenv("SRKIT_CPU_KERNELS", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    monkeypatch.setattr(precision, "BF16_FASTER_ON", ("avx512_bf16",))


def test_auto_is_bf16_only_where_the_cpu_computes_it_natively_and_it_measured_faster(bf16_cpu, monkeypatch):
    assert native_bf16() == "avx512_bf16" and resolve("auto", CPU) == torch.bfloat16
    monkeypatch.setattr(precision, "BF16_FASTER_ON", ())  # native, but not measured faster: fp32
    assert resolve("auto", CPU) is None


@pytest.mark.parametrize("family, want", [("AuthenticAMD:26", torch.bfloat16),  # Zen 5: measured faster
                                           ("AuthenticAMD:25", None),             # Zen 4: not measured
                                           ("GenuineIntel:6", None)])             # a Xeon's AVX512-BF16 alone
def test_auto_on_avx512_bf16_alone_follows_the_cpu_family_it_measured_faster_on(bf16_cpu, monkeypatch, family, want):
    monkeypatch.setattr(precision, "BF16_FASTER_ON", ("amx_bf16", "avx512_bf16@AuthenticAMD:26"))
    monkeypatch.setattr(precision, "_cpu_family", lambda: family)
    assert resolve("auto", CPU) == want
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))
    assert resolve("auto", CPU) == torch.bfloat16  # AMX-BF16: faster on any family


def test_the_cpu_family_is_read_from_proc_cpuinfo():
    fam = precision._cpu_family()
    assert fam == "" or (fam.count(":") == 1 and fam.split(":")[1].isdigit())


@pytest.mark.parametrize("build", ["avx2", "avx512"])
def test_auto_is_fp32_on_a_cpu_without_native_bf16_forced_by_the_fp32_kernel_builds(bf16_cpu, monkeypatch, build):
    """SRKIT_CPU_KERNELS=avx2|avx512 forces a float32 build of the streamed kernels, standing for a CPU of that
    class (AVX2, or AVX-512F without BF16): no native bf16, so auto is fp32 even where bf16 is listed faster."""
    monkeypatch.setenv("SRKIT_CPU_KERNELS", build)
    assert native_bf16() == "" and resolve("auto", CPU) is None


def test_auto_is_fp32_where_the_flags_say_no_bf16(bf16_cpu, monkeypatch):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx512f", "avx2"}))
    assert native_bf16() == "" and resolve("auto", CPU) is None


def test_explicit_precisions_and_refusals():
    assert resolve("auto", CUDA) == torch.float16 and resolve("auto", CUDA, fast=False) is None
    assert resolve("fp32", CPU) is None and resolve("bf16", CPU) == torch.bfloat16 and resolve("fp16", CUDA) == torch.float16
    with pytest.raises(ValueError, match="bf16 runs on the fast path; drop --plain"):
        resolve("bf16", CPU, fast=False)
    with pytest.raises(ValueError, match="one of auto, fp32, bf16, fp16"):
        resolve("int4", CPU)


def test_the_api_default_is_auto_and_half_is_an_alias(random_carn_m):
    from srkit.api import load
    sr = load(str(random_carn_m), device="cpu")
    assert sr.predict.precision == "auto" and sr.predict.precision_name == {None: "fp32", torch.bfloat16: "bf16"}[
        resolve("auto", CPU)]
    half = load(str(random_carn_m), device="cpu", half=True)
    assert half.predict.precision_name == "bf16" and half.predict.dtype == torch.bfloat16
    x = torch.rand(1, 3, 24, 20)
    a, b = load(str(random_carn_m), device="cpu", precision="fp32")(x, 2), half(x, 2)
    assert a.dtype == b.dtype == torch.float32 and 0 < (a - b).abs().max() < 0.02


def test_the_upscale_command_says_what_ran(tmp_path, random_carn_m, capsys):
    from PIL import Image
    from srkit.cli import upscale
    Image.new("RGB", (20, 16), (120, 40, 200)).save(tmp_path / "a.png")
    for flags, name in ((["--fp32"], "fp32"), (["--precision", "bf16"], "bf16")):
        out = tmp_path / name
        assert upscale.main(["-i", str(tmp_path / "a.png"), "-o", str(out), "-n", str(random_carn_m), "-s", "2",
                             *flags]) == 0
        assert f"x2 into {out} ({name})" in capsys.readouterr().out and (out / "a.png").is_file()


def test_scores_stay_fp32_unless_asked_and_summary_json_records_the_precision(tmp_path, random_carn_m, benchmark_dir):
    from srkit.cli import sample
    for flags, want in (([], "fp32"), (["--precision", "bf16"], "bf16")):
        out = tmp_path / want
        assert sample.main(["--ckpt_path", str(random_carn_m), "--test_data_dir", str(benchmark_dir / "Set5"),
                            "--scale", "4", "--no_save", "--sample_dir", str(out), *flags]) == 0
        summary = json.loads(next(out.glob("*/summary.json")).read_text())
        assert summary["runs"][-1]["precision"] == want


@pytest.mark.slow
def test_released_carn_m_in_bf16_is_within_the_tolerance_of_fp32_on_every_cell(carn_m_released, benchmark_dir):
    """Every Set5/Set14 x2/x3/x4 cell, scored as sample.py scores (scripts/precision_quality.py writes the table)."""
    from srkit.inference.evaluate import evaluate_folder
    from srkit.inference.predictor import Predictor
    from srkit.weights.load import load_model
    net, _ = load_model(str(carn_m_released))
    fp32, bf16 = Predictor(net, tile=0), Predictor(net, tile=0, precision="bf16")
    assert fp32.precision_name == "fp32" and bf16.precision_name == "bf16"
    for name in ("Set5", "Set14"):
        for s in (2, 3, 4):
            a, b = (evaluate_folder(p, benchmark_dir / name, s, None, CPU, progress=False).summary()
                    for p in (fp32, bf16))
            assert a["images"] == b["images"] > 0
            assert abs(a["psnr"] - b["psnr"]) <= BF16_PSNR_DB, (name, s, a["psnr"], b["psnr"])
            assert a["psnr"] != b["psnr"]  # bf16 did run
