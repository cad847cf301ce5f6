"""One command for a GPU machine: the CUDA tests and one markdown report of the GPU path's numbers.

    python scripts/device_check.py --stage          # here, beside ../shared: copy what the check reads into
                                                    # device_data/ (git-ignored; name it in the device's carry)
    python scripts/device_check.py --out report.md  # on the GPU machine (about 5 minutes on one H100)
    python scripts/device_check.py --cpu            # the same script at toy sizes on the CPU (CI runs it)

Sections, each a markdown table:
1. tests: the device-parametrised tests (tests/conftest.py ``device``) on this device;
2. accuracy: the released CARN-M on Set5/Set14 x2/x3/x4, PSNR on the CPU (float32), on the device in float32
   (TF32 off) and in half precision (fp16 on CUDA, bf16 on the CPU); float32 must equal the CPU within
   PSNR_REPRO_DB, and the largest output difference from the CPU is printed against CUDA_FP32_ATOL;
3. speed: 1280x720 output (toy: 64x48) for CARN-M, CARN and OverNet at x2/x3/x4 (random weights of the
   authors' layouts): the plain eager float32 forward (the authors' math and execution) vs the fast path in
   float32 and half precision, speed-ups in the same run, peak memory;
4. training: steps/s at the authors' batch 64 and patch 64 (toy: 4 and 16) with ``--amp`` off / fp16 / bf16,
   timed from the run's own TensorBoard log (wall time of each step), after warm-up steps;
5. distributed: a one-process torchrun run (NCCL on CUDA, gloo on the CPU) with per-step digests.

Set-up on the machine, from what travels: the project installed without dependencies, adamp as a wheel:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
Exit status 1 if a check fails (a test, the float32 PSNR, the distributed run).
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_inference import build, sync, time_alternating  # scripts/ is this script's own folder
from srkit.api import Upscaler
from srkit.cli import train as train_cli
from srkit.core.tolerances import CUDA_FP32_ATOL, PSNR_REPRO_DB
from srkit.data.imageio import read_rgb8
from srkit.inference.evaluate import evaluate_folder
from srkit.inference.fast import prepare_fast, to_fast_input
from srkit.inference.predictor import Predictor, to_tensor
from srkit.weights.load import load_model

ROOT = Path(__file__).resolve().parents[1]
STAGED = ROOT / "device_data"
SHARED = ROOT.parent / "shared"
MODELS = ("carn_m", "carn", "overnet")
SCALES = (2, 3, 4)
FULL = {"datasets": ("Set5", "Set14"), "hw": (720, 1280), "runs": 5, "batch": 64, "patch": 64, "warm": 5,
        "steps": 20, "workers": 6, "big": (1536, 2048)}
TOY = {"datasets": ("Set5",), "hw": (48, 64), "runs": 1, "batch": 4, "patch": 16, "warm": 2, "steps": 3,
       "workers": 0, "big": (96, 128)}


def find_data(given: str | None) -> Path | None:
    """A folder with checkpoints/carn_m.pth and benchmark/Set5 (+ Set14): --data, device_data/, ../shared."""
    for root in [Path(given)] if given else [STAGED, SHARED]:
        if (root / "checkpoints" / "carn_m.pth").is_file() and (root / "benchmark" / "Set5").is_dir():
            return root
    return None


def stage() -> None:
    (STAGED / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copy2(SHARED / "checkpoints" / "carn_m.pth", STAGED / "checkpoints" / "carn_m.pth")
    for name in FULL["datasets"]:
        shutil.copytree(SHARED / "benchmark" / name, STAGED / "benchmark" / name, dirs_exist_ok=True)
    # the reference outputs the device tests compare with (the training-step files are left: 46 MB)
    (STAGED / "reference").mkdir(exist_ok=True)
    for ref in (SHARED / "reference").iterdir():
        if not ref.name.startswith("train_steps_"):
            shutil.copy2(ref, STAGED / "reference" / ref.name)
    size = sum(p.stat().st_size for p in STAGED.rglob("*") if p.is_file())
    print(f"staged {STAGED} ({size / 2**20:.1f} MiB): name it in the device run's carry")


def _fp32_exact() -> None:
    """float32 means float32 on CUDA (PyTorch lets cuDNN convolutions use TF32 by default). A script may
    change this process-wide setting; library code does not."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False


