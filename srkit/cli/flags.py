"""Command-line pieces every front-end shares: the families' architecture flags and checked value types."""
from __future__ import annotations

import argparse
from typing import Callable, Sequence

from srkit.core.registry import Family

INTEGER_SCALE_EPS = 1e-6  # a scale this close to an integer but not equal is a typo or float noise


def add_arch_args(p: argparse.ArgumentParser | argparse._ArgumentGroup, families: Sequence[Family]) -> None:
    """Each family's architecture flags, default None (= read from the checkpoint, or the model's default)."""
    seen = set()
    for fam in families:
        for f in fam.flags:
            if f.name in seen:
                continue
            seen.add(f.name)
            if f.type is bool:
                p.add_argument(f"--{f.name}", action="store_true", default=None, help=f.help)
            else:
                p.add_argument(f"--{f.name}", type=f.type, choices=f.choices, default=None, help=f.help)


def arch_flags_given(args: argparse.Namespace, families: Sequence[Family]) -> dict:
    return {f.name: getattr(args, f.name) for fam in families for f in fam.flags}


def _number(kind: Callable[[str], float], test: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if v != v or v in (float("inf"), float("-inf")) or not test(v):
            raise argparse.ArgumentTypeError(f"{text} {what}")
        return v
    parse.__name__ = kind.__name__
    return parse


positive_int = _number(int, lambda v: v > 0, "must be at least 1")
non_negative_int = _number(int, lambda v: v >= 0, "must not be negative")
positive_float = _number(float, lambda v: v > 0, "must be above 0")


def path_arg(text: str) -> str:
    """A path flag's value: an empty one (``-i ''``, an unset shell variable) is refused rather than taken as
    the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name")
    return text


def name_suffix(text: str) -> str:
    """``--suffix``: text added to a file name's stem, so no path separator and no NUL."""
    if "/" in text or "\\" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} holds a path separator; a suffix is added to file names "
                                         f"(write into another folder with -o)")
    return text


def output_scale(text: str) -> float:
    """A scale above 1; one within rounding of an integer (2.0000001) is refused rather than guessed."""
    v = _number(float, lambda v: v > 1, "is not an upscaling factor: give a scale above 1")(text)
    nearest = round(v)
    if v != nearest and abs(v - nearest) < INTEGER_SCALE_EPS:
        raise argparse.ArgumentTypeError(f"{text} is within rounding of {nearest}: give {nearest}, or a scale "
                                         f"that differs from it by more than {INTEGER_SCALE_EPS:g}")
    return int(v) if v == nearest else v


def model_scale(text: str) -> float:
    """``--scale`` of the sample front-ends: 0 (every served scale) or an output scale."""
    if text.strip() in ("0", "0.0"):
        return 0
    return output_scale(text)
