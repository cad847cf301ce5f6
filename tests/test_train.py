"""Training end to end on real photographs: div2h5, CARN / CARN-M / OverNet through the train front-ends,
exact resume (Adam and AdamP state, the multi-scale loss), torchrun DDP, checkpoints that say what they are."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import div2h5
from carn import train as carn_train
from conftest import ROOT, train_argv
from srkit.core import registry
from srkit.weights.load import load_model
from srkit.cli.train import run
from srkit.data.train_data import StepBatches
from srkit.training.trainer import TrainingError


def _args(h5, val, run_dir, name, steps, extra=()):
    """One loader process and the default device: the loader path users run."""
    return train_argv(h5, val, run_dir, steps, extra, name, workers=1, cpu=False)


def test_div2h5_layout_and_errors(div2k, tmp_path):
    h5, _, div = div2k
    with h5py.File(h5) as f:
        assert sorted(f) == ["HR", "X2", "X3", "X4"] and len(f["HR"]) == 16
        hr, lr = f["HR"]["0"][()], f["X3"]["0"][()]
        assert hr.dtype == np.uint8 and hr.shape == (192, 192, 3) and lr.shape == (64, 64, 3)
        assert list(f.attrs["names"]) == [f"{i:04d}" for i in range(1, 17)]
    lr_dir = div / "DIV2K_train_LR_bicubic" / "X2"
    lr_dir.mkdir(parents=True)
    out = tmp_path / "bad.h5"
    assert div2h5.main(["--div2k", str(div), "--out", str(out)]) == 1  # X2 folder present but empty
    assert list(tmp_path.iterdir()) == [] and not out.exists()  # no half-written file under any name
    lr_dir.rmdir()


def test_div2h5_twice_keeps_and_never_replaces_other_data(tmp_path, capsys):
    """The README's toy command run twice keeps what is there; an h5 or an image the command did not make
    from these files is refused with one line and left as it was; --overwrite replaces the h5."""
    root = tmp_path / "toy"
    argv = ["--toy", "4", "--div2k", str(root / "DIV2K"), "--out", str(root / "train.h5")]
    assert div2h5.main(argv) == 0
    before = (root / "train.h5").read_bytes()
    assert div2h5.main(argv) == 0 and "is up to date (4 images): kept" in capsys.readouterr().out
    assert (root / "train.h5").read_bytes() == before
    mine = root / "DIV2K" / "DIV2K_train_HR" / "0002.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mine)  # the user's own image where the toy set writes
    mine_bytes = mine.read_bytes()
    assert div2h5.main(argv) == 1
    assert "0002.png: exists and is not the toy image" in capsys.readouterr().err and mine.read_bytes() == mine_bytes
    argv_real = argv[2:]  # the folder as the user's data now: the h5 no longer matches it
    assert div2h5.main(argv_real) == 1
    assert "train.h5: exists and was not built from these files; pass --overwrite" in capsys.readouterr().err
    assert (root / "train.h5").read_bytes() == before
    assert div2h5.main([*argv_real, "--overwrite"]) == 0
    with h5py.File(root / "train.h5") as f:
        assert f["HR"]["1"].shape == (8, 8, 3)


@pytest.mark.parametrize("family,argv", [
    pytest.param("carn", ["--model", "carn", "--scale", "2", "--lr", "1e-3"], marks=pytest.mark.slow),
    ("carn", ["--model", "carn_m", "--scale", "0", "--lr", "1e-3"]),
    pytest.param("overnet", ["--scale", "2", "--lr", "1e-3"], marks=pytest.mark.slow),
])
def test_training_lowers_the_loss_and_sample_loads_the_result(div2k, tmp_path, family, argv):
    h5, val, _ = div2k
    fam = registry.get(family)
    losses = run(argv + _args(h5, val, tmp_path, "run", 30), fam)
    assert len(losses) == 30
    out = tmp_path / "run"
    trained, arch = load_model(str(out / "run.pth"), fam)  # the file says what it is: no flags needed
    torch.manual_seed(0)
    initial = fam.build(arch).eval()  # the trainer's initial weights (same seed)
    hr, lr, s = StepBatches(h5, (2,), 32, 16, seed=123)[10 ** 6][0]  # a batch no training step drew
    with torch.no_grad():
        before = torch.nn.functional.l1_loss(initial(lr, s), hr).item()
        after = torch.nn.functional.l1_loss(trained(lr, s), hr).item()
    assert after < 0.9 * before, (before, after)
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert len(rows) == 30 and rows[-1][next(k for k in rows[-1] if k.startswith("psnr_x"))]
    assert (out / "tensorboard").is_dir() and any((out / "tensorboard").iterdir())
    assert len(list(out.glob("step_*.pth.tar"))) == 1 and (out / "best.pth").is_file()
    sample = __import__(f"{family}.sample", fromlist=["main"])
    assert sample.main(["--ckpt_path", str(out / "run.pth"), "--test_data_dir", str(val), "--sample_dir",
                        str(tmp_path / "s"), "--scale", "2", "--cpu"]) == 0


def test_group_follows_the_model_when_omitted(div2k, tmp_path):
    """--model carn_m without --group trains the released CARN-M's shapes (group 4), not a group-1 model."""
    h5, val, _ = div2k
    run(["--model", "carn_m", "--scale", "0", *_args(h5, val, tmp_path, "run", 1)], "carn")
    _, arch = load_model(str(tmp_path / "run" / "run.pth"))
    assert arch["group"] == 4 and arch["model"] == "carn_m"
    sd = torch.load(tmp_path / "run" / "run.pth", weights_only=True)["state_dict"]
    assert registry.get("carn").infer_flags(sd)["group"] == 4  # the shapes agree with the saved flags


