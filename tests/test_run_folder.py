"""A run folder has one writer and keeps a readable checkpoint; set-ups that cannot work are one line and
exit 2. Real processes of carn/train.py on the toy data, real read-only and full file systems (tmpfs)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, train_argv
from test_train_faults import ENV, _default_workers, _wait_rows

TRAIN = [sys.executable, str(ROOT / "carn" / "train.py"), "--model", "carn_m", "--scale", "2"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(log: Path) -> int:
    return len(log.read_text().strip().splitlines()) - 1 if log.exists() else 0


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_a_live_run_holds_its_folder_and_a_killed_one_leaves_it(div2k, tmp_path):
    """A second launch into a live run's folder, fresh or --resume, gets one line naming the live run's host and
    PID, exit 2, and changes no byte in the folder (the holder is paused meanwhile, so nothing else could).
    SIGKILLed (its loader workers outlive it a moment), the holder leaves no lock: --resume continues."""
    h5, val, _ = div2k
    cmd = [*TRAIN, *_default_workers(train_argv(h5, val, tmp_path, 500, ["--save_interval", "2"]))]
    run, log = tmp_path / "run", tmp_path / "run" / "log.csv"
    holder = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                              start_new_session=True)
    try:
        _wait_rows(log, 3, holder)
        os.killpg(holder.pid, signal.SIGSTOP)
        try:
            before = _snapshot(run)
            for extra in ([], ["--resume"]):
                r = subprocess.run([*cmd, *extra], capture_output=True, text=True, env=ENV, timeout=300)
                assert r.returncode == 2, r.stderr[-2000:]
                errors = _errors(r.stderr)
                assert len(errors) == 1, r.stderr[-2000:]
                line = errors[0]
                assert f"is in use by a live run (host {socket.gethostname()}, PID {holder.pid}" in line, line
                assert "Traceback" not in r.stderr
                assert _snapshot(run) == before, extra
        finally:
            os.killpg(holder.pid, signal.SIGCONT)
        _wait_rows(log, 5, holder)
        os.kill(holder.pid, signal.SIGKILL)  # the trainer only: its loader workers see it gone seconds later
        holder.wait(timeout=60)
        again = subprocess.run([*cmd, "--resume", "--stop_after", "1"], capture_output=True, text=True, env=ENV,
                               timeout=300)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "resumed" in again.stderr
        assert (run / ".lock").read_text() == ""  # the run ended: no live holder to name
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
        try:
            os.killpg(holder.pid, signal.SIGKILL)  # loader workers left over
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_two_launches_at_once_into_one_folder_one_runs_one_is_refused(div2k, tmp_path):
    h5, val, _ = div2k
    cmd = [*TRAIN, *train_argv(h5, val, tmp_path, 12)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], [o[-1500:] for o in outs]
    winner, loser = (procs[0], outs[1]) if codes[0] == 0 else (procs[1], outs[0])
    assert _errors(loser) and f"PID {winner.pid}" in _errors(loser)[0] and "Traceback" not in loser
    assert _rows(tmp_path / "run" / "log.csv") == 12


@pytest.mark.slow
def test_rotation_keeps_a_checkpoint_that_loads_and_moves_a_broken_one_aside(div2k, tmp_path):
    """The newest checkpoint truncated; --resume falls back to the previous one and, with --keep 1, rotation
    keeps the new readable checkpoint (the truncated one moved aside as *.corrupt, not counted): the next
    --resume works. Rotation by step number kept the broken file and deleted every readable one."""
    h5, val, _ = div2k
    cmd = [*TRAIN, *train_argv(h5, val, tmp_path, 10, ["--save_interval", "2"])]
    run = tmp_path / "run"
    first = subprocess.run([*cmd, "--stop_after", "4"], capture_output=True, text=True, env=ENV, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    newest = run / "step_0000004.pth.tar"
    newest.write_bytes(newest.read_bytes()[:1000])  # a kill mid-copy, a full disk
    r = subprocess.run([*cmd, "--resume", "--keep", "1", "--stop_after", "1"], capture_output=True, text=True,
                       env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed" in r.stderr and "at step 2" in r.stderr
    assert "step_0000004.pth.tar is unreadable" in r.stderr and "moved aside as step_0000004.pth.tar.corrupt" in r.stderr
    assert sorted(p.name for p in run.glob("step_*")) == ["step_0000003.pth.tar", "step_0000004.pth.tar.corrupt"]
    again = subprocess.run([*cmd, "--resume", "--keep", "1", "--stop_after", "1"], capture_output=True, text=True,
                           env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "step_0000003.pth.tar at step 3" in again.stderr
    assert sorted(p.name for p in run.glob("step_*")) == ["step_0000004.pth.tar", "step_0000004.pth.tar.corrupt"]


@pytest.fixture
def tmpfs(tmp_path):
    """A real 1 MiB tmpfs (mounting needs root and CAP_SYS_ADMIN): chmod cannot make a folder read-only to root,
    and only a small file system can be filled in a test."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _train_main(capsys, argv: list[str]) -> tuple[int, list[str], str]:
    from carn import train
    capsys.readouterr()
    code = train.main(["--model", "carn_m", "--scale", "2", *argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if "error:" in line], err


def test_a_read_only_or_full_ckpt_dir_or_a_file_is_one_line_at_set_up(div2k, tmp_path, tmpfs, capsys):
    h5, val, _ = div2k
    afile = tmp_path / "afile"
    afile.write_text("user data")
    # full: a filler takes every block, so not even the lock's line fits
    fd = os.open(tmpfs / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    full = _train_main(capsys, train_argv(h5, val, tmpfs / "runs", 2))
    assert full[0] == 2 and len(full[1]) == 1, full[2][-1500:]
    assert f"--ckpt_dir {tmpfs / 'runs'}: cannot write the run folder {tmpfs / 'runs' / 'run'}: no space left " \
           f"on the device" in full[1][0]
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler", "runs"] and not list((tmpfs / "runs").iterdir())
    (tmpfs / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    ro = _train_main(capsys, train_argv(h5, val, tmpfs / "runs", 2))
    assert ro[0] == 2 and len(ro[1]) == 1 and "a read-only file system" in ro[1][0], ro[2][-1500:]
    for ckpt_dir, why in ((afile, f"{afile} is a file, not a folder"),
                          (afile / "sub", "a part of the path is a file, not a folder")):
        code, errors, err = _train_main(capsys, train_argv(h5, val, ckpt_dir, 2))
        assert code == 2 and len(errors) == 1 and f"--ckpt_dir {ckpt_dir}: cannot write the run folder" in errors[0] \
            and why in errors[0], err[-1500:]
    assert afile.read_text() == "user data"


def test_flags_and_environment_that_cannot_work_are_one_line(div2k, tmp_path, capsys, monkeypatch):
    """--seed beyond torch's limit (0 .. 2**64 - 1, the limit itself trains), a run name that is not a plain
    name (--ckpt_name '' wrote the run as .pth into --ckpt_dir itself), empty path flags, malformed torchrun
    variables named: exit 2, one error line, nothing written."""
    h5, val, _ = div2k
    ck = tmp_path / "ck"
    base = train_argv(h5, val, ck, 1)
    for extra, message in ((["--seed", "-1"], "--seed must be a whole number from 0 to 18446744073709551615"),
                           (["--seed", str(2 ** 64)], "--seed must be a whole number from 0 to 18446744073709551615"),
                           (["--ckpt_name", ""], "--ckpt_name '' is not a run name"),
                           (["--ckpt_name", "."], "--ckpt_name '.' is not a run name"),
                           (["--ckpt_name", ".."], "--ckpt_name '..' is not a run name"),
                           (["--ckpt_name", "a/b"], "--ckpt_name 'a/b' is not a run name"),
                           (["--ckpt_dir", ""], "--ckpt_dir is empty: give a path"),
                           (["--train_data_path", ""], "--train_data_path is empty: give a path"),
                           (["--valid_data_path", ""], "--valid_data_path is empty: give a path"),
                           (["--pretrained", ""], "--pretrained is empty: give a path")):
        with pytest.raises(SystemExit) as e:
            _train_main(capsys, [*base, *extra])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len([x for x in err.splitlines() if "error:" in x]) == 1, \
            (extra, err[-1000:])
        assert not ck.exists() and not (Path.cwd() / ".pth").exists(), extra
    for env, name in (({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc'"), ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0'"),
                      ({"WORLD_SIZE": "2", "RANK": "x"}, "RANK='x'"), ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK='2'"),
                      ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"}, "LOCAL_RANK='-1'"),
                      ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "http"}, "MASTER_PORT='http'")):
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            code, errors, err = _train_main(capsys, base)
        assert code == 2 and len(errors) == 1 and f"environment variable {name} is not a whole number" in errors[0], \
            (env, err[-1000:])
        assert not ck.exists()
    code, errors, err = _train_main(capsys, [*base, "--seed", str(2 ** 64 - 1)])
    assert code == 0 and (ck / "run" / "step_0000001.pth.tar").is_file(), err[-1500:]
    r = subprocess.run([*TRAIN, *base], capture_output=True, text=True, env={**ENV, "WORLD_SIZE": "abc"}, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and \
        "error: environment variable WORLD_SIZE='abc' is not a whole number" in r.stderr, r.stderr[-1500:]


@pytest.mark.parametrize("entry", ["overnet/train.py", "srkit-train --family carn --model carn_m", "srkit-train --family overnet"])
def test_every_training_entry_point_refuses_an_empty_path_flag(entry, tmp_path, capsys, monkeypatch):
    """Path('') is the current folder: --ckpt_dir '' wrote the run there, --train_data_path '' named '.'."""
    from overnet import train as overnet_train
    from srkit.cli import train as cli
    monkeypatch.chdir(tmp_path)
    main = overnet_train.main if entry == "overnet/train.py" else (lambda a: cli.main(entry.split()[1:] + a))
    for flag in ("--ckpt_dir", "--train_data_path", "--valid_data_path", "--pretrained", "--ckpt_name"):
        with pytest.raises(SystemExit) as e:
            main([flag, "", "--cpu"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and (f"{flag} is empty: give a path" in err or f"{flag} '' is not a run name" in err), \
            (flag, err[-800:])
    assert not list(tmp_path.iterdir())
