"""Atomic writes: a file appears under its final name complete, or not at all.

Everything the project writes (checkpoints, weights, images, CSVs, JSON, reports, downloads) goes through
:func:`atomic_write`: the content is written to a unique temporary file beside the target (``<name>.<random>.tmp``),
flushed, given the user's umask (``mkstemp`` makes it 0600), then renamed over the target. A failure removes
the temporary file and leaves the target as it was; a full disk is named as the cause.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

TMP_SUFFIX = ".tmp"  # run folders remove orphans of killed writes by this suffix


class DiskFullError(OSError):
    """No space left on the device; the message names the file and the free bytes."""


def umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status); 0o022 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _disk_full(e: BaseException, folder: Path) -> bool:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    try:  # torch.save reports a failed write as "unexpected pos N vs M"
        return "unexpected pos" in str(e) and shutil.disk_usage(folder).free < 1 << 26
    except OSError:
        return False


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], fsync: bool = False) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it to ``path``. ``fsync``:
    flush it to the disk first (checkpoints: a crash right after the rename must not leave an empty file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if _disk_full(e, path.parent):
            free = shutil.disk_usage(path.parent).free
            raise DiskFullError(errno.ENOSPC, f"no space left on the device writing {path} "
                                              f"({free:,} bytes free)") from None
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` (UTF-8) to ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` to ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
