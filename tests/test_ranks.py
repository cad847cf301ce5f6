"""Ranks that agree: on the step a run resumes from, on stopping when one of them fails (under torchrun and
with processes started by hand with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, as other launchers and
several machines start them), and on the GPU each one binds. Real gloo processes on 127.0.0.1, toy data."""
from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from conftest import ROOT, train_argv
from srkit.cli.train import run
from srkit.core import distributed

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
FAULTY = str(ROOT / "tests" / "faulty_rank.py")
CARN_M = ["--model", "carn_m", "--scale", "0"]
LIMIT = 90  # seconds a two-process test may take; a hang fails it long before --dist_timeout would


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _by_hand(argvs: list[list[str]]) -> list[subprocess.Popen]:
    """One process per argv, rank = its index, joined through RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT
    as a launcher other than torchrun (or one per machine) starts them."""
    port = str(_free_port())
    return [subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**ENV, "WORLD_SIZE": str(len(argvs)), "RANK": str(r), "LOCAL_RANK": str(r),
                                  "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
            for r, argv in enumerate(argvs)]


def _wait_all(procs: list[subprocess.Popen], limit: float = LIMIT) -> list[tuple[int, str, float]]:
    """(exit status, stderr, seconds since the start) of each process; kills them all past ``limit``."""
    t0, out = time.monotonic(), {}
    try:
        while len(out) < len(procs):
            for i, p in enumerate(procs):
                if i not in out and p.poll() is not None:
                    out[i] = time.monotonic() - t0
            left = sorted(set(range(len(procs))) - set(out))
            assert time.monotonic() - t0 < limit, f"processes {left} still running after {limit} s"
            time.sleep(0.02)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.returncode, p.communicate()[1], out[i]) for i, p in enumerate(procs)]


def _exit_2(rc: int) -> bool:
    """Exit 2, or torch's gloo teardown aborting the process at exit after it has said why (SIGABRT,
    "terminate called without an active exception": a race in torch's own clean-up, seen rarely under load)."""
    return rc in (2, -signal.SIGABRT)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}


# ---- 1. the step a run resumes from -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("rank1_has", ["an older checkpoint", "no checkpoint"])
def test_ranks_whose_run_folders_disagree_on_the_resume_step_all_stop_and_change_nothing(div2k, tmp_path, rank1_has):
    """Two processes started by hand, each with its own --ckpt_dir, as on two machines without a shared file
    system: rank 0's folder holds steps 2 and 4, rank 1's a copy without step 4 (or nothing). Both exit 2
    with one line naming rank 1, its step and rank 0's; neither folder changes."""
    h5, val, _ = div2k
    run([*CARN_M, *train_argv(h5, val, tmp_path / "node0", 4, ["--save_interval", "2", "--keep", "5"])], "carn")
    mine, theirs = tmp_path / "node0" / "run", tmp_path / "node1" / "run"
    if rank1_has == "an older checkpoint":
        shutil.copytree(mine, theirs)
        (theirs / "step_0000004.pth.tar").unlink()
    before = (_files(mine), _files(theirs))
    argv = [str(ROOT / "carn" / "train.py"), *CARN_M]
    results = _wait_all(_by_hand([[*argv, *train_argv(h5, val, tmp_path / f"node{r}", 8, ["--resume",
                                                                                           "--dist_timeout", "60"])]
                                  for r in (0, 1)]))
    found = "step 2" if rank1_has == "an older checkpoint" else "no checkpoint"
    line = f"error: rank 1 finds {found} in {theirs}, but rank 0 finds step 4 in {mine}: every process must see"
    for rc, err, _ in results:
        assert _exit_2(rc) and line in err and "Traceback" not in err, err[-2000:]
        assert len([x for x in err.splitlines() if "error:" in x]) == 1
    assert (_files(mine), _files(theirs)) == before
    print(f"rank 1 with {rank1_has}: both ranks exit 2 after {max(t for *_, t in results):.1f} s")


