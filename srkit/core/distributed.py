"""Process groups under torchrun or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT: one process per GPU (NCCL, bound to its GPU at init) or per CPU slot (gloo), with a timeout, so a
lost peer is an error and not a hang (gloo's own default is 30 minutes)."""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


class ProcessGroupError(RuntimeError):
    """The process group could not be set up; the message names the rank and the cause."""


def setup_distributed(cpu: bool, timeout_s: float = 300) -> tuple[int, int, torch.device]:
    """(rank, world, device): joins the process group when launched by torchrun or another launcher
    (WORLD_SIZE > 1); a LOCAL_RANK with no GPU here is one line before anything is joined."""
    world = env_int("WORLD_SIZE", 1, 1)
    if world > 1:  # what torchrun sets; a malformed one is named before torch reads it
        env_int("RANK", 0, 0, world - 1)
        env_int("LOCAL_RANK", 0, 0)
        env_int("MASTER_PORT", 29500, 1, 65535)
        env_int("TORCHELASTIC_RESTART_COUNT", 0, 0)
    use_cuda = torch.cuda.is_available() and not cpu
    local = env_int("LOCAL_RANK", 0, 0) if world > 1 else 0
    if use_cuda:
        _check_gpu(local)
        torch.cuda.set_device(local)  # before the group: NCCL's set-up allocates on the current device
    if world > 1:
        if not dist.is_initialized():
            try:
                _init("nccl" if use_cuda else "gloo", datetime.timedelta(seconds=timeout_s),
                      torch.device("cuda", local) if use_cuda else None)
            except Exception as e:  # noqa: BLE001 - any set-up failure becomes one line
                raise ProcessGroupError(f"could not join the process group of {world} processes (as rank "
                                        f"{os.environ.get('RANK')}) within {timeout_s:g} s: "
                                        f"{str(e).splitlines()[0]}") from None
        rank = dist.get_rank()
    else:
        rank = 0
    return rank, world, torch.device("cuda", local) if use_cuda else torch.device("cpu")


def env_int(name: str, default: int, low: int, high: int | None = None) -> int:
    """The whole number in environment variable ``name`` (``default`` when unset), or ProcessGroupError naming
    the variable and its value."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        want = f"a whole number from {low} to {high}" if high is not None else f"a whole number of at least {low}"
        raise ProcessGroupError(f"environment variable {name}={text!r} is not {want} (torchrun sets it; unset "
                                f"WORLD_SIZE, RANK, LOCAL_RANK and MASTER_PORT to run in one process)")
    return value


def _check_gpu(local: int) -> None:
    """A process whose LOCAL_RANK names no GPU here fails before it joins anything (not with CUDA's "invalid
    device ordinal" deep in the first kernel)."""
    count = torch.cuda.device_count()
    if local >= count:
        raise ProcessGroupError(f"rank {os.environ.get('RANK', 0)} wants cuda:{local} (LOCAL_RANK={local}) but this "
                                f"machine has {count} GPU{'s' if count != 1 else ''}: start at most {count} "
                                f"process{'es' if count != 1 else ''} per machine (torchrun --nproc_per_node="
                                f"{count}), or add --cpu")


def _init(backend: str, timeout: datetime.timedelta, device: torch.device | None = None) -> None:
    """init_process_group, bound to ``device`` (NCCL: its communicator is made there at once, not guessed
    from the current device later). Under torchrun on its store, under a prefix per restart attempt: a
    restarted group must not read the addresses its killed predecessor left in the store (gloo then connects
    to a dead peer)."""
    bind = {} if device is None else {"device_id": device}
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        dist.init_process_group(backend, timeout=timeout, **bind)
        return
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    dist.init_process_group(backend, store=dist.PrefixStore(f"srkit/attempt{attempt}/", store), rank=rank,
                            world_size=world, timeout=timeout, **bind)


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
