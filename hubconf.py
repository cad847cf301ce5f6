"""torch.hub entries, generated from the model-family registry: one per released weights file (``carn``,
``carn_m``, ``overnet_x2``, ...) and example, and one per family (``overnet(scale=4)``: the family picks the
variant from the keyword arguments).

    model = torch.hub.load("<owner>/<repo>", "carn_m", pretrained=True)      # or a local clone, source="local"
    sr = model(lr, 2)                                                        # forward(x, scale) as the authors'

``pretrained=True`` fetches the authors' released weights through the manifest (hash-verified; see
srkit.weights.zoo for the cache folder and mirrors). Each entry's docstring names the paper and the license.
"""
from pathlib import Path as _Path

from srkit.core import registry as _registry
from srkit.weights.load import load_model as _load_model

dependencies = ["torch", "numpy", "scipy", "PIL", "tqdm", "adamp", "safetensors"]

if not _registry.families():  # a checkout that is not installed: its family packages, found by their family.py
    _registry.import_families(_Path(__file__).parent)


def _variant(fam, name: str, pretrained: bool):
    if pretrained:
        return _load_model(name, fam)[0]
    example = next((e for e in fam.examples if e.name == name), None)
    weights = next((p for p in fam.pretrained if p.name == name), None)
    arch = dict(example.arch) if example else {"model": fam.models[0], **dict(weights.flags)}
    return fam.build(arch).eval()


def _entry(fam, name: str | None):
    def entry(pretrained: bool = False, **kwargs):
        if name and kwargs:  # a named entry is one variant: a keyword would be silently ignored
            raise TypeError(f"the {name} hub entry takes no arguments besides pretrained ({', '.join(kwargs)} "
                            f"given)")
        return _variant(fam, name or fam.hub_variant(**kwargs), pretrained)
    weights = {p.name: p for p in fam.pretrained}
    license_ = weights[name].license if name in weights else fam.license
    what = f"released weights {name!r}" if name in weights else (
        f"configuration {name!r}" if name else "keyword arguments pick the variant")
    entry.__name__ = entry.__qualname__ = name or fam.name
    entry.__doc__ = (f"{fam.title}, {what}. Paper: {fam.paper}. Weights license: {license_}. "
                     f"forward(x, scale): x is (N, 3, H, W) RGB in [0, 1]. pretrained=True downloads and verifies "
                     f"the released file.")
    return entry


for _fam in _registry.families():
    for _name in [p.name for p in _fam.pretrained] + [e.name for e in _fam.examples]:
        globals().setdefault(_name, _entry(_fam, _name))
    globals().setdefault(_fam.name, _entry(_fam, None))
