"""Does int8 post-training quantization of the released CARN-M measure well enough to offer?

    python scripts/int8_probe.py [--cells Set5:2 Set14:2] [--speed_scales 2 3 4] [--runs 3] [--layers]
        [--json assets/perf/int8.json] [--md]
    python scripts/int8_probe.py --from_json assets/perf/int8.json --md [--why TEXT]   # re-render the section

The rule: ``precision="int8"`` is offered only if int8 stays within ``INT8_PSNR_DB`` Y-PSNR of fp32 on every
Set5/Set14 x2/x3/x4 cell *and* runs faster than the API's defaults. Two int8 routes, one model per scale,
calibrated on the same patches:

- PyTorch: FX graph-mode PTQ (``torch.ao.quantization.quantize_fx``; PT2E now lives in torchao, which the
  project does not install) for the x86 engine: per-channel symmetric int8 weights, per-tensor uint8
  activations over their full 8-bit range (AVX512-VNNI needs no 7-bit ``reduce_range``), histogram observers,
  run eagerly. ``--torch_variants``: which layers stay float32 (``FP32_LAYERS``): ``all`` int8; ``ends``: the
  mean shifts, entry and exit convs, the image-side layers, whose 8-bit steps are as coarse as the uint8 output
  itself; ``tail``: those and the upsampling branch.
- OpenVINO + NNCF: ``nncf.quantize`` (its default preset) on the project's ONNX export
  (srkit.inference.export_onnx), compiled with OpenVINO's defaults; ``nncf_ends`` leaves the first and last
  convs float (NNCF's ignored scope).

Calibration: LR patches (MATLAB bicubic, as the benchmarks' LR) cut from the photographs of the toy training set
(srkit.data.toy.PHOTOS, shipped with scikit-image), none of them a Set5/Set14 image (tests/test_int8_probe.py).
Quality: the benchmark's own loop (srkit.inference.evaluate.evaluate_folder: rounded uint8 SR, Y-channel
PSNR/SSIM, border = scale) for fp32 and each int8 model. Speed: 1280x720 output, each side in its own process
with the same threads, taking turns (scripts/bench_inference.py's protocol): the API's defaults (fp32 on a CPU
without a faster bf16 path), OpenVINO's defaults (bf16 on a CPU with native bf16) and each int8 side.
``--layers`` adds one conv of each kind, float32 against the x86 engine's int8. ``--md`` writes the "int8"
section of docs/performance.md between its markers (scripts/perf_page.py keeps it).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "checkpoints" / "carn_m.pth"
PAGE = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- int8:begin (scripts/int8_probe.py --md) -->", "<!-- int8:end -->"

INT8_PSNR_DB = 0.05  # the largest Y-PSNR loss from fp32 on any Set5/Set14 cell that int8 may have to be offered
CALIB_PATCHES = 32  # LR patches per scale
CALIB_LR = 64  # their side in LR pixels
ALL_CELLS = [(d, s) for d in ("Set5", "Set14") for s in (2, 3, 4)]
# the layers each PyTorch variant keeps float32 (FX module names inside the scale wrapper): ``ends`` the
# image-side ones, ``tail`` those and the upsampling branch (its convs feed the exit conv through the shuffle)
FP32_LAYERS = {"all": (), "ends": ("m.sub_mean", "m.entry", "m.exit", "m.add_mean"),
               "tail": ("m.sub_mean", "m.entry", "m.exit", "m.add_mean", "m.upsample")}
NNCF_VARIANTS = ("default", "ends")  # ends: the entry and exit convs in NNCF's ignored scope
LABELS = {"torch_all": "PyTorch int8, all layers", "torch_ends": "PyTorch int8, image-side convs fp32",
          "torch_tail": "PyTorch int8, image-side convs and upsampler fp32", "nncf_default": "NNCF int8, defaults",
          "nncf_ends": "NNCF int8, entry and exit convs fp32"}


def load_released() -> tuple[torch.nn.Module, dict]:
    """The released CARN-M in eval mode, and its arch; the source tree's families are registered where the
    project is not installed (a venv made for this probe)."""
    from srkit.core import registry
    from srkit.weights.load import load_model
    if not registry.families():
        registry.import_families(ROOT)
    net, arch = load_model(str(WEIGHTS))
    return net.eval(), arch


# ---- calibration --------------------------------------------------------------------------------------------

def calibration_photos() -> dict[str, np.ndarray]:
    """The toy training set's photographs (RGB uint8), by name."""
    from skimage import data

    from srkit.data.toy import PHOTOS
    return {name: np.asarray(getattr(data, name)())[:, :, :3] for name in PHOTOS}


