"""No command writes onto its own input or onto a verified released weights file.

Every front-end that writes one named file (convert, export, plot-log, report) calls :func:`check_output`
before anything is written: the output may not be a folder, one of the command's inputs (the same file, links
resolved, hard links included), or a file holding released weights (size and sha256 / git blob SHA-1 equal to a
manifest entry's): replacing one breaks every later load by name, and offline it is gone.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from srkit.core.fetch import hashes
from srkit.weights import zoo


class OutputError(ValueError):
    """An output that would replace something the user has; nothing was written."""


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def released_name(path: Path) -> str | None:
    """The manifest name of the released weights ``path`` holds (verified by hash), or None."""
    try:
        if not path.is_file():
            return None
        size = path.stat().st_size
    except OSError:
        return None
    entries = [e for e in zoo.manifest().values() if e.size in (None, size) and (e.sha256 or e.git_blob_sha1)]
    if not entries:
        return None
    got = hashes(path)
    for e in entries:
        if (e.sha256 or got["sha256"]) == got["sha256"] and (e.git_blob_sha1 or got["git_blob_sha1"]) == \
                got["git_blob_sha1"]:
            return e.name
    return None


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), flag: str = "output") -> Path:
    """``out`` as a Path, or an OutputError (one line) if writing it would replace an input, a released
    weights file, or it names a folder or nothing (see the module docstring)."""
    if str(out) == "":
        raise OutputError(f"{flag}: an empty path; give a file name")
    path = Path(out)
    if path.is_dir():
        raise OutputError(f"{path}: a folder; give a file name for the {flag}")
    for src in inputs:
        if str(src) and _same(path, Path(src)):
            raise OutputError(f"{path} is the input {src}: writing it would replace it; choose another {flag}")
    name = released_name(path)
    if name is not None:
        raise OutputError(f"{path} holds the released weights {name!r}: writing it would replace them; choose "
                          f"another {flag}")
    return path