def section_tests(device: torch.device) -> tuple[str, bool]:
    if device.type == "cuda":
        data = find_data(None)
        env = {**os.environ, **({"SRKIT_SHARED": str(data)} if data is not None else {})}
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-k", "cuda", "tests"], cwd=ROOT,
                           capture_output=True, text=True, env=env)
        last = (r.stdout.strip().splitlines() or ["no output"])[-1]
        ok = r.returncode == 0
        print(r.stdout[-4000:], r.stderr[-2000:], sep="\n")  # failures and skip reasons, for the log
        return f"| device tests on CUDA (`pytest -k cuda`) | {last} |", ok
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-k", "cpu", "tests"], cwd=ROOT,
                       capture_output=True, text=True)
    n = sum(1 for line in r.stdout.splitlines() if "[" in line and "cpu" in line)
    return f"| device tests on the CPU (collected only; CI runs them) | {n} tests |", n > 0


def section_accuracy(device: torch.device, data: Path | None, sizes: dict) -> tuple[list[str], bool]:
    if data is None:  # a failure on the device, where the check is the point; a note in the CPU toy run
        return ["no data (carn_m.pth, Set5, Set14): run `--stage` beside ../shared first"], device.type == "cpu"
    cpu = torch.device("cpu")
    net, _ = load_model(str(data / "checkpoints" / "carn_m.pth"))
    half_name = "fp16" if device.type == "cuda" else "bf16"
    predictors = {"CPU fp32": (Predictor(net.to(cpu), tile=0), cpu)}
    dev_net = net.to(device) if device.type == "cuda" else net
    predictors[f"{device.type} fp32"] = (Predictor(dev_net, tile=0), device)
    predictors[f"{device.type} {half_name}"] = (Predictor(dev_net, tile=0, half=True), device)
    rows = [f"| dataset | scale | {' | '.join(predictors)} | fp32 - CPU (dB) | max abs output diff fp32 vs CPU |",
            "|---|---|" + "---|" * (len(predictors) + 2)]
    ok = True
    for name in sizes["datasets"]:
        for s in SCALES:
            root = data / "benchmark" / name
            psnr = {k: evaluate_folder(p, root, s, None, d, progress=False).summary()["psnr"]
                    for k, (p, d) in predictors.items()}
            lr = next(iter(sorted((root / f"x{s}").glob("*_LR.png"))))
            x = read_rgb8(lr)
            a = predictors["CPU fp32"][0](to_tensor(x, cpu), s)
            b = predictors[f"{device.type} fp32"][0](to_tensor(x, device), s).cpu()
            diff = (a - b).abs().max().item()
            gap = psnr[f"{device.type} fp32"] - psnr["CPU fp32"]
            ok &= abs(gap) <= PSNR_REPRO_DB
            rows.append(f"| {name} | x{s} | " + " | ".join(f"{v:.3f}" for v in psnr.values())
                        + f" | {gap:+.4f} | {diff:.1e} |")
    rows.append(f"\nfloat32 on the device must equal the CPU within PSNR_REPRO_DB = {PSNR_REPRO_DB} dB; the output "
                f"difference is the measurement behind CUDA_FP32_ATOL = {CUDA_FP32_ATOL:g}.")
    return rows, ok


