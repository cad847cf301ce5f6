"""What a new user meets first, tried as one would: a mistyped model name, messages that read as English."""
from __future__ import annotations

import pytest
import torch

from srkit.cli import upscale
from srkit.core import registry
from srkit.core.checkpoint import CheckpointError
from srkit.core.text import a
from srkit.inference.predictor import model_scale_for
from srkit.weights.load import load_model


@pytest.mark.parametrize("given,near", [("carn-m", "carn_m"), ("CARN_M", "carn_m"), ("overnet-x4", "overnet_x4"),
                                        ("./carn_m.pth", "carn_m"), ("no_such_model", None)])
def test_a_mistyped_name_lists_the_released_names_and_the_nearest(given, near, tmp_path, capsys):
    assert upscale.main(["-i", str(tmp_path), "-o", str(tmp_path / "o"), "-n", given, "--cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{given}: no such checkpoint file" in err
    assert "(carn, carn_m, overnet_x2, overnet_x3, overnet_x4)" in err
    assert (f"did you mean {near}?" in err) == (near is not None) and ("did you mean" in err) == (near is not None)
    assert not (tmp_path / "o").exists()


def test_articles():
    assert [a(w) for w in ("OverNet", "CARN / CARN-M", "int", "list", "")] == \
        ["an OverNet", "a CARN / CARN-M", "an int", "a list", "a "]


def test_messages_name_the_family_with_its_article(tmp_path):
    fam = registry.get("overnet")
    ex = fam.examples[0]
    path = tmp_path / "o.pth"
    torch.save(fam.build(ex.arch).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"o\.pth is an OverNet checkpoint: --reduce_upsample does not apply"):
        load_model(str(path), reduce_upsample=True)
    with pytest.raises(ValueError, match=r"^x1 is not an upscaling factor: give an output scale above 1$"):
        model_scale_for(fam, ex.arch, 1)
