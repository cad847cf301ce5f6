"""The numerical cost of each fast option, and what determinism costs, measured on the CPU against the
authors' loop (float32, deterministic kernels).

    python scripts/measure_fast_options.py [--steps 100] [--rounds 3] [--timing_steps 100]
        [--json assets/perf/fast_options.json]
        [--docs docs/training.md]

Trains CARN-M x2 (batch 4, patch 32, the toy DIV2K set of srkit.data.toy, workers 0, seed 0: the same start
and the same batches) for ``--steps`` steps with the default loop, then with each of --amp bf16,
--channels_last, --fused_adam, --cudnn_benchmark (determinism off) and --fast, and prints per option against
the default run: the largest |weight difference| (and relative to the default run's own largest weight
change from the start), the mean |loss difference| over the steps and over the last 10, and the Y-channel
PSNR difference of the final weights on a benchmark folder (Set14 x2 of ../shared/benchmark where present, else the toy validation images).
(--amp fp16 is CUDA-only; --cudnn_benchmark's only CPU effect is turning the deterministic flags off.)

Determinism's cost: ``--rounds`` alternating runs (``--timing_steps`` steps each) of the default loop and of
--cudnn_benchmark (the same loop without the deterministic flags), one thread, steps per second of the
process's CPU time in its steps (robust to other load on the machine), median.
``--json`` keeps the figures; ``--docs`` writes their table into the page between its
``measure_fast_options`` markers (``render`` makes it from the JSON, so a test can check the page).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import div2h5
from srkit.cli.train import parse_args
from srkit.core import registry
from srkit.core.atomic import write_text
from srkit.core.text import replace_block
from srkit.data.toy import make_toy_div2k
from srkit.training.trainer import Trainer
from srkit.training.validation import validate

ROOT = Path(__file__).resolve().parents[1]
SET14 = ROOT.parent / "shared" / "benchmark" / "Set14"
BLOCK = "measure_fast_options"
# (the option, what it means on the CPU, its flags)
OPTIONS = [("--amp bf16", "", ["--amp", "bf16"]), ("--channels_last", "", ["--channels_last"]),
           ("--fused_adam", "", ["--fused_adam"]),
           ("--cudnn_benchmark", "on the CPU: the deterministic flags off", ["--cudnn_benchmark"]),
           ("--fast", "all of them", ["--fast"])]


def cpu_name() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"


def train(h5: Path, out: Path, steps: int, extra: list[str]) -> tuple[list[float], dict, Trainer, float, dict]:
    """(per-step losses, final weights, the trainer, CPU seconds in its steps, starting weights) of one run
    from seed 0."""
    argv = ["--model", "carn_m", "--scale", "2", "--ckpt_dir", str(out), "--ckpt_name", "run", "--train_data_path",
            str(h5), "--patch_size", "32", "--batch_size", "4", "--max_steps", str(steps), "--print_interval",
            str(steps), "--save_interval", str(steps), "--workers", "0", "--cpu", *extra]
    fam, cfg = parse_args(argv, registry.get("carn"))
    cfg.valid_data_path = None
    t = Trainer(fam, cfg)
    start = {k: v.detach().float().clone() for k, v in t.model.state_dict().items()}
    runner, spent = t.runner, [0.0]

    def timed(*args, **kwargs):  # the step itself (forward, backward, clipping, update): set-up and saves apart
        t0 = time.process_time()  # this process's CPU time: what the step costs, whatever else the machine runs
        res = runner(*args, **kwargs)
        spent[0] += time.process_time() - t0
        return res
    t.runner = timed
    records = t.train()
    return [r.loss for r in records], {k: v.detach().float().clone() for k, v in t.model.state_dict().items()}, \
        t, spent[0], start


def psnr(t: Trainer, folder: Path) -> float:
    return validate(t.model, str(folder), (2,), torch.device("cpu"), 0, 1)["psnr_x2"]


def measure(steps: int, rounds: int, timing_steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        div, valid = make_toy_div2k(root)
        folder = SET14 if SET14.is_dir() else valid
        h5 = root / "train.h5"
        div2h5.main(["--div2k", str(div), "--out", str(h5)])
        base_loss, base, t, _, start = train(h5, root / "base", steps, [])
        base_psnr = psnr(t, folder)
        moved = max((base[k] - start[k]).abs().max().item() for k in base)  # the training's own largest change
        print(f"CARN-M x2, {steps} steps, batch 4, patch 32, CPU; default run: final loss {base_loss[-1]:.5f}, "
              f"PSNR {base_psnr:.3f} dB on {folder.name} x2", flush=True)
        rows = []
        for name, note, flags in OPTIONS:
            loss, w, t, _, _ = train(h5, root / f"run{len(rows)}", steps, flags)
            diff = max((w[k] - base[k]).abs().max().item() for k in base)
            row = {"option": name, "note": note, "max_weight_diff": diff, "relative": diff / moved,
                   "mean_loss_diff": sum(abs(x - y) for x, y in zip(loss, base_loss)) / len(loss),
                   "last10_loss_diff": sum(abs(x - y) for x, y in zip(loss[-10:], base_loss[-10:])) / 10,
                   "final_loss": loss[-1], "psnr_diff": psnr(t, folder) - base_psnr}
            rows.append(row)
            print(f"{name}: max |weight difference| {diff:.3g} ({row['relative']:.2g} of the default run's largest weight change); "
                  f"mean |loss difference| {row['mean_loss_diff']:.3g} (last 10 steps {row['last10_loss_diff']:.3g}); "
                  f"PSNR {row['psnr_diff']:+.2g} dB", flush=True)
        timing: dict[str, list[float]] = {"deterministic": [], "not deterministic": []}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one thread: the CPU time is the time on one core, no thread waiting on another
        for r in range(rounds):  # alternating, so both sides see the same load on the machine
            for key, flags in (("deterministic", []), ("not deterministic", ["--cudnn_benchmark"])):
                _, _, _, seconds, _ = train(h5, root / f"time{r}{key[:3]}", timing_steps, flags)
                timing[key].append(timing_steps / seconds)
        torch.set_num_threads(threads)
        det, nondet = (statistics.median(timing[k]) for k in ("deterministic", "not deterministic"))
        print(f"steps per CPU second (one thread), median of {rounds}: deterministic flags (the default) {det:.2f}, without "
              f"(--cudnn_benchmark) {nondet:.2f}; deterministic / not {det / nondet:.3f}", flush=True)
    return {"steps": steps, "rounds": rounds, "timing_steps": timing_steps, "benchmark": f"{folder.name} x2", "base_final_loss": base_loss[-1],
            "base_psnr": base_psnr, "largest_change": moved, "rows": rows, "steps_per_s": timing,
            "det_over_nondet": det / nondet,
            "machine": {"cpu": cpu_name(), "isa": torch.backends.cpu.get_cpu_capability(),
                        "threads": torch.get_num_threads(), "torch": torch.__version__,
                        "date": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            "command": "python scripts/measure_fast_options.py " + " ".join(sys.argv[1:])}


def render(m: dict) -> str:
    """The page's table of ``measure``'s figures."""
    md = m["machine"]
    isa = f" ({md['isa']})" if md.get("isa") else ""
    lines = [f"`{m['command'].strip()}` ({md['date'][:10]}, {md['cpu']}{isa}, {md['threads']} threads, torch "
             f"{md['torch']}): CARN-M x2 from the same start (seed 0) on the same batches, {m['steps']} steps of "
             f"batch 4, patch 32, on the CPU. Against the default loop (final loss {m['base_final_loss']:.4f}, "
             f"{m['base_psnr']:.2f} dB on {m['benchmark']}; its largest weight change from the start "
             f"{m['largest_change']:.3g}):", "",
             "| option | max \\|weight difference\\| | relative to that change | mean \\|loss difference\\| "
             "| the same, last 10 steps | PSNR difference (dB) |", "|---|---|---|---|---|---|"]
    for r in m["rows"]:
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(f"| `{r['option']}`{note} | {r['max_weight_diff']:.2g} | {r['relative']:.2g} | "
                     f"{r['mean_loss_diff']:.2g} | {r['last10_loss_diff']:.2g} | {r['psnr_diff']:+.2g} |")
    t = m["steps_per_s"]
    med = {k: statistics.median(v) for k, v in t.items()}
    lines += ["", f"Determinism on the CPU: {med['deterministic']:.2f} steps per CPU second (one thread) with the "
              f"deterministic flags (the default) against {med['not deterministic']:.2f} without "
              f"(`--cudnn_benchmark`), median of "
              f"{m['rounds']} alternating runs of {m.get('timing_steps', m['steps'])} steps each: "
              f"{m['det_over_nondet']:.3f}x. CUDA's figures need a GPU: `scripts/device_check.py` measures them."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3, help="alternating timed runs with and without determinism")
    p.add_argument("--timing_steps", type=int, default=None, help="steps of each timed run (default: --steps)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--docs", type=Path, default=None, help="write the table into this page's marked block")
    p.add_argument("--from_json", type=Path, default=None, help="render a --json file instead of measuring")
    a = p.parse_args(argv)
    m = json.loads(a.from_json.read_text()) if a.from_json else measure(a.steps, a.rounds, a.timing_steps or a.steps)
    if a.json:
        write_text(a.json, json.dumps(m, indent=1) + "\n")
    if a.docs:
        write_text(a.docs, replace_block(a.docs.read_text(), BLOCK, render(m)))
        print(f"wrote the table into {a.docs}")


if __name__ == "__main__":
    main()
