"""What ends a training run early; the command line turns each into one line and an exit status."""
from __future__ import annotations


class TrainingError(RuntimeError):
    """A run that cannot start or go on; the message says why and what to do (exit 2)."""


class Diverged(TrainingError):
    """A non-finite loss, gradient or weight; nothing non-finite was saved (exit 3)."""


class Stopped(TrainingError):
    """Stopped by a signal (pre-emption, Ctrl-C) after checkpointing the step reached (exit 128 + signum)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class PeerFailed(TrainingError):
    """Another rank failed; the message names it, its step and its own error line (exit 2)."""


class PeerLost(TrainingError):
    """Another rank ended or became unreachable in the middle of a collective (exit 2)."""
