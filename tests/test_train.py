"""Training end to end on real photographs: div2h5, CARN / CARN-M / OverNet, exact resume, torchrun DDP."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import div2h5
from conftest import ROOT
from train_fixtures import make_div2k


@pytest.fixture(scope="module")
def div2k(tmp_path_factory):
    root = tmp_path_factory.mktemp("div2k")
    div, val = make_div2k(root)
    h5 = root / "train.h5"
    assert div2h5.main(["--div2k", str(div), "--out", str(h5)]) == 0
    return h5, val, div


def _args(h5, val, run_dir, name, steps, extra=()):
    return ["--ckpt_name", name, "--ckpt_dir", str(run_dir), "--train_data_path", str(h5), "--valid_data_path",
            str(val), "--patch_size", "16", "--batch_size", "4", "--max_steps", str(steps), "--print_interval",
            str(steps), "--workers", "1", *extra]


def test_div2h5_layout_and_errors(div2k, tmp_path):
    h5, _, div = div2k
    with h5py.File(h5) as f:
        assert sorted(f) == ["HR", "X2", "X3", "X4"] and len(f["HR"]) == 4
        hr, lr = f["HR"]["0"][()], f["X3"]["0"][()]
        assert hr.dtype == np.uint8 and hr.shape == (192, 192, 3) and lr.shape == (64, 64, 3)
        assert list(f.attrs["names"]) == ["0001", "0002", "0003", "0004"]
    lr_dir = div / "DIV2K_train_LR_bicubic" / "X2"
    lr_dir.mkdir(parents=True)
    out = tmp_path / "bad.h5"
    assert div2h5.main(["--div2k", str(div), "--out", str(out)]) == 1  # X2 folder present but empty
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    lr_dir.rmdir()


@pytest.mark.parametrize("family,argv", [
    ("carn", ["--model", "carn", "--scale", "2", "--lr", "1e-3"]),
    ("carn", ["--model", "carn_m", "--group", "4", "--scale", "0", "--lr", "1e-3"]),
    ("overnet", ["--scale", "2", "--lr", "1e-3"]),
])
def test_training_lowers_the_loss_and_sample_loads_the_result(div2k, tmp_path, family, argv):
    h5, val, _ = div2k
    mod = __import__(f"{family}.train", fromlist=["main"])
    losses = mod.main(argv + _args(h5, val, tmp_path, "run", 30))
    assert len(losses) == 30
    run = tmp_path / "run"
    # the loss falls: L1 on a fixed held-out batch, initial weights (same seed) vs trained weights
    from srkit.train_data import StepBatches
    hr, lr, s = StepBatches(h5, (2,), 32, 16, seed=123)[10 ** 6]
    spec = __import__(f"{family}.spec", fromlist=["build"])
    kw = {"upscale": 3} if family == "overnet" else {"model": argv[1], "scale": 2, "multi_scale": False,
                                                     "group": 1}
    if "--scale" in argv and argv[argv.index("--scale") + 1] == "0":
        kw.update(multi_scale=True, scale=None, group=4)
    torch.manual_seed(0)
    net = spec.build(**kw).eval()
    with torch.no_grad():
        before = torch.nn.functional.l1_loss(net(lr, s), hr).item()
        net.load_state_dict(torch.load(run / "run.pth", weights_only=True))
        after = torch.nn.functional.l1_loss(net(lr, s), hr).item()
    assert after < 0.9 * before, (before, after)
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert len(rows) == 30 and rows[-1][next(k for k in rows[-1] if k.startswith("psnr_x"))]
    assert (run / "tensorboard").is_dir() and any((run / "tensorboard").iterdir())
    assert len(list(run.glob("step_*.pth.tar"))) == 1 and (run / "best.pth").is_file()
    sample = __import__(f"{family}.sample", fromlist=["main"])
    rc = sample.main(["--ckpt_path", str(run / "run.pth"), "--test_data_dir", str(val), "--sample_dir",
                      str(tmp_path / "s"), "--scale", "2", "--cpu"])
    assert rc == 0


def test_resume_continues_exactly(div2k, tmp_path):
    h5, val, _ = div2k
    from carn import train
    base = ["--model", "carn_m", "--group", "4", "--scale", "0"]
    k = 6
    full = train.main(base + _args(h5, val, tmp_path / "a", "run", 2 * k))
    first = train.main(base + _args(h5, val, tmp_path / "b", "run", k))
    second = train.main(base + _args(h5, val, tmp_path / "b", "run", 2 * k, ["--resume"]))
    assert first == full[:k]
    assert second == full[k:]  # bit-identical losses after resuming
    rows = list(csv.DictReader(open(tmp_path / "b" / "run" / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 2 * k + 1))


def test_missing_validation_folder_stops_at_start(div2k, tmp_path):
    h5, _, _ = div2k
    from carn import train
    with pytest.raises(SystemExit, match="validation folder unusable: .*nowhere: no such benchmark folder"):
        train.main(["--model", "carn", *_args(h5, tmp_path / "nowhere", tmp_path, "run", 2)])


def test_torchrun_two_processes_keep_parameters_identical(div2k, tmp_path):
    h5, val, _ = div2k
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "carn" / "train.py"), "--model", "carn_m", "--group", "4", "--scale", "0", "--cpu",
           "--debug_sync", *_args(h5, val, tmp_path, "ddp", 4)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "ddp"
    r0 = (run / "sync_rank0.txt").read_text().split("\n")
    r1 = (run / "sync_rank1.txt").read_text().split("\n")
    assert len([x for x in r0 if x]) == 4 and r0 == r1
    assert len(set(x.split()[1] for x in r0 if x)) == 4  # the parameters changed every step


def test_finetuning_the_released_carn_m_does_not_damage_it(div2k, tmp_path, carn_m_released, benchmark_dir):
    """200 steps from the released weights at a small learning rate keep Set5 x4 within 0.1 dB; and on the
    loader's patches the released model beats bicubic at every scale (patches aligned, RGB, right range)."""
    h5, _, _ = div2k
    from carn import train
    from carn.sample import load_model
    from srkit.sampler import Predictor, evaluate_folder
    from srkit.train_data import StepBatches
    net, _ = load_model(str(carn_m_released))
    for s in (2, 3, 4):
        hr, lr, _ = StepBatches(h5, (s,), 32, 16, seed=5)[0]
        with torch.no_grad():
            sr_loss = torch.nn.functional.l1_loss(net(lr, s).clamp(0, 1), hr).item()
        bic = torch.nn.functional.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False).clamp(0, 1)
        bic_loss = torch.nn.functional.l1_loss(bic, hr).item()
        assert sr_loss < 0.9 * bic_loss, (s, sr_loss, bic_loss)
    before = evaluate_folder(Predictor(net), benchmark_dir / "Set5", 4, None, torch.device("cpu"), progress=False)
    train.main(["--model", "carn_m", "--group", "4", "--scale", "0", "--pretrained", str(carn_m_released),
                "--lr", "2e-6", "--ckpt_name", "ft", "--ckpt_dir", str(tmp_path), "--train_data_path", str(h5),
                "--valid_data_path", str(benchmark_dir / "Set5"), "--patch_size", "32", "--batch_size", "8",
                "--max_steps", "200", "--print_interval", "200", "--workers", "1"])
    after = float(list(csv.DictReader(open(tmp_path / "ft" / "log.csv")))[-1]["psnr_x4"])
    print(f"Set5 x4: released {before.summary()['psnr']:.3f} dB, after 200 fine-tuning steps {after:.3f} dB")
    assert abs(after - before.summary()["psnr"]) <= 0.1