@pytest.mark.parametrize("family,argv", [
    pytest.param("carn", ["--model", "carn_m", "--scale", "0"], marks=pytest.mark.slow),  # Adam, one scale per step
    # (the quick tier resumes both families in test_families.py)
    pytest.param("overnet", ["--scale", "0"], marks=pytest.mark.slow),  # AdamP, the multi-scale loss over x2+x3+x4
])
def test_resume_continues_exactly(div2k, tmp_path, family, argv):
    h5, val, _ = div2k
    k = 4
    full = run(argv + _args(h5, val, tmp_path / "a", "run", 2 * k), family)
    first = run(argv + _args(h5, val, tmp_path / "b", "run", k), family)
    second = run(argv + _args(h5, val, tmp_path / "b", "run", 2 * k, ["--resume"]), family)
    assert first == full[:k]
    assert second == full[k:]  # bit-identical losses after resuming
    rows = list(csv.DictReader(open(tmp_path / "b" / "run" / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 2 * k + 1))
    a = torch.load(tmp_path / "a" / "run" / "step_0000008.pth.tar", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "step_0000008.pth.tar", weights_only=True)
    assert a["optimizer_state_dict"]["state"].keys() == b["optimizer_state_dict"]["state"].keys()
    for i, sa in a["optimizer_state_dict"]["state"].items():  # Adam / AdamP moments identical
        sb = b["optimizer_state_dict"]["state"][i]
        assert all(torch.equal(sa[n], sb[n]) for n in sa if torch.is_tensor(sa[n]))


def test_resume_with_other_architecture_flags_is_refused(div2k, tmp_path):
    h5, val, _ = div2k
    run(["--model", "carn_m", "--scale", "0", *_args(h5, val, tmp_path, "run", 1)], "carn")
    with pytest.raises(TrainingError, match="was trained with other flags: group 4 \\(now 2\\)"):
        run(["--model", "carn_m", "--group", "2", "--scale", "0", *_args(h5, val, tmp_path, "run", 2, ["--resume"])],
            "carn")


def test_best_pth_holds_the_best_validated_weights(div2k, tmp_path):
    h5, val, _ = div2k
    args = _args(h5, val, tmp_path, "run", 6, ["--keep", "10", "--lr", "3e-3"])
    args[args.index("--print_interval") + 1] = "1"
    run(["--model", "carn_m", "--scale", "2", *args], "carn")
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    best_step = max(rows, key=lambda r: float(r["psnr_x2"]))["step"]
    best = torch.load(tmp_path / "run" / "best.pth", weights_only=True)["state_dict"]
    step = torch.load(tmp_path / "run" / f"step_{int(best_step):07d}.pth.tar", weights_only=True)
    assert all(torch.equal(best[k], v) for k, v in step["model_state_dict"].items())
    print(f"validation PSNR by step: {[round(float(r['psnr_x2']), 3) for r in rows]}; best.pth = step {best_step}")


def test_pretrained_that_does_not_fit_gets_the_mismatch_message(div2k, tmp_path, capsys):
    h5, val, _ = div2k
    torch.manual_seed(0)
    other = tmp_path / "overnet.pth"
    torch.save(registry.get("overnet").build({"upscale": 3, "group": 4}).state_dict(), other)
    rc = carn_train.main(["--model", "carn_m", "--pretrained", str(other), *_args(h5, val, tmp_path, "run", 1)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"--pretrained {other} does not fit the requested model" in err
    assert "it looks like: OverNet: --upscale 3 --group 4" in err


def test_setup_errors_are_one_line(div2k, tmp_path, capsys):
    h5, _, _ = div2k
    rc = carn_train.main(["--model", "carn", *_args(h5, tmp_path / "nowhere", tmp_path, "run", 2)])
    err = capsys.readouterr().err
    assert rc == 2 and "--valid_data_path: " in err and "nowhere: no such benchmark folder" in err
    with pytest.raises(SystemExit) as e:  # argparse: usage + one line, exit 2
        carn_train.main(["--model", "carn", *_args(h5, tmp_path, tmp_path, "run", 2, ["--print_interval", "0"])])
    assert e.value.code == 2 and "--print_interval: 0 must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_keep_parameters_identical(div2k, tmp_path):
    h5, val, _ = div2k
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "carn" / "train.py"), "--model", "carn_m", "--scale", "0", "--cpu",
           "--debug_sync", *_args(h5, val, tmp_path, "ddp", 4)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "ddp"
    r0 = (out / "sync_rank0.txt").read_text().split("\n")
    r1 = (out / "sync_rank1.txt").read_text().split("\n")
    assert len([x for x in r0 if x]) == 4 and r0 == r1
    assert len(set(x.split()[1] for x in r0 if x)) == 4  # the parameters changed every step


@pytest.mark.slow
def test_finetuning_the_released_carn_m_learns_without_damage(div2k, tmp_path, carn_m_released, benchmark_dir):
    """200 steps from the released weights at a small learning rate: the weights change, the L1 loss on
    held-out patches does not rise, and Set5 x4 stays within 0.1 dB. On the loader's patches the released
    model beats bicubic at every scale (patches aligned, RGB, right range)."""
    h5, _, _ = div2k
    from srkit.inference.evaluate import evaluate_folder
    from srkit.inference.predictor import Predictor
    net, _ = load_model(str(carn_m_released))
    held_out = {s: StepBatches(h5, (s,), 32, 16, seed=5)[0][0] for s in (2, 3, 4)}
    for s, (hr, lr, _) in held_out.items():
        with torch.no_grad():
            sr_loss = torch.nn.functional.l1_loss(net(lr, s).clamp(0, 1), hr).item()
        bic = torch.nn.functional.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False).clamp(0, 1)
        assert sr_loss < 0.9 * torch.nn.functional.l1_loss(bic, hr).item(), s
    before = evaluate_folder(Predictor(net), benchmark_dir / "Set5", 4, None, torch.device("cpu"), progress=False)
    run(["--model", "carn_m", "--scale", "0", "--pretrained", str(carn_m_released), "--lr", "2e-6",
         "--ckpt_name", "ft", "--ckpt_dir", str(tmp_path), "--train_data_path", str(h5),
         "--valid_data_path", str(benchmark_dir / "Set5"), "--patch_size", "32", "--batch_size", "8",
         "--max_steps", "200", "--print_interval", "200", "--workers", "1"], "carn")
    tuned, _ = load_model(str(tmp_path / "ft" / "ft.pth"))
    moved = max((a - b).abs().max().item() for a, b in zip(net.state_dict().values(), tuned.state_dict().values()))
    assert moved > 1e-5, moved  # it learned something
    with torch.no_grad():
        loss = lambda m: sum(torch.nn.functional.l1_loss(m(lr, s), hr).item()  # noqa: E731
                             for s, (hr, lr, _) in held_out.items())
        l0, l1 = loss(net), loss(tuned)
    assert l1 <= l0 * 1.001, (l0, l1)
    after = float(list(csv.DictReader(open(tmp_path / "ft" / "log.csv")))[-1]["psnr_x4"])
    print(f"Set5 x4: released {before.summary()['psnr']:.3f} dB, after 200 fine-tuning steps {after:.3f} dB; "
          f"held-out L1 {l0:.5f} -> {l1:.5f}; max weight change {moved:.2e}")
    assert abs(after - before.summary()["psnr"]) <= 0.1


def test_plot_command(tmp_path):
    from srkit.cli import plot_log
    log = tmp_path / "log.csv"
    log.write_text("step,loss,lr,psnr_x2,ssim_x2\n" + "".join(
        f"{i},{1 / i},0.001,{30 + i / 10 if i % 5 == 0 else ''},{0.9 if i % 5 == 0 else ''}\n" for i in range(1, 21)))
    out = tmp_path / "plot.png"
    assert plot_log.main([str(log), "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 500
    assert len(np.unique(np.asarray(img.convert("L")))) > 10  # something was drawn


@pytest.mark.slow
def test_keeps_the_last_n_checkpoints(div2k, tmp_path):
    h5, val, _ = div2k
    args = _args(h5, val, tmp_path, "run", 8)
    args[args.index("--print_interval") + 1] = "2"
    run(["--model", "carn_m", "--keep", "2", *args], "carn")
    assert [p.name for p in sorted((tmp_path / "run").glob("step_*.pth.tar"))] == ["step_0000006.pth.tar",
                                                                                  "step_0000008.pth.tar"]


def test_training_can_write_safetensors_weights(div2k, tmp_path):
    h5, val, _ = div2k
    run(["--model", "carn_m", "--scale", "2", "--weights_format", "safetensors",
         *_args(h5, val, tmp_path, "run", 1)], "carn")
    assert sorted(p.name for p in (tmp_path / "run").glob("*.safetensors")) == ["best.safetensors", "run.safetensors"]
    net, arch = load_model(str(tmp_path / "run" / "run.safetensors"))
    assert arch == {"family": "carn", "model": "carn_m", "multi_scale": False, "scale": 2, "group": 4,
                    "reduce_upsample": False}


@pytest.mark.slow
def test_num_gpu_without_the_gpus_trains_the_same_global_batch_in_one_process(div2k, tmp_path, capsys):
    """The authors' --num_gpu 2 on a machine without two GPUs: one process, the global batch in 2 micro-batches
    (which retraces 2 processes bit for bit, tests/test_train_faults.py), said in one line."""
    h5, val, _ = div2k
    records = run(["--model", "carn_m", "--scale", "0", "--num_gpu", "2", *_args(h5, val, tmp_path, "run", 2)], "carn")
    assert len(records) == 2
    assert "--num_gpu 2: one process here; it trains the same global batch of 4 in 2 micro-batches" in \
        capsys.readouterr().err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["num_gpu"] == 2 and config["effective_grad_accum"] == 2 and config["world_size"] == 1
