"""Model families: the one interface through which the engine meets a network, and the registry that finds them.

A family (a paper's models, one top-level package of the repository) is a :class:`Family` object declared in
its own package and registered with :func:`register`. Installed families are found through the
``srkit.families`` entry points (``pyproject.toml``); :func:`import_families` finds the family packages of a
checkout that is not installed (torch.hub). The engine never imports a family package by name and never tests
for a family's key names. Everything it does with a model goes through the :class:`Family` contract:

- checkpoints: ``infer_flags`` (the arch from the authors' released files), ``build``, ``describe``,
  ``arch_fields`` (the types every saved arch is checked against);
- released weights: ``pretrained`` (:class:`Pretrained`: file, URL, hashes, license, flags), which the model
  zoo (``srkit.weights.zoo``) and the torch.hub entries (``hubconf.py``) are generated from;
- the front-ends: ``flags``, ``served_scales``, ``default_scales``, ``check_scale``, ``run_name``;
- training: ``train_arch``, ``train_scales``, the :class:`Recipe` (optimizer, lr, schedule, loss), ``step_loss``;
- the complexity report and the tests: ``examples``.

*Architecture flags* ("arch") are a plain dict of the keyword arguments ``build`` takes, e.g.
``{"model": "...", "multi_scale": True, "scale": None, "group": 4}``. Weights written by this project carry
them (with ``"family"``), so loading never guesses.

What the fast inference path (``srkit.inference.fast``) may rewrite is declared by the model and its blocks:
see :class:`srkit.core.layers.FastPath` and :class:`srkit.core.layers.Fusion`.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from srkit.core.text import a

ENTRY_POINT_GROUP = "srkit.families"


class RegistryError(LookupError):
    """An unknown family, a clash of names, or a plug-in that failed to load."""


class ArchError(ValueError):
    """An architecture dict that does not fit its family's declared fields; the message names the field."""


@dataclass(frozen=True)
class ArchFlag:
    """A command-line architecture flag (``--name``). ``type`` is int, float, str or bool (a switch)."""
    name: str
    type: type
    help: str
    choices: tuple | None = None


def step_decay(lr: float, decay: int, step: int) -> float:
    """The learning rate of the step with 0-based index ``step``, halved every ``decay`` steps as the authors'
    loops do it: they set the rate *after* step i from i (``lr * 0.5 ** (i // decay)``), so step 0 runs at
    ``lr`` and step i >= 1 at ``lr * 0.5 ** ((i - 1) // decay)``: the first halved step is index decay + 1."""
    return lr * 0.5 ** (max(step - 1, 0) // decay)


@dataclass(frozen=True)
class Recipe:
    """The authors' training recipe.

    ``optimizer(params, lr)``; ``lr``, ``max_steps`` and ``decay`` are the front-end's defaults;
    ``schedule(lr, decay, step)`` is the rate of a step (0-based); ``loss`` names a loss of
    ``srkit.training.step.LOSSES``; ``scales_per_step``: "one" draws one of the training scales per step
    (every step one batch), "all" gives every step one batch per scale and sums their losses."""
    optimizer: Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]
    lr: float
    max_steps: int
    decay: int
    loss: str = "L1"
    scales_per_step: str = "one"
    schedule: Callable[[float, int, int], float] = step_decay


@dataclass(frozen=True)
class Example:
    """A named reference configuration (what the papers report), used by the complexity report and tests."""
    name: str
    arch: dict
    scales: tuple[int, ...]
    paper_params_k: int | None = None  # the paper's parameter count, in thousands as printed (srkit-complexity)


@dataclass(frozen=True)
class Pretrained:
    """Released weights: the file under its release name, where it is published, how to verify it (size,
    sha256 and / or git blob SHA-1; at least one hash), its license, and the arch flags it was trained with."""
    name: str                       # what users type (``--ckpt_path NAME``, the torch.hub entry)
    file: str                       # the release's file name
    url: str
    license: str
    flags: Mapping[str, Any]
    size: int | None = None
    sha256: str | None = None
    git_blob_sha1: str | None = None

    def expect(self) -> dict[str, Any]:
        """What a downloaded copy must match."""
        return {k: v for k, v in (("size", self.size), ("sha256", self.sha256),
                                  ("git_blob_sha1", self.git_blob_sha1)) if v is not None}


_NONE = type(None)


