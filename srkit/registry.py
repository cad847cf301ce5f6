"""Model families: the one interface through which the engine meets a network, and the registry that finds them.

A family (CARN and CARN-M are one, OverNet another) is a :class:`Family` object declared in its own package
and registered with :func:`register`. Installed families are found through the ``srkit.families`` entry
points (``pyproject.toml``), so the engine never imports a family package and never tests for a family's key
names. Everything the engine does with a model goes through these methods: loading a checkpoint
(``infer_flags``, ``build``, ``describe``), the sample and train front-ends (``flags``, ``served_scales``,
``check_scale``, ``train_arch``, ``recipe``), the complexity report and the tests (``examples``).

*Architecture flags* ("arch") are a plain dict of the keyword arguments ``build`` takes, e.g.
``{"model": "carn_m", "multi_scale": True, "scale": None, "group": 4, "reduce_upsample": False}``. Weights
written by this project carry them (with ``"family"``), so loading never guesses; ``infer_flags`` reads them
back from the shapes of the authors' released files.

What the fast inference path needs is declared on the modules themselves (``srkit.fast``): a model names the
conv whose output its frozen ``add_mean`` shifts (``exit_conv``), blocks declare ``relu_of_conv`` /
``relu_of_residual``, weight-normalized convs are ``nn.Conv2d`` subclasses with ``effective_weight()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

ENTRY_POINT_GROUP = "srkit.families"


class RegistryError(LookupError):
    """An unknown family, a clash of names, or a plug-in that failed to load."""


@dataclass(frozen=True)
class ArchFlag:
    """A command-line architecture flag (``--name``). ``type`` is int, float, str or bool (a switch)."""
    name: str
    type: type
    help: str
    choices: tuple | None = None


@dataclass(frozen=True)
class Recipe:
    """The authors' training recipe. ``scales_per_step``: "one" draws one of the training scales per step
    (CARN), "all" gives every step one batch per scale and sums their losses (OverNet's multi-scale loss)."""
    optimizer: Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]
    lr: float
    max_steps: int
    decay: int
    loss: str = "L1"
    scales_per_step: str = "one"


@dataclass(frozen=True)
class Example:
    """A named reference configuration (what the papers report), used by the complexity report and tests."""
    name: str
    arch: dict
    scales: tuple[int, ...]


class Family:
    """The interface a model family implements. Subclasses set the class attributes and override ``build``,
    ``infer_flags`` and ``describe``; the other methods have defaults that fit a model serving fixed scales."""

    name: str = ""                       # registry key and the name of its front-end package
    title: str = ""                      # for messages, e.g. "CARN / CARN-M"
    paper: str = ""
    license: str = ""
    models: tuple[str, ...] = ()         # values of arch["model"]
    flags: tuple[ArchFlag, ...] = ()     # architecture flags of the front-ends (sample and train)
    train_scales: tuple[int, ...] = (2, 3, 4)  # ``--scale 0`` trains all of them
    recipe: Recipe
    examples: tuple[Example, ...] = ()

    # ---- checkpoints ---------------------------------------------------------------------------------
    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        raise NotImplementedError

    def infer_flags(self, sd: Mapping[str, torch.Tensor]) -> dict | None:
        """The arch implied by a state dict's keys and shapes; None if it is not this family's."""
        raise NotImplementedError

    def describe(self, arch: Mapping[str, Any]) -> str:
        """The arch as the flags a user would type, for messages."""
        raise NotImplementedError

    # ---- scales --------------------------------------------------------------------------------------
    def served_scales(self, arch: Mapping[str, Any]) -> tuple[int, ...]:
        """The integer scales this model is evaluated at (``--scale 0``)."""
        raise NotImplementedError

    def default_scales(self, arch: Mapping[str, Any]) -> tuple[float, ...]:
        """What the sample front-end runs when ``--scale`` is omitted."""
        return tuple(float(s) for s in self.served_scales(arch))

    def check_scale(self, arch: Mapping[str, Any], scale: float) -> str | None:
        """None if the model can run at ``scale``, else why not."""
        served = self.served_scales(arch)
        if scale in served:
            return None
        return f"this model serves {', '.join(f'x{s}' for s in served)}, not x{scale:g}"

    def run_name(self, arch: Mapping[str, Any]) -> str:
        """The folder name of this model's outputs (``<sample_dir>/<run_name>/``)."""
        return str(arch.get("model", self.name))

    # ---- training ------------------------------------------------------------------------------------
    def train_arch(self, scale: int, given: Mapping[str, Any]) -> dict:
        """The complete arch to train for ``--scale`` (0 = all of ``train_scales``) from the flags the user
        gave (None = not given; per-model defaults follow the chosen model). Raises ValueError."""
        raise NotImplementedError

    def step_loss(self, net: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor, int]],
                  loss_fn: nn.Module) -> torch.Tensor:
        """Loss of one training step from its (hr, lr, scale) batches: the sum over them."""
        return sum(loss_fn(net(lr, s), hr) for hr, lr, s in batches)


@dataclass
class _Registry:
    families: dict[str, Family] = field(default_factory=dict)
    discovered: bool = False


_REG = _Registry()


def register(family: Family) -> Family:
    """Add ``family`` (idempotent for the same object; another object under a taken name is an error)."""
    if not family.name:
        raise RegistryError(f"{type(family).__name__} has no name")
    old = _REG.families.get(family.name)
    if old is not None and old is not family:
        raise RegistryError(f"model family {family.name!r} is already registered by {type(old).__module__}")
    _REG.families[family.name] = family
    return family


def unregister(name: str) -> None:
    _REG.families.pop(name, None)


def _discover() -> None:
    if _REG.discovered:
        return
    _REG.discovered = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in is named, not hidden
            raise RegistryError(f"model family plug-in {ep.name!r} ({ep.value}) failed to load: "
                                f"{type(e).__name__}: {e}") from e
        register(obj)


def families() -> list[Family]:
    """Every registered family (installed plug-ins first, then those registered in this process)."""
    _discover()
    return list(_REG.families.values())


def get(name: str) -> Family:
    _discover()
    try:
        return _REG.families[name]
    except KeyError:
        known = ", ".join(_REG.families) or "none (install the project: pip install -e .)"
        raise RegistryError(f"unknown model family {name!r}; registered: {known}") from None


def family_of_model(model_name: str) -> Family:
    """The family that serves ``arch["model"] == model_name`` (e.g. "carn_m")."""
    for fam in families():
        if model_name in fam.models:
            return fam
    raise RegistryError(f"no registered family serves model {model_name!r}")


def detect(sd: Mapping[str, torch.Tensor]) -> tuple[Family, dict] | None:
    """The one family whose ``infer_flags`` recognises ``sd``, with the flags; None if no family does."""
    hits = [(fam, arch) for fam in families() if (arch := fam.infer_flags(sd)) is not None]
    if len(hits) > 1:
        raise RegistryError(f"state dict claimed by several families: {', '.join(f.name for f, _ in hits)}")
    return hits[0] if hits else None


def describe_any(sd: Mapping[str, torch.Tensor]) -> str:
    """What a state dict looks like, for mismatch messages."""
    hit = detect(sd)
    if hit is None:
        return "not a checkpoint of any registered model family"
    fam, arch = hit
    return f"{fam.title}: {fam.describe(arch)}"