@pytest.mark.slow
def test_a_set_up_failure_on_one_rank_stops_every_rank_naming_it(div2k, tmp_path):
    """Rank 1's machine lacks the validation folder (its own --valid_data_path): rank 1 exits 2 with its line,
    rank 0 with 'rank 1 failed at set-up: <that line>' (not a gloo traceback from its next collective), and no
    run folder is made."""
    h5, val, _ = div2k
    argv = [str(ROOT / "carn" / "train.py"), "--model", "carn_m"]
    missing = tmp_path / "nowhere"
    results = _wait_all(_by_hand([[*argv, *train_argv(h5, v, tmp_path, 4, ["--dist_timeout", "60"])]
                                  for v in (val, missing)]))
    line = f"--valid_data_path: {missing}: no such benchmark folder"
    (rc0, err0, _), (rc1, err1, _) = results
    assert _exit_2(rc1) and f"error: {line}" in err1, err1[-2000:]
    assert _exit_2(rc0) and f"error: rank 1 failed at set-up: {line}" in err0 and "Traceback" not in err0, \
        err0[-2000:]
    assert not (tmp_path / "run").exists()


# ---- 2. a failure on one rank stops every rank -----------------------------------------------------------------

def _fault_argv(h5, val, out: Path, rank: int, fault: str) -> list[str]:
    return [FAULTY, str(rank), fault, *CARN_M, *train_argv(h5, val, out, 200, ["--save_interval", "2",
                                                                               "--print_interval", "2",
                                                                               "--dist_timeout", "120"])]


# the fault, the rank it strikes, the step it strikes at, and the failing rank's own error
FAULTS = {"disk": (0, 2, "could not save the checkpoint of step 2: no space left on the device"),
          "loss": (1, 3, "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (simulated)"),
          "validation": (1, 2, "validation at x2 failed on ")}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failure_on_one_hand_started_rank_stops_every_rank_within_one_step(div2k, tmp_path, fault):
    """Processes started by hand (no torchrun agent to tear the group down): a full disk at rank 0's save of
    step 2, an out-of-memory in rank 1's forward pass of step 3, an unreadable validation shard on rank 1.
    The failing rank tells the other at their next agreement: both exit non-zero within a second of each
    other, the survivor with one line naming the failing rank, its step and its error; no step after it is
    logged (--dist_timeout is 120 s: no timeout is involved)."""
    h5, val, _ = div2k
    bad, at, why = FAULTS[fault]
    results = _wait_all(_by_hand([_fault_argv(h5, val, tmp_path, bad, fault)] * 2))
    (rc_bad, err_bad, t_bad), (rc_ok, err_ok, t_ok) = results[bad], results[1 - bad]
    assert rc_bad != 0 and why in err_bad, err_bad[-2000:]
    assert _exit_2(rc_ok), err_ok[-2000:]
    assert f"error: rank {bad} failed at step {at}: {why}" in err_ok and "Traceback" not in err_ok, err_ok[-2000:]
    assert abs(t_ok - t_bad) < 5
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) - 1 <= at  # nothing past the failing step
    print(f"{fault} on rank {bad} at step {at}, hand-started: failing rank out after {t_bad:.1f} s, the other "
          f"{t_ok - t_bad:+.2f} s later")