def calibration_patches(scale: int, count: int = CALIB_PATCHES, lr_side: int = CALIB_LR) -> list[torch.Tensor]:
    """``count`` (1,3,lr_side,lr_side) LR patches in [0, 1]: HR crops at spread offsets of each photograph (every
    other one flipped), brought down with the MATLAB-compatible bicubic the benchmarks' LR images were made with."""
    from srkit.data.benchmark import make_lr
    photos = list(calibration_photos().values())
    side = lr_side * scale
    rng = np.random.default_rng(scale)  # fixed offsets per scale: reruns calibrate on the same patches
    out = []
    for i in range(count):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = img[y:y + side, x:x + side]
        crop = np.ascontiguousarray(crop[:, ::-1] if (i // len(photos)) % 2 else crop)
        lr = make_lr(crop, scale)
        out.append(torch.from_numpy(lr).permute(2, 0, 1)[None].float().div_(255))
    return out


# ---- PyTorch int8 --------------------------------------------------------------------------------------------

class AtScale(torch.nn.Module):
    """model(x, scale) at one scale, the output clamped as images are (a one-input graph to trace)."""

    def __init__(self, model: torch.nn.Module, scale: int) -> None:
        super().__init__()
        self.m, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x, self.scale).clamp(0, 1)


def torch_int8(net: torch.nn.Module, scale: int, patches: list[torch.Tensor], variant: str) -> torch.nn.Module:
    """The released model at ``scale`` quantized by FX PTQ for the x86 engine (see the module docstring)."""
    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import HistogramObserver, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    qconfig = QConfig(activation=HistogramObserver.with_args(dtype=torch.quint8, reduce_range=False),
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    mapping = QConfigMapping().set_global(qconfig)
    for name in FP32_LAYERS[variant]:
        mapping = mapping.set_module_name(name, None)
    import warnings
    with warnings.catch_warnings():  # FX PTQ's deprecation notice (it points to torchao) on every call
        warnings.simplefilter("ignore")
        prepared = prepare_fx(AtScale(net, scale).eval(), mapping, (patches[0],))
        with torch.inference_mode():
            for p in patches:
                prepared(p)
        return convert_fx(prepared)


class TorchPredict:
    """A quantized graph as the evaluation loop calls a predictor (whole image, channels_last as the x86
    engine computes)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.precision_name = model, "int8"

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last)).float().contiguous()

    def uint8(self, x: torch.Tensor, scale: float) -> np.ndarray:
        from srkit.inference.predictor import to_uint8
        return to_uint8(self(x, scale))


# ---- OpenVINO + NNCF int8 ------------------------------------------------------------------------------------

def openvino_int8(onnx_path: Path, patches: list[torch.Tensor], out_xml: Path, variant: str = "default") -> Path:
    """``nncf.quantize`` of the export on ``patches`` (its default preset; ``variant="ends"``: the first and last
    convs, the image-side ones, left float), saved as OpenVINO IR."""
    import nncf
    import openvino as ov
    model = ov.Core().read_model(str(onnx_path))
    data = nncf.Dataset([p.numpy() for p in patches])
    ignored = None
    if variant == "ends":
        convs = [op.get_friendly_name() for op in model.get_ordered_ops()
                 if op.get_type_name() in ("Convolution", "GroupConvolution")]
        ignored = nncf.IgnoredScope(names=[convs[0], convs[-1]])
    elif variant != "default":
        raise ValueError(f"NNCF variant {variant!r}: one of {', '.join(NNCF_VARIANTS)}")
    quantized = nncf.quantize(model, data, subset_size=len(patches), ignored_scope=ignored)
    ov.save_model(quantized, str(out_xml))
    return out_xml


class OpenVINOPredict:
    """An OpenVINO model (dynamic shape) as the evaluation loop calls a predictor."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                           {"INFERENCE_NUM_THREADS": str(threads)})
        self.precision_name = f"int8 + {self.compiled.get_property('INFERENCE_PRECISION_HINT')}"

    def __call__(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return torch.from_numpy(self.compiled({0: x.numpy()})[0].copy())

    def uint8(self, x: torch.Tensor, scale: float) -> np.ndarray:
        from srkit.inference.predictor import to_uint8
        return to_uint8(self(x, scale))


# ---- quality -------------------------------------------------------------------------------------------------

def quality(cells: list[tuple[str, int]], variants: list[str], threads: int, tmp: Path) -> list[dict]:
    from srkit.inference.evaluate import evaluate_folder
    from srkit.inference.export_onnx import export
    from srkit.inference.predictor import Predictor
    net, arch = load_released()
    fp32 = Predictor(net, tile=0, precision="fp32")
    rows = []
    for s in sorted({s for _, s in cells}):
        patches = calibration_patches(s)
        sides: dict = {f"torch_{v}": TorchPredict(torch_int8(net, s, patches, v)) for v in variants}
        onnx_path = export(net, s, tmp / f"carn_m_x{s}.onnx", arch=arch)
        for v in NNCF_VARIANTS:
            xml = openvino_int8(onnx_path, patches, tmp / f"carn_m_x{s}_{v}.xml", v)
            sides[f"nncf_{v}"] = OpenVINOPredict(xml, threads)
        for d, _ in [c for c in cells if c[1] == s]:
            root = SHARED / "benchmark" / d
            ref = evaluate_folder(fp32, root, s, None, torch.device("cpu"), progress=False).summary()
            row = {"dataset": d, "scale": s, "fp32_psnr": ref["psnr"], "fp32_ssim": ref["ssim"]}
            for name, pr in sides.items():
                got = evaluate_folder(pr, root, s, None, torch.device("cpu"), progress=False)
                if got.errors:
                    raise RuntimeError(f"{name} {d} x{s}: {got.errors[0]}")
                r = got.summary()
                row[f"{name}_dpsnr"], row[f"{name}_dssim"] = r["psnr"] - ref["psnr"], r["ssim"] - ref["ssim"]
            rows.append(row)
            print(f"{d} x{s}: fp32 {ref['psnr']:.3f} dB / {ref['ssim']:.4f}  " + "  ".join(
                f"{n} {row[f'{n}_dpsnr']:+.3f} dB / {row[f'{n}_dssim']:+.4f}" for n in sides), flush=True)
    return rows


# ---- speed ---------------------------------------------------------------------------------------------------

def _api_worker(conn, scale: int, threads: int, shape: tuple) -> None:
    from bench_inference import _input, _serve

    from srkit.api import Upscaler
    torch.set_num_threads(threads)
    net, arch = load_released()
    up = Upscaler(net, arch, torch.device("cpu"))  # the API's defaults (precision="auto")
    x = _input(shape)
    _serve(conn, lambda: up(x, scale).numpy(), lambda: up.predict.precision_name)


def _torch_int8_worker(conn, scale: int, threads: int, shape: tuple, variant: str) -> None:
    from bench_inference import _input, _serve

    torch.set_num_threads(threads)
    net, _ = load_released()
    run = TorchPredict(torch_int8(net, scale, calibration_patches(scale), variant))
    x = _input(shape)
    _serve(conn, lambda: run(x, scale).numpy(), lambda: "int8")


def _openvino_worker(conn, path: str, threads: int, shape: tuple) -> None:
    """OpenVINO with its defaults (no precision hint) on a model reshaped to the input's static shape."""
    import openvino as ov
    from bench_inference import _input, _serve
    core = ov.Core()
    model = core.read_model(path)
    model.reshape({model.input(0): list(shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": str(threads)})
    request = compiled.create_infer_request()
    x = _input(shape).numpy()

    def run():
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()
    _serve(conn, run, lambda: str(compiled.get_property("INFERENCE_PRECISION_HINT")))


def speed(scales: list[int], runs: int, sides: list[str], threads: int, tmp: Path) -> list[dict]:
    """Median ms of each side at 1280x720 output, taking turns; ``sides``: the int8 ones (torch_<variant>,
    nncf_<variant>), timed with the API's defaults and OpenVINO's defaults."""
    from bench_inference import shape_of

    from srkit.inference.export_onnx import export
    net, arch = load_released()
    ctx = mp.get_context("spawn")
    rows = []
    for s in scales:
        shape = shape_of(s)
        onnx_path = export(net, s, tmp / f"speed_x{s}.onnx", arch=arch)
        targets = {"api": (_api_worker, (s, threads, shape)),
                   "openvino_default": (_openvino_worker, (str(onnx_path), threads, shape))}
        for side in sides:
            kind, variant = side.split("_", 1)
            if kind == "torch":
                targets[side] = (_torch_int8_worker, (s, threads, shape, variant))
            else:
                xml = openvino_int8(onnx_path, calibration_patches(s), tmp / f"speed_x{s}_{variant}.xml", variant)
                targets[side] = (_openvino_worker, (str(xml), threads, shape))
        procs, outs = {}, {}
        for side, (target, args) in targets.items():  # one at a time: set-up (calibration) must not overlap
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, *args), daemon=True)
            proc.start()
            procs[side] = (parent, proc)
            outs[side] = parent.recv()  # warmed up
        times: dict[str, list[float]] = {side: [] for side in procs}
        for _ in range(runs):
            for side, (conn, _) in procs.items():
                conn.send("run")
                times[side].append(conn.recv())
        info = {}
        for side, (conn, proc) in procs.items():
            conn.send("stop")
            info[side] = conn.recv()
            proc.join()
        row = {"scale": s, **{f"{k}_ms": statistics.median(v) * 1e3 for k, v in times.items()},
               **{f"{k}_precision": v for k, v in info.items()},
               **{f"{k}_diff": float(np.abs(outs[k] - outs["api"]).max()) for k in procs if k != "api"}}
        for k in procs:  # above 1: faster than the API's defaults / than OpenVINO's defaults
            row[f"{k}_vs_api"] = row["api_ms"] / row[f"{k}_ms"]
            row[f"{k}_vs_openvino_default"] = row["openvino_default_ms"] / row[f"{k}_ms"]
        rows.append(row)
        print(f"x{s}: " + "  ".join(f"{k} ({info[k]}) {row[f'{k}_ms']:.0f} ms ({row[f'{k}_vs_api']:.2f}x)"
                                    for k in procs), flush=True)
    return rows


def grouped_conv_timing(threads: int, runs: int = 5) -> list[dict]:
    """One residual-E conv of CARN-M (64 channels, 3x3, groups 4) and a 1x1 fusion-sized conv (128 -> 64) at
    640x360, float32 against the x86 engine's quantized conv, taking turns: what int8 buys per layer kind."""
    from bench_inference import time_alternating
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = "x86"
    rows = []
    for name, cin, k, g in (("3x3, groups 4, 64 -> 64", 64, 3, 4), ("3x3, dense, 64 -> 64", 64, 3, 1),
                            ("1x1, 128 -> 64", 128, 1, 1)):
        conv = torch.nn.Conv2d(cin, 64, k, padding=k // 2, groups=g).eval()
        x = torch.rand(1, cin, 360, 640).contiguous(memory_format=torch.channels_last)
        qconv = torch.ao.nn.quantized.Conv2d(cin, 64, k, padding=k // 2, groups=g)
        qconv.set_weight_bias(torch.quantize_per_channel(conv.weight.detach(), torch.full((64,), 0.01),
                                                         torch.zeros(64, dtype=torch.long), 0, torch.qint8),
                              conv.bias.detach())
        qconv.scale, qconv.zero_point = 0.05, 0
        qx = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)
        with torch.inference_mode():
            t = time_alternating([lambda: conv(x), lambda: qconv(qx)], runs, torch.device("cpu"))
        rows.append({"layer": name, "fp32_ms": t[0] * 1e3, "int8_ms": t[1] * 1e3})
        print(f"{name}: fp32 {t[0] * 1e3:.1f} ms, int8 {t[1] * 1e3:.1f} ms ({t[0] / t[1]:.2f}x)", flush=True)
    return rows


# what the eager x86 engine's ops are, by what they do in CARN-M's graph
OP_KINDS = {"quantized::conv2d_relu": "int8 convs", "quantized::conv2d": "int8 convs",
            "quantized::add_relu": "int8 residual adds", "aten::cat": "cascade concatenations (requantized)",
            "aten::clone": "pixel-shuffle copies", "aten::pixel_shuffle": "pixel-shuffle copies",
            "aten::mkldnn_convolution": "float32 convs", "aten::quantize_per_tensor": "quantize / dequantize",
            "aten::dequantize": "quantize / dequantize"}


def profile_torch(scales: list[int], variants: list[str], threads: int) -> list[dict]:
    """Where PyTorch int8's time goes at 1280x720 output: each op kind's share of the profiled CPU time."""
    torch.set_num_threads(threads)
    net, _ = load_released()
    rows = []
    for v in variants:
        for s in scales:
            run = TorchPredict(torch_int8(net, s, calibration_patches(s), v))
            x = torch.rand(1, 3, round(720 / s), round(1280 / s))
            run(x, s)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                run(x, s)
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events)
            shares: dict[str, float] = {}
            for e in events:
                kind = OP_KINDS.get(e.key, "other")
                shares[kind] = shares.get(kind, 0.0) + e.self_cpu_time_total / total
            rows.append({"variant": v, "scale": s, "ms": total / 1e3, "shares": shares})
            print(f"torch_{v} x{s}: " + ", ".join(f"{k} {100 * f:.0f}%" for k, f in sorted(
                shares.items(), key=lambda kv: -kv[1])), flush=True)
    return rows


# ---- the page section ----------------------------------------------------------------------------------------

def cpu_flags() -> str:
    """Which of the int8 and bf16 dot-product units /proc/cpuinfo lists."""
    from srkit.inference.precision import _cpu_flags
    have = _cpu_flags()
    return ", ".join(f"{f} {'yes' if f in have else 'no'}" for f in ("avx512_vnni", "avx512_bf16", "amx_int8"))


def verdict(result: dict) -> dict:
    """Per int8 side: its worst Y-PSNR change, its slowest ratio to the API's defaults, and whether each passes."""
    q, sp = result["quality"], result["speed"]
    out = {}
    for side in result["int8_sides"]:
        worst = min(r[f"{side}_dpsnr"] for r in q)
        timed = [r[f"{side}_vs_api"] for r in sp if f"{side}_vs_api" in r]
        out[side] = {"worst_dpsnr": worst, "quality_ok": worst >= -INT8_PSNR_DB and len(q) == len(ALL_CELLS),
                     "slowest_vs_api": min(timed) if timed else None,
                     "speed_ok": bool(timed) and len(timed) == 3 and min(timed) > 1}
    return out


def _precision(reported: str) -> str:
    """OpenVINO's ``<Type: 'bfloat16'>`` as ``bfloat16``; other names as they are."""
    return reported.split("'")[1] if reported.startswith("<Type: '") else reported


def _span(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2f}x" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}x"


def _unloaded_api_ms() -> dict[int, float]:
    """CARN-M's API time per scale in the runs behind this page's first table (assets/perf/peers_api_run*.json),
    the median over runs."""
    times: dict[int, list[float]] = {}
    for path in sorted((ROOT / "assets" / "perf").glob("peers_api_run*.json")):
        for row in json.loads(path.read_text())["rows"]:
            if row["model"] == "carn_m":
                times.setdefault(int(row["scale"]), []).append(row["project_ms"])
    return {s: statistics.median(v) for s, v in times.items()}


def m_load(result: dict) -> str:
    load = result["machine"].get("loadavg")
    return f"{load:.0f} on {result['machine'].get('cpus', '?')} CPUs" if load is not None else "not recorded"


def findings(result: dict) -> list[str]:
    """The measured reasons, one bullet each, from the result's own figures."""
    q, sp, v = result["quality"], result["speed"], verdict(result)
    out = []
    for side in result["int8_sides"]:
        bad = [r for r in q if r[f"{side}_dpsnr"] < -INT8_PSNR_DB]
        timed = [r for r in sp if f"{side}_vs_api" in r]
        speed = (f"; {_span([r[f'{side}_vs_api'] for r in timed])} the API's speed" if timed else "; not timed")
        cells = ", ".join(f"{r['dataset']} x{r['scale']} {r[f'{side}_dpsnr']:+.3f}" for r in bad)
        out.append(f"- {LABELS[side]}: " + (f"{len(bad)} of {len(q)} cells below -{INT8_PSNR_DB} dB ({cells})"
                                            if bad else f"every cell within {INT8_PSNR_DB} dB (worst "
                                                        f"{v[side]['worst_dpsnr']:+.3f})") + speed + ".")
    nncf = [k.removesuffix("_vs_openvino_default") for k in (sp[0] if sp else {})
            if k.startswith("nncf_") and k.endswith("_vs_openvino_default")]
    if nncf:
        ratios = [r[f"{k}_vs_openvino_default"] for r in sp for k in nncf]
        out.append(f"- int8 against bf16 in OpenVINO (this CPU: {result['machine'].get('cpu_flags', '?')}): the NNCF "
                   f"int8 models ran {_span(ratios)} "
                   "the speed of OpenVINO's bf16 defaults on the float model (above 1: int8 faster).")
    layers = {r["layer"].split(",")[0] + (", groups" if "groups" in r["layer"] else ""): r
              for r in result.get("layers", [])}
    if "3x3, groups" in layers and "3x3" in layers:
        g, d = layers["3x3, groups"], layers["3x3"]
        out.append(f"- Grouped convs in the x86 engine: CARN-M's 3x3 groups-4 conv (a quarter of the dense 3x3 conv's "
                   f"multiply-adds) ran {g['int8_ms']:.1f} ms in int8 against {d['int8_ms']:.1f} ms for the dense one: "
                   f"{d['int8_ms'] / 4 / g['int8_ms']:.0%} of the dense conv's int8 rate per multiply-add (PyTorch's "
                   f"float32 conv: {d['fp32_ms'] / 4 / g['fp32_ms']:.0%}); against float32 the grouped conv gains "
                   f"{g['fp32_ms'] / g['int8_ms']:.1f}x, the dense one {d['fp32_ms'] / d['int8_ms']:.1f}x.")
    unloaded = _unloaded_api_ms()
    if unloaded and sp:
        ratios = [r["api_ms"] / unloaded[r["scale"]] for r in sp if r["scale"] in unloaded]
        out.append(f"- The machine was shared while this ran (load average {m_load(result)}): the API's times here are "
                   f"{_span(ratios)} its times in the first table of this page, so the ratios of sides taking turns "
                   "are the measurement, not the milliseconds.")
    if result.get("profile"):
        worst = max(result["profile"], key=lambda r: 1 - r["shares"].get("int8 convs", 0))
        rest = {k: f for k, f in worst["shares"].items() if k != "int8 convs"}
        out.append(f"- PyTorch int8 runs eagerly, op by op: at x{worst['scale']} ({LABELS['torch_' + worst['variant']]}) "
                   f"the int8 convs are {100 * worst['shares'].get('int8 convs', 0):.0f}% of the time, the rest "
                   + ", ".join(f"{k} {100 * f:.0f}%" for k, f in sorted(rest.items(), key=lambda kv: -kv[1]) if f >= 0.02)
                   + "; the float32 API runs the whole cascade in fused streamed kernels (docs/fast-path.md).")
    return out


def section(result: dict) -> str:
    q, sp, m = result["quality"], result["speed"], result["machine"]
    sides = result["int8_sides"]
    v = verdict(result)
    lines = [BEGIN, "## int8", "",
             "`python scripts/int8_probe.py --json assets/perf/int8.json --md`: post-training int8 quantization of "
             "the released CARN-M (`../shared/checkpoints/carn_m.pth`), one model per scale, calibrated on "
             f"{result['calibration']}. PyTorch: FX graph-mode PTQ for the x86 engine (per-channel symmetric int8 "
             "weights, full-range uint8 activations, histogram observers; PT2E has moved to torchao, which the "
             "project does not install), run eagerly on channels_last tensors. OpenVINO: `nncf.quantize` (its "
             "default preset) on the project's ONNX export. "
             f"The bar to offer `precision=\"int8\"`: within {INT8_PSNR_DB} dB Y-PSNR of fp32 on every Set5/Set14 "
             "x2/x3/x4 cell, and faster than the API's defaults at every scale.", "",
             "### Score change from fp32 (Y-PSNR dB / SSIM), the benchmark's own loop", "",
             "| dataset | scale | fp32 PSNR / SSIM | " + " | ".join(LABELS[s] for s in sides) + " |",
             "|---|---|---|" + "---|" * len(sides)]
    for r in q:
        lines.append(f"| {r['dataset']} | x{r['scale']} | {r['fp32_psnr']:.3f} / {r['fp32_ssim']:.4f} | " + " | ".join(
            f"{r[f'{s}_dpsnr']:+.3f} / {r[f'{s}_dssim']:+.4f}" for s in sides) + " |")
    lines += ["", "Worst cell: " + "; ".join(
        f"{LABELS[s]} {v[s]['worst_dpsnr']:+.3f} dB ({'within' if v[s]['quality_ok'] else 'outside'} "
        f"{INT8_PSNR_DB} dB)" for s in sides) + ".", ""]
    if sp:
        names = {"api": "API defaults", "openvino_default": "OpenVINO defaults", **LABELS}
        lines += ["### Speed, 1280x720 output", "",
                  f"Each side in its own process, {m['threads']} threads each, taking turns; median of "
                  f"{result['runs']}. A ratio is the other side's time over this side's (above 1: this side is "
                  "faster).", "",
                  "| scale | side | precision it reports | ms | vs API defaults | vs OpenVINO defaults |",
                  "|---|---|---|---|---|---|"]
        for r in sp:
            for k in [k.removesuffix("_ms") for k in r if k.endswith("_ms")]:
                lines.append(f"| x{r['scale']} | {names[k]} | {_precision(r[f'{k}_precision'])} | {r[f'{k}_ms']:.0f} | "
                             f"{r[f'{k}_vs_api']:.2f}x | {r[f'{k}_vs_openvino_default']:.2f}x |")
        lines += ["", "OpenVINO runs the layers NNCF left float in the precision it reports.", ""]
    if result.get("layers"):
        lines += ["### One conv, float32 against the x86 engine's int8 (640x360, channels_last, taking turns)", "",
                  "| layer | fp32 ms | int8 ms | int8 speed-up |", "|---|---|---|---|"]
        lines += [f"| {r['layer']} | {r['fp32_ms']:.1f} | {r['int8_ms']:.1f} | {r['fp32_ms'] / r['int8_ms']:.2f}x |"
                  for r in result["layers"]]
        lines.append("")
    if result.get("profile"):
        kinds = sorted({k for r in result["profile"] for k in r["shares"]},
                       key=lambda k: -max(r["shares"].get(k, 0) for r in result["profile"]))
        lines += ["### Where PyTorch int8's time goes (torch.profiler, 1280x720 output, share of CPU time)", "",
                  "| variant | scale | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
        lines += [f"| {LABELS['torch_' + r['variant']]} | x{r['scale']} | " + " | ".join(
            f"{100 * r['shares'].get(k, 0):.0f}%" for k in kinds) + " |" for r in result["profile"]]
        lines.append("")
    passing = [s for s in sides if v[s]["quality_ok"] and v[s]["speed_ok"]]
    lines += ["### Verdict", "", ("Offered: yes (" + ", ".join(LABELS[s] for s in passing) + ")." if passing else
                                  "Offered: no; no int8 model passes both halves of the bar. What stands in the way:")
              + (" " + result["why"] if result.get("why") else ""), "", *findings(result), "",
              f"Machine: {m.get('date', '')[:10]}, {m.get('cpu')}, ISA {m.get('isa')}, {m.get('threads')} threads, "
              f"{m.get('cpu_flags', '')}, torch {m.get('torch')}, OpenVINO {m.get('openvino')}, NNCF {m.get('nncf')}, "
              "quantized engine x86.",
              END]
    return "\n".join(lines) + "\n"


def write_section(text: str, page: Path = PAGE) -> None:
    """Put ``text`` between the markers of ``page`` (appended the first time); the rest is left as it is."""
    old = page.read_text()
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    page.write_text(new if new.endswith("\n") else new + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=[f"{d}:{s}" for d, s in ALL_CELLS], help="dataset:scale")
    p.add_argument("--torch_variants", nargs="+", default=list(FP32_LAYERS), choices=list(FP32_LAYERS))
    p.add_argument("--speed_scales", type=int, nargs="*", default=[2, 3, 4])
    p.add_argument("--speed_sides", nargs="*", default=["torch_all", "torch_ends", "torch_tail", "nncf_default",
                                                        "nncf_ends"],
                   help="the int8 sides timed with the API's and OpenVINO's defaults")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--layers", action="store_true", help="also time one conv of each kind, fp32 against int8")
    p.add_argument("--profile", action="store_true", help="also profile PyTorch int8 by op kind (adds to --from_json)")
    p.add_argument("--why", default="", help="the measured reasons, for the verdict line of the section")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--from_json", type=Path, default=None, help="render the section from an earlier --json")
    p.add_argument("--md", action="store_true", help="write the int8 section of docs/performance.md")
    args = p.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        if args.why:
            result["why"] = args.why
    else:
        from bench_inference import machine
        threads = torch.get_num_threads()
        cells = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cells]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            q = quality(cells, args.torch_variants, threads, Path(tmp))
            if args.json:  # the slow half kept should the timing be cut short
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({"quality": q}, indent=2))
            load = os.getloadavg()[0]  # what else ran: the timing's sides take turns, but share the machine
            sp = speed(args.speed_scales, args.runs, args.speed_sides, threads, Path(tmp))
            layers = grouped_conv_timing(threads) if args.layers else []
        import nncf
        result = {"calibration": f"{CALIB_PATCHES} LR patches of {CALIB_LR}x{CALIB_LR} per scale (MATLAB bicubic) "
                                 "cut from the toy training set's photographs (srkit.data.toy.PHOTOS: "
                                 "scikit-image's astronaut, coffee, chelsea, rocket), none a test image",
                  "int8_sides": [f"torch_{v}" for v in args.torch_variants] + [f"nncf_{v}" for v in NNCF_VARIANTS],
                  "runs": args.runs, "quality": q, "speed": sp,
                  "layers": layers, "why": args.why, "seconds": time.perf_counter() - t0,
                  "machine": {**machine(), "nncf": nncf.__version__, "cpu_flags": cpu_flags(),
                              "loadavg": load, "cpus": os.cpu_count()}}
        result["verdict"] = verdict(result)
    if args.profile:
        result["profile"] = profile_torch([2, 4], ["all", "ends"], torch.get_num_threads())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    print(json.dumps(verdict(result), indent=2))
    if args.md:
        write_section(section(result))
        print(f"wrote the int8 section of {PAGE}")


if __name__ == "__main__":
    main()