class Family:
    """The interface a model family implements. Subclasses set the class attributes and override ``build``,
    ``infer_flags``, ``describe``, ``served_scales`` and ``train_arch``; the other methods have defaults that
    fit a model serving fixed integer scales."""

    name: str = ""                       # registry key and the name of its front-end package
    title: str = ""                      # for messages: the models' names as the paper writes them
    paper: str = ""
    license: str = ""
    commercial_use: bool = False         # the released weights' license permits it (MIT, Apache): integrations
    models: tuple[str, ...] = ()         # values of arch["model"]
    flags: tuple[ArchFlag, ...] = ()     # architecture flags of the front-ends (sample and train)
    extra_fields: Mapping[str, type | tuple[type, ...]] = {}  # arch fields that are not flags, with their types
    train_scales: tuple[int, ...] = (2, 3, 4)  # ``--scale 0`` trains all of them
    recipe: Recipe
    examples: tuple[Example, ...] = ()
    pretrained: tuple[Pretrained, ...] = ()

    # ---- checkpoints ---------------------------------------------------------------------------------
    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        raise NotImplementedError

    def infer_flags(self, sd: Mapping[str, torch.Tensor]) -> dict | None:
        """The arch implied by a state dict's keys and shapes; None if it is not this family's (also when a
        weight it reads has an unexpected rank or a zero size: never an exception)."""
        raise NotImplementedError

    def describe(self, arch: Mapping[str, Any]) -> str:
        """The arch as the flags a user would type, for messages."""
        raise NotImplementedError

    def arch_fields(self) -> dict[str, tuple[type, ...]]:
        """Every field an arch may hold, with the types its value may have (None: not set)."""
        fields: dict[str, tuple[type, ...]] = {"model": (str,)}
        for f in self.flags:
            fields[f.name] = (f.type, _NONE)
        for k, t in self.extra_fields.items():
            fields[k] = t if isinstance(t, tuple) else (t,)
        return fields

    def check_arch(self, arch: Any) -> dict:
        """``arch`` (read from a file) as a validated dict, or :class:`ArchError` naming the field: a value of
        another type than declared (``"4"`` or ``4.0`` for an int, ``1`` for a bool), an unknown field, a value
        outside the flag's choices, an unknown model."""
        if not isinstance(arch, Mapping):
            raise ArchError(f"'arch' is {a(type(arch).__name__)}, not an object of architecture flags")
        fields, choices = self.arch_fields(), {f.name: f.choices for f in self.flags if f.choices}
        out = {}
        for k, v in arch.items():
            if k == "family":
                continue
            if k not in fields:
                raise ArchError(f"field {k!r} is not an architecture flag of {self.title} "
                                f"({', '.join(sorted(fields))})")
            if not _is_a(v, fields[k]):
                want = " or ".join("null" if t is _NONE else t.__name__ for t in fields[k])
                raise ArchError(f"field {k!r} is {_show(v)}, expected {want}")
            if k in choices and v is not None and v not in choices[k]:
                raise ArchError(f"field {k!r} is {v!r}, expected one of {', '.join(map(str, choices[k]))}")
            out[k] = v
        if self.models and out.get("model") is not None and out["model"] not in self.models:
            raise ArchError(f"field 'model' is {out['model']!r}, expected one of {', '.join(self.models)}")
        return out

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
        return f"this model serves {', '.join(f'x{s}' for s in served)}, not x{scale_text(scale)}"

    def run_name(self, arch: Mapping[str, Any]) -> str:
        """A name for this model's outputs and runs (e.g. the default ``--ckpt_name``)."""
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

    # ---- torch.hub -----------------------------------------------------------------------------------
    def hub_variant(self, **kwargs: Any) -> str:
        """The pretrained (or example) name the family-named hub entry ``<family>(**kwargs)`` stands for."""
        if kwargs:
            raise TypeError(f"the {self.name} hub entry takes no arguments besides pretrained "
                            f"({', '.join(kwargs)} given)")
        names = [p.name for p in self.pretrained] or [e.name for e in self.examples]
        return names[0]


def scale_text(scale: float) -> str:
    """A scale as messages print it: short (``4``, ``3.5``) where that is exact, else every digit
    (``4.0000001``), so that a scale just off a served one never reads as that scale."""
    short = f"{scale:g}"
    return short if float(short) == float(scale) else repr(float(scale))


def _is_a(v: Any, types: tuple[type, ...]) -> bool:
    # exact types: bool is not an int, 4.0 is not an int, "4" is not an int
    if isinstance(v, float) and float in types:
        return math.isfinite(v)
    return any(type(v) is t for t in types)


def _show(v: Any) -> str:
    text = repr(v)
    return f"{text[:40]}..." if len(text) > 43 else text


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


def import_families(root: str | Path) -> list[Family]:
    """Register the family packages of a source tree that is not installed (a torch.hub checkout): every
    top-level package of ``root`` with a ``family.py`` defining ``FAMILY``. Returns what it registered."""
    root = Path(root).resolve()
    found = []
    for module_file in sorted(root.glob("*/family.py")):
        if not (module_file.parent / "__init__.py").is_file():
            continue
        name = f"{module_file.parent.name}.family"
        spec = importlib.util.find_spec(module_file.parent.name)
        if spec is None or Path(spec.origin or "").resolve().parent != module_file.parent:
            # torch.hub imports hubconf with its checkout importable; elsewhere the caller must make it so
            raise RegistryError(f"{module_file.parent} is not importable as {module_file.parent.name!r} "
                                f"(is {root} on the module search path?)")
        module = importlib.import_module(name)
        fam = getattr(module, "FAMILY", None)
        if isinstance(fam, Family):
            found.append(register(fam))
    return found


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
    """The family that serves ``arch["model"] == model_name``."""
    for fam in families():
        if model_name in fam.models:
            return fam
    raise RegistryError(f"no registered family serves model {model_name!r}")


def pretrained() -> dict[str, tuple[Family, Pretrained]]:
    """Every released weights entry of every registered family, by name."""
    out: dict[str, tuple[Family, Pretrained]] = {}
    for fam in families():
        for p in fam.pretrained:
            if p.name in out:
                raise RegistryError(f"released weights {p.name!r} are declared by both {out[p.name][0].name} "
                                    f"and {fam.name}")
            out[p.name] = (fam, p)
    return out


def detect(sd: Mapping[str, torch.Tensor]) -> tuple[Family, dict] | None:
    """The one family whose ``infer_flags`` recognises ``sd``, with the flags; None if no family does."""
    hits = []
    for fam in families():
        try:
            arch = fam.infer_flags(sd)
        except (IndexError, ZeroDivisionError, ValueError, TypeError, AttributeError):
            arch = None  # a weight of an unexpected rank or size: not this family's layout
        if arch is not None:
            hits.append((fam, arch))
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