@pytest.mark.slow
def test_a_full_disk_on_rank_0_under_torchrun_stops_every_rank_naming_it(div2k, tmp_path):
    """The same full disk under torchrun --nproc_per_node=2: torchrun exits non-zero, with rank 0's line and
    rank 1's 'rank 0 failed at step 2' line (said before torchrun's agent, seeing rank 0 gone, sends it
    SIGTERM)."""
    h5, val, _ = div2k
    t0 = time.monotonic()
    proc = subprocess.Popen([*TORCHRUN, "--standalone", "--nproc_per_node=2",
                             *_fault_argv(h5, val, tmp_path, 0, "disk")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    [(rc, err, seconds)] = _wait_all([proc])
    why = FAULTS["disk"][2]
    assert rc != 0 and f"error: {why}" in err, err[-3000:]
    assert f"error: rank 0 failed at step 2: {why}" in err, err[-3000:]
    assert err.count("error:") == 2 and "rank      : 1 (local_rank: 1)" in err, err[-3000:]
    print(f"full disk on rank 0 at step 2 under torchrun: torchrun exits {rc} after {time.monotonic() - t0:.1f} s")


@pytest.mark.slow
def test_a_rank_killed_without_a_word_ends_its_hand_started_peer_with_one_line(div2k, tmp_path):
    """SIGKILL to rank 1 mid-run (nothing to catch): its connections close, rank 0's next collective fails at
    once, and rank 0 exits 2 with one line naming itself and the step, long before --dist_timeout (120 s)."""
    h5, val, _ = div2k
    argv = [str(ROOT / "carn" / "train.py"), *CARN_M, *train_argv(h5, val, tmp_path, 100000, ["--dist_timeout", "120"])]
    procs = _by_hand([argv, argv])
    log = tmp_path / "run" / "log.csv"
    t0 = time.monotonic()
    while not (log.exists() and len(log.read_text().splitlines()) > 3):
        assert time.monotonic() - t0 < LIMIT and procs[0].poll() is None, procs[0].stderr.read()[-2000:]
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    [(rc, err, _), _] = _wait_all(procs)
    gone = time.monotonic() - killed
    assert _exit_2(rc) and "error: rank 0 lost contact with the other processes at step" in err, err[-2000:]
    assert "Traceback" not in err and gone < 30, (gone, err[-2000:])
    print(f"rank 1 SIGKILLed: rank 0 out {gone:.1f} s later")


# ---- 3. and 4. one GPU per process, bound at init ---------------------------------------------------------------

@pytest.fixture
def gpus(monkeypatch):
    """A machine with ``n`` GPUs as far as setup_distributed can tell, and init_process_group recorded."""
    calls = []

    def machine(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
        monkeypatch.setattr(dist, "is_initialized", lambda: False)
        monkeypatch.setattr(dist, "get_rank", lambda: int(os.environ["RANK"]))
        monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: calls.append(("init", a, k)))
        return calls
    for name in ("TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    return machine


def _ranks(monkeypatch, rank: int, local: int, world: int) -> None:
    for k, v in {"WORLD_SIZE": world, "RANK": rank, "LOCAL_RANK": local, "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": 29500}.items():
        monkeypatch.setenv(k, str(v))


def test_more_ranks_than_gpus_is_one_line_before_anything_is_joined(gpus, monkeypatch, capsys):
    """LOCAL_RANK 3 on a 2-GPU machine: exit 2, one line naming the rank, the device and the count, and no
    process group joined, no device selected (not CUDA's "invalid device ordinal" later)."""
    from carn import train
    calls = gpus(2)
    _ranks(monkeypatch, rank=7, local=3, world=8)
    assert train.main(["--model", "carn_m", "--ckpt_dir", str(ROOT / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert ("error: rank 7 wants cuda:3 (LOCAL_RANK=3) but this machine has 2 GPUs: start at most 2 processes "
            "per machine (torchrun --nproc_per_node=2), or add --cpu") in err, err
    assert len(err.strip().splitlines()) == 1 and calls == []
    assert not (ROOT / "nowhere").exists()


@pytest.mark.parametrize("restarted", [False, True], ids=["env", "torchrun-restart"])
def test_each_process_binds_its_gpu_when_it_joins_the_group(gpus, monkeypatch, restarted):
    """On CUDA the group is NCCL, bound to cuda:LOCAL_RANK at init (device_id), after that device is made
    current; on the CPU (--cpu) gloo, unbound, as before."""
    calls = gpus(4)
    _ranks(monkeypatch, rank=5, local=1, world=8)
    if restarted:  # torchrun's restarted group: its own store prefix, the same binding
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
        monkeypatch.setattr(dist, "rendezvous", lambda *a, **k: iter([(dist.HashStore(), 5, 8)]))
    assert distributed.setup_distributed(cpu=False, timeout_s=7) == (5, 8, torch.device("cuda", 1))
    assert calls[0] == ("set_device", 1)
    (_, args, kwargs), = [c for c in calls if c[0] == "init"]
    assert args == ("nccl",) and kwargs["device_id"] == torch.device("cuda", 1)
    assert kwargs["timeout"] == datetime.timedelta(seconds=7)
    assert ("store" in kwargs) == restarted
    calls.clear()
    assert distributed.setup_distributed(cpu=True, timeout_s=7) == (5, 8, torch.device("cpu"))
    (_, args, kwargs), = calls
    assert args == ("gloo",) and "device_id" not in kwargs