def test_plot_command(div2k, tmp_path):
    from srkit import plot_log
    log = tmp_path / "log.csv"
    log.write_text("step,loss,lr,psnr_x2,ssim_x2\n" + "".join(
        f"{i},{1 / i},0.001,{30 + i / 10 if i % 5 == 0 else ''},{0.9 if i % 5 == 0 else ''}\n" for i in range(1, 21)))
    out = tmp_path / "plot.png"
    assert plot_log.main([str(log), "--out", str(out)]) == 0
    from PIL import Image
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 500
    assert len(np.unique(np.asarray(img.convert("L")))) > 10  # something was drawn


def test_num_gpu_says_how_to_launch(div2k, tmp_path):
    h5, val, _ = div2k
    from carn import train
    with pytest.raises(SystemExit, match="torchrun --nproc_per_node=4"):
        train.main(["--model", "carn", "--num_gpu", "4", *_args(h5, val, tmp_path, "run", 2)])


def test_keeps_the_last_n_checkpoints(div2k, tmp_path):
    h5, val, _ = div2k
    from carn import train
    args = _args(h5, val, tmp_path, "run", 8)
    args[args.index("--print_interval") + 1] = "2"
    train.main(["--model", "carn_m", "--group", "4", "--keep", "2", *args])
    assert [p.name for p in sorted((tmp_path / "run").glob("step_*.pth.tar"))] == ["step_0000006.pth.tar",
                                                                                  "step_0000008.pth.tar"]