def _peak(fn, device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a"
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    fn()
    sync(device)
    return f"{torch.cuda.max_memory_allocated() / 2**30:.2f}"


def section_speed(device: torch.device, sizes: dict) -> list[str]:
    """The plain forward and the fast path in each activation layout (NCHW, channels_last), float32 and half;
    the default layout of each precision is marked *."""
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    hname = "fp16" if device.type == "cuda" else "bf16"
    h, w = sizes["hw"]
    variants = [("plain fp32 NCHW", None, None, False), ("plain fp32 NHWC", None, None, True),
                ("fast fp32 NCHW", torch.float32, None, False), ("fast fp32 NHWC", torch.float32, None, True),
                (f"fast {hname} NCHW", half, half, False), (f"fast {hname} NHWC", half, half, True)]
    defaults = {("fast", False): prepare_default(device, None), ("fast", True): prepare_default(device, half)}
    head = [name + (" *" if name.startswith("fast") and defaults[("fast", name.startswith(f"fast {hname}"))] ==
                    name.endswith("NHWC") else "") for name, *_ in variants]
    rows = ["| model | scale | " + " | ".join(f"{n} ms" for n in head) + f" | peak GiB plain / fast {hname} |",
            "|---|---|" + "---|" * (len(variants) + 1)]
    for m in MODELS:
        for s in SCALES:
            net = build(m, s)[0].to(device)
            x = torch.rand(1, 3, h // s, w // s, device=device)
            fns = []
            for name, dtype, halfd, nhwc in variants:
                if dtype is None:
                    xx = x.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
                    mm = copy.deepcopy(net).to(memory_format=torch.channels_last) if nhwc else net

                    def fn(mm=mm, xx=xx):
                        with torch.no_grad():
                            return mm(xx, s)
                else:
                    fast = prepare_fast(net, half=halfd, nhwc=nhwc)
                    xx = to_fast_input(x, halfd, nhwc)

                    def fn(fast=fast, xx=xx):
                        with torch.inference_mode():
                            return fast(xx, s)
                fns.append(fn)
            times = time_alternating(fns, sizes["runs"], device)
            rows.append(f"| {m} | x{s} | " + " | ".join(f"{t * 1e3:.1f}" for t in times) +
                        f" | {_peak(fns[0], device)} / {_peak(fns[5], device)} |")
    return rows


def prepare_default(device: torch.device, half) -> bool:
    from srkit.inference.fast import nhwc_for
    return nhwc_for(device, half)


def section_api(device: torch.device, sizes: dict) -> list[str]:
    """The three-line API with its defaults (tiles chosen from the memory available now): a 720p output and
    a large x4 image; the tiles it chose, the time, the peak memory."""
    rows = ["| case | input | tiles chosen | ms | peak GiB |", "|---|---|---|---|---|"]
    for m, s, hw in (("carn_m", 2, (sizes["hw"][0] // 2, sizes["hw"][1] // 2)), ("carn_m", 4, sizes["big"]),
                     ("overnet", 4, sizes["big"])):
        net, arch = build(m, s)
        up = Upscaler(net, arch, device)
        x = torch.rand(1, 3, *hw, device=device)
        tiles = up.predict.tiles(*hw, s)
        t = time_alternating([lambda: up(x, s)], max(1, sizes["runs"] // 2), device)[0]
        rows.append(f"| {m} x{s} | {hw[1]}x{hw[0]} | {'whole image' if tiles == (0, 0) else f'{tiles[1]}x{tiles[0]}'} "
                    f"| {t * 1e3:.0f} | {_peak(lambda: up(x, s), device)} |")
    return rows


def _train_data(tmp: Path, count: int) -> tuple[Path, Path]:
    """A DIV2K-layout h5 of ``count`` 256-px crops of scikit-image's photographs (srkit.data.toy): the
    authors' sampling needs a batch of images, and patch 64 at x2 needs 128 px."""
    import div2h5
    from srkit.data.toy import make_toy_div2k
    div, val = make_toy_div2k(tmp, size=256, count=count)
    h5 = tmp / "train.h5"
    if div2h5.main(["--div2k", str(div), "--out", str(h5)]) != 0:
        raise RuntimeError("div2h5 failed")
    return h5, val


def _steps_per_s(run_dir: Path, warm: int) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(run_dir / "tensorboard"))
    ea.Reload()
    t = {e.step: e.wall_time for e in ea.Scalars("loss")}
    last = max(t)
    return (last - warm) / (t[last] - t[warm])


def section_training(device: torch.device, sizes: dict, tmp: Path) -> list[str]:
    h5, val = _train_data(tmp, sizes["batch"])
    amps = ("off", "fp16", "bf16") if device.type == "cuda" else ("off",)
    rows = ["| model (x2) | batch x patch | " + " | ".join(f"steps/s amp {a}" for a in amps) + " |",
            "|---|---|" + "---|" * len(amps)]
    for m in MODELS:
        fam, arch = ("overnet", []) if m == "overnet" else ("carn", ["--model", m])
        cells = []
        for amp in amps:
            n = sizes["warm"] + sizes["steps"]
            argv = [*arch, "--scale", "2", "--ckpt_dir", str(tmp / "runs"), "--ckpt_name", f"{m}_{amp}",
                    "--train_data_path", str(h5), "--valid_data_path", str(val), "--patch_size",
                    str(sizes["patch"]), "--batch_size", str(sizes["batch"]), "--max_steps", str(n),
                    "--print_interval", str(n), "--workers", str(sizes["workers"])]
            argv += ["--cpu"] if device.type == "cpu" else ([] if amp == "off" else ["--amp", amp])
            try:
                train_cli.run(argv, fam)
                cells.append(f"{_steps_per_s(tmp / 'runs' / f'{m}_{amp}', sizes['warm']):.2f}")
            except Exception as e:  # noqa: BLE001 - a failed configuration is a cell of the report
                cells.append(f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
        rows.append(f"| {m} | {sizes['batch']} x {sizes['patch']} | " + " | ".join(cells) + " |")
    return rows


# CARN-M x2 fed each way and with each fast option: loader-bound if the real loader trails on-device data
TRAINING_VIEW = [("real loader (workers, shared memory)", []), ("--data_on_device", ["--data_on_device"]),
                 ("--data_on_device --amp bf16", ["--data_on_device", "--amp", "bf16"]),
                 ("--data_on_device --channels_last", ["--data_on_device", "--channels_last"]),
                 ("--data_on_device --fused_adam", ["--data_on_device", "--fused_adam"]),
                 ("--data_on_device --cudnn_benchmark (determinism off)", ["--data_on_device", "--cudnn_benchmark"]),
                 ("--data_on_device --fast", ["--data_on_device", "--fast"])]


def section_training_view(device: torch.device, sizes: dict, tmp: Path) -> list[str]:
    h5, val = tmp / "train.h5", tmp / "valid"
    rows = ["| CARN-M x2, batch x patch | feed and options (determinism on unless said) | steps/s |", "|---|---|---|"]
    for i, (name, flags) in enumerate(TRAINING_VIEW):
        n = sizes["warm"] + sizes["steps"]
        argv = ["--model", "carn_m", "--scale", "2", "--ckpt_dir", str(tmp / "view"), "--ckpt_name", f"v{i}",
                "--train_data_path", str(h5), "--valid_data_path", str(val), "--patch_size", str(sizes["patch"]),
                "--batch_size", str(sizes["batch"]), "--max_steps", str(n), "--print_interval", str(n),
                "--workers", str(sizes["workers"]), *(["--cpu"] if device.type == "cpu" else []), *flags]
        try:
            train_cli.run(argv, "carn")
            cell = f"{_steps_per_s(tmp / 'view' / f'v{i}', sizes['warm']):.2f}"
        except Exception as e:  # noqa: BLE001 - a failed configuration is a cell of the report
            cell = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
        rows.append(f"| {sizes['batch']} x {sizes['patch']} | {name} | {cell} |")
    return rows


def section_ddp(device: torch.device, tmp: Path) -> tuple[str, bool]:
    h5 = tmp / "train.h5"
    run_dir = tmp / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           str(ROOT / "carn" / "train.py"), "--model", "carn_m", "--scale", "2", "--ckpt_dir", str(run_dir),
           "--ckpt_name", "run", "--train_data_path", str(h5), "--valid_data_path", str(tmp / "valid"),
           "--patch_size", "16", "--batch_size", "4", "--max_steps", "3", "--print_interval", "3",
           "--workers", "0", "--debug_sync", *(["--cpu"] if device.type == "cpu" else [])]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    digests = (run_dir / "run" / "sync_rank0.txt")
    steps = len(digests.read_text().splitlines()) if digests.exists() else 0
    ok = r.returncode == 0 and steps == 3
    if not ok:
        print(r.stderr[-3000:])
    backend = "nccl" if device.type == "cuda" else "gloo"
    return f"| torchrun --nproc_per_node=1, {backend} | exit {r.returncode}, {steps} of 3 steps with digests |", ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="toy sizes on the CPU (what CI runs)")
    p.add_argument("--stage", action="store_true", help="copy carn_m.pth, Set5 and Set14 into device_data/")
    p.add_argument("--data", default=None, help="folder with checkpoints/ and benchmark/ (default: device_data/, "
                   "then ../shared)")
    p.add_argument("--out", default=None, help="also write the report to this markdown file")
    args = p.parse_args(argv)
    if args.stage:
        stage()
        return 0
    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA device here; use --cpu for the toy run", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    sizes = TOY if args.cpu else FULL
    _fp32_exact()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    out = [f"# Device check: {name}, torch {torch.__version__}" + (" (toy sizes)" if args.cpu else ""), ""]
    ok = True
    t0 = time.perf_counter()

    def note(title: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {title}", file=sys.stderr, flush=True)
        if args.out:  # the report so far: a run stopped at a time limit still leaves its finished sections
            Path(args.out).write_text("\n".join(out) + "\n")

    note("tests")
    line, good = section_tests(device)
    ok &= good
    out += ["| check | result |", "|---|---|", line]
    note("accuracy")
    rows, good = section_accuracy(device, find_data(args.data), sizes)
    ok &= good
    out += ["", "## Released CARN-M, Y-channel PSNR (dB)", "", *rows]
    note("speed")
    out += ["", f"## Forward time, {sizes['hw'][1]}x{sizes['hw'][0]} output, median of {sizes['runs']} "
            "(float32 with TF32 off, cuDNN defaults; * marks the fast path's default layout)", "",
            *section_speed(device, sizes)]
    note("api")
    out += ["", "## The API with its defaults", "", *section_api(device, sizes)]
    with tempfile.TemporaryDirectory() as tmp:
        note("training")
        out += ["", "## Training speed", "", *section_training(device, sizes, Path(tmp))]
        note("training view")
        out += ["", "## Training: real loader against on-device data, each fast option", "",
                *section_training_view(device, sizes, Path(tmp))]
        note("distributed")
        line, good = section_ddp(device, Path(tmp))
        ok &= good
        out += ["", "## Distributed", "", "| run | result |", "|---|---|", line]
    note("done")
    out += ["", f"{'all checks passed' if ok else 'A CHECK FAILED'}; {time.perf_counter() - t0:.0f} s in all."]
    report = "\n".join(out)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
