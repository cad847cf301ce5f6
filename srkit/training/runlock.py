"""The lock of a run folder: one writer at a time, released by the OS when its process dies.

``fcntl.flock`` on ``<run>/.lock``, taken before anything in the folder is read or written and held for the
run's life (under torchrun by rank 0, for the whole job). The file holds the holder's host, PID and start
time while the run is alive, so a second writer can name it; it is emptied when the run ends. A SIGKILLed
holder leaves its line behind, but no lock: the next launch takes it.

The lock belongs to the open file description, so a child forked while it is held (a data-loading worker)
would keep it alive after its parent died; every forked child therefore closes the held descriptors at once.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"
_held: set[int] = set()  # descriptors holding a lock in this process


def _close_in_child() -> None:
    for fd in list(_held):
        try:
            os.close(fd)  # the child's copy only: the parent's lock stays
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class RunLocked(RuntimeError):
    """Another live process holds the run folder; the message names its host and PID."""


class RunLock:
    """``acquire()`` the lock of ``folder`` (creating the folder), ``release()`` it. With ``remove_if_alone``
    a folder the lock created and that holds nothing else is removed on release (a launch that failed at
    set-up leaves no trace)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.path = Path(folder), Path(folder) / LOCK_NAME
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> None:
        """Raises :class:`RunLocked` when a live process holds it; OSError when the folder cannot be written."""
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read(fd)
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunLocked(holder) from None
                raise
            # a releasing holder may have removed the file between our open and our lock: then we hold a lock
            # on a file no one else will open; take the one under the name
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        _held.add(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"host {socket.gethostname()}, PID {os.getpid()}, since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n".encode(), 0)
        except OSError:  # a full disk: not even the holder's line fits
            self.release(remove_if_alone=True)
            raise

    def release(self, remove_if_alone: bool = False) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        _held.discard(fd)
        try:
            if remove_if_alone and self.created and [p.name for p in self.folder.iterdir()] == [LOCK_NAME]:
                self.path.unlink()
                self.folder.rmdir()
            else:
                os.ftruncate(fd, 0)  # no live holder to name
        except OSError:
            pass
        finally:
            os.close(fd)  # releases the lock

    def __del__(self) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 300, 0).decode(errors="replace").strip()
    except OSError:
        return ""
