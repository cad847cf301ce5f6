"""The typed configuration of a training run (what ``srkit-train`` and the families' ``train.py`` parse into).

The defaults of ``lr``, ``max_steps`` and ``decay`` come from the family's recipe (the authors' code); the
rest are the authors' flags with their defaults. ``RESUME_MUST_MATCH`` are the fields a resumed run must share
with the saved one for the continuation to be bit-exact.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ZERO_GRAD = {
    "fill": "gradients zero-filled between steps, as PyTorch 0.4 did when the released weights were trained: "
            "an idle branch of a multi-scale model keeps getting Adam updates from its moments",
    "free": "gradients freed between steps (today's zero_grad() default): an idle branch stays still",
}
SEED_MAX = 2 ** 64 - 1  # torch.manual_seed's limit; numpy's SeedSequence takes any non-negative integer
PATH_FIELDS = ("ckpt_dir", "train_data_path", "valid_data_path", "pretrained")
# ``--fast``: every option that trades the authors' exact loop for speed (docs/training.md gives each one's cost)
FAST = {"amp": "bf16", "channels_last": True, "fused_adam": True, "cudnn_benchmark": True}
RESUME_MUST_MATCH = ("scale", "patch_size", "batch_size", "seed", "lr", "decay", "loss_fn", "clip", "zero_grad",
                     "channel_order")


@dataclass
class TrainConfig:
    """Every option of a training run. ``arch`` is the complete architecture (``Family.train_arch``)."""
    arch: dict
    scale: int
    ckpt_name: str
    lr: float
    max_steps: int
    decay: int
    ckpt_dir: str = "checkpoint"
    train_data_path: str = "datasets/DIV2K_train.h5"
    valid_data_path: str = "datasets/benchmark/Set5"
    print_interval: int = 1000
    save_interval: int = 1000
    patch_size: int = 64
    batch_size: int = 64
    grad_accum: int = 1
    clip: float = 10.0
    loss_fn: str = "L1"
    num_gpu: int = 1
    resume: str | None = None          # "yes", "auto", "no" or None (auto under torchrun, else no)
    stop_after: int = 0
    dist_timeout: float = 300.0
    pretrained: str | None = None
    keep: int = 3
    weights_format: str = "pth"
    seed: int = 0
    workers: int = 2
    data_ram_gb: float | None = None   # GiB the images may take in shared memory (None: half the free RAM; 0: h5)
    data_on_device: bool = False
    amp: str | None = None
    fast: bool = False                 # the fast options at once (see FAST)
    channels_last: bool = False
    fused_adam: bool = False
    cudnn_benchmark: bool = False
    cpu: bool = False
    zero_grad: str = "fill"
    channel_order: str = "RGB"
    debug_sync: bool = False
    debug_float64: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # what the command line gave besides (recorded only)

    def __post_init__(self) -> None:
        for name in ("print_interval", "save_interval", "keep", "max_steps", "decay", "batch_size", "patch_size",
                     "grad_accum", "num_gpu"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, not {getattr(self, name)}")
        if self.stop_after < 0:
            raise ValueError(f"--stop_after must not be negative, not {self.stop_after}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be above 0, not {self.lr}")
        if not self.clip > 0:
            raise ValueError(f"--clip must be above 0, not {self.clip}")
        if not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"--seed must be a whole number from 0 to {SEED_MAX} (2**64 - 1), not {self.seed}")
        for name in PATH_FIELDS:
            if getattr(self, name) == "":
                raise ValueError(f"--{name} is empty: give a path")
        if self.ckpt_name in ("", ".", "..") or "/" in self.ckpt_name or "\\" in self.ckpt_name:
            raise ValueError(f"--ckpt_name {self.ckpt_name!r} is not a run name: the run goes to "
                             f"<ckpt_dir>/<ckpt_name>/, so give a plain folder name (a path goes in --ckpt_dir)")
        if self.fast:
            for k, v in FAST.items():
                if not getattr(self, k):
                    setattr(self, k, v)
        if self.zero_grad not in ZERO_GRAD:
            raise ValueError(f"--zero_grad is one of {', '.join(ZERO_GRAD)}, not {self.zero_grad!r}")

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "TrainConfig":
        known = cls.fields() - {"extra"}
        return cls(**{k: v for k, v in options.items() if k in known},
                   extra={k: v for k, v in options.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(d.pop("extra"))
        return d
