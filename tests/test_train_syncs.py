"""A training step reads nothing back from the device between two prints, and a run claiming exactness runs
with deterministic kernels (flags set for the run, put back after)."""
from __future__ import annotations

import os
import traceback
from pathlib import Path

import torch

from conftest import train_argv
from srkit.cli.train import parse_args
from srkit.core import registry
from srkit.training import readback, step, trainer

def run(argv, family):
    """Train as the command line says, without validation (the quick tier's budget)."""
    fam, cfg = parse_args(argv, registry.get(family))
    cfg.valid_data_path = None
    return trainer.Trainer(fam, cfg).train()


READS = ("item", "__float__", "cpu", "tolist")
OPTIM = str(Path(torch.optim.__file__).parent)


def test_no_host_reads_between_two_prints(div2k, tmp_path, monkeypatch):
    """Steps 3 and 4 of a run printing every 2 steps: no Tensor.item / float() / .cpu() / .tolist() from the
    step's start to the wait at step 4. torch.optim's Adam reads its step count with item(): a tensor it keeps
    on the host on purpose (no device sync), so calls from torch/optim are left out."""
    h5, val, _ = div2k
    state = {"calls": 0, "on": False, "reads": [], "elsewhere": 0}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _name=name, _original=original, **k):
            state["elsewhere"] += not state["on"]
            if state["on"]:
                caller = traceback.extract_stack(limit=2)[0].filename
                if not caller.startswith(OPTIM):
                    state["reads"].append(f"{_name} from {caller}")
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counted)
    runner_call, drain = step.StepRunner.__call__, readback.Readback.drain

    def call(self, *a, **k):
        state["calls"] += 1
        if state["calls"] == 3:
            state["on"] = True
        return runner_call(self, *a, **k)

    def drained(self, wait=False):
        if wait:
            state["on"] = False
        return drain(self, wait)
    monkeypatch.setattr(step.StepRunner, "__call__", call)
    monkeypatch.setattr(readback.Readback, "drain", drained)
    records = run(["--model", "carn_m", *train_argv(h5, val, tmp_path, 4, ["--print_interval", "2",
                                                                           "--save_interval", "2"])], "carn")
    assert state["calls"] == 4 and len(records) == 4
    assert state["elsewhere"] > 0  # the hooks see the reads of the prints, validation and checkpoints
    assert state["reads"] == []


def test_a_run_claiming_exactness_runs_with_deterministic_kernels(div2k, tmp_path, monkeypatch):
    h5, val, _ = div2k
    seen = []
    runner_call = step.StepRunner.__call__

    def call(self, *a, **k):
        seen.append((torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
                     torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG")))
        return runner_call(self, *a, **k)
    monkeypatch.setattr(step.StepRunner, "__call__", call)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
              torch.are_deterministic_algorithms_enabled())
    run(["--model", "carn_m", *train_argv(h5, val, tmp_path / "exact", 2)], "carn")
    assert seen == [(True, False, True, ":4096:8")] * 2
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.are_deterministic_algorithms_enabled()) == before  # put back: a library call leaves no trace
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    seen.clear()
    run(["--model", "carn_m", *train_argv(h5, val, tmp_path / "bench", 2, ["--cudnn_benchmark"])], "carn")
    assert seen == [(before[0], True, before[2], None)] * 2  # autotuning gives the exactness claim up
