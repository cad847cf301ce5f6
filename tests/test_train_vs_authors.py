"""The project's trainer against the authors' own training loops, step by step (../shared/reference/
train_steps_*.pt: their loops run in float64 from known weights on known batches; see ../shared/README.md).

The project's real Trainer (its optimizer, loss, clipping and schedule from the family's recipe, nothing copied
here) runs the same 30 batches in float64 (--debug_float64), handed in through its public ``batches=`` source.
Every step's learning rate must equal the authors', every loss and gradient norm must agree, and the final
weights must match within TRAIN_REF_ATOL (TRAIN_REF_CLIP_ATOL for the file whose first gradient norm, 4.5e5,
amplifies rounding). The CARN-M files also hold the same loop with PyTorch 0.4's zero-filled gradients, the
semantics the released weights were trained with and the trainer's default (--zero_grad fill); today's freed
gradients (--zero_grad free) must match the plain loop.
"""
from __future__ import annotations

import pytest
import torch

from conftest import load_ref
from srkit.core import registry
from srkit.core.tolerances import TRAIN_REF_ATOL, TRAIN_REF_CLIP_ATOL
from srkit.training.config import TrainConfig
from srkit.training.trainer import Trainer

CASES = [("train_steps_carn_m_ms.pt", "fill"), ("train_steps_carn_m_ms.pt", "free"),
         ("train_steps_carn_m_ms_clip.pt", "fill"), ("train_steps_carn_m_ms_clip.pt", "free"),
         ("train_steps_carn_x2.pt", "fill"), ("train_steps_carn_x2.pt", "free"),
         ("train_steps_overnet_x2.pt", "fill")]


def _arch(ref: dict) -> tuple[dict, int]:
    a = ref["arch"]
    if ref["family"] == "overnet":
        return {"model": "overnet", "upscale": a["upscale"], "group": a["group"]}, a["scale"]
    multi = a["multi_scale"]
    return ({"model": a["model"], "multi_scale": multi, "scale": None if multi else a["scale"], "group": a["group"],
             "reduce_upsample": False}, 0 if multi else a["scale"])


def replay(name: str, zero_grad: str, tmp_path) -> tuple[dict, Trainer, list]:
    ref = load_ref(name)
    hp = ref["hparams"]
    arch, scale = _arch(ref)
    init = tmp_path / "init.pth"
    torch.save({k: v.clone() for k, v in ref["init"].items()}, init)
    cfg = TrainConfig(arch=arch, scale=scale, ckpt_name="ref", ckpt_dir=str(tmp_path), lr=hp["lr"],
                      max_steps=hp["steps"], decay=hp["decay"], clip=hp["clip"], batch_size=hp["batch"],
                      patch_size=hp["patch"], valid_data_path=None, pretrained=str(init), workers=0, cpu=True,
                      debug_float64=True, zero_grad=zero_grad)
    # the float64 tensors their loop consumed: ToTensor's float32 k/255, cast (the trainer casts to float64)
    batches = [[(b["hr"].float() / 255, b["lr"].float() / 255, int(b["scale"]))] for b in ref["batches"]]
    trainer = Trainer(registry.get(ref["family"]), cfg, batches=batches)
    records = trainer.train()
    return ref, trainer, records


@pytest.mark.parametrize("name,zero_grad", [  # the quick tier keeps the default semantics of the multi-scale case
    pytest.param(n, z, id=f"{n[12:-3]}-{z}", marks=() if (n, z) == CASES[0] else pytest.mark.slow) for n, z in CASES])
def test_the_trainer_retraces_the_authors_loop(name, zero_grad, tmp_path):
    ref, trainer, records = replay(name, zero_grad, tmp_path)
    filled = zero_grad == "fill" and "final_zero_fill" in ref
    final = ref["final_zero_fill"] if filled else ref["final"]
    losses = ref["loss_per_step_zero_fill"] if filled else ref["loss_per_step"]
    atol = TRAIN_REF_CLIP_ATOL if "clip" in name else TRAIN_REF_ATOL
    assert [r.lr for r in records] == ref["lr_per_step"]  # the schedule, step by step, exactly
    for i, (r, want) in enumerate(zip(records, losses)):  # the first step that is off says where it starts
        assert r.loss == pytest.approx(want, rel=atol, abs=atol), f"step {i}: loss {r.loss!r} vs {want!r}"
    if not filled:  # the gradient norms are recorded for the plain loop
        for i, (r, want) in enumerate(zip(records, ref["grad_norm_per_step"])):
            assert r.grad_norm == pytest.approx(want, rel=atol), f"step {i}: gradient norm"
    got = trainer.model.state_dict()
    diff = max((got[k].double() - v).abs().max().item() for k, v in final.items())
    print(f"{name} --zero_grad {zero_grad}: max |weight - authors'| after {len(records)} steps {diff:.1e}")
    assert diff <= atol
    assert len(records) == ref["hparams"]["steps"]


@pytest.mark.slow
def test_the_other_gradient_semantics_is_measurably_different(tmp_path):
    """The two semantics differ by far more than the tolerance on CARN-M (so the test above can tell them
    apart): freed gradients leave the idle upsampling branches where zero-filled ones move them."""
    ref, trainer, _ = replay("train_steps_carn_m_ms.pt", "free", tmp_path)
    got = trainer.model.state_dict()
    diff = max((got[k].double() - v).abs().max().item() for k, v in ref["final_zero_fill"].items())
    assert diff > 1e3 * TRAIN_REF_ATOL, diff
