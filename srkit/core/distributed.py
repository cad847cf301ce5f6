"""Process groups under torchrun: one process per GPU (NCCL) or per CPU slot (gloo), with a timeout, so a
lost peer is an error and not a hang (gloo's own default is 30 minutes)."""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


class ProcessGroupError(RuntimeError):
    """The process group could not be set up; the message names the rank and the cause."""


def setup_distributed(cpu: bool, timeout_s: float = 300) -> tuple[int, int, torch.device]:
    """(rank, world, device): joins the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = env_int("WORLD_SIZE", 1, 1)
    if world > 1:  # what torchrun sets; a malformed one is named before torch reads it
        env_int("RANK", 0, 0, world - 1)
        env_int("LOCAL_RANK", 0, 0)
        env_int("MASTER_PORT", 29500, 1, 65535)
        env_int("TORCHELASTIC_RESTART_COUNT", 0, 0)
    use_cuda = torch.cuda.is_available() and not cpu
    if world > 1:
        if not dist.is_initialized():
            try:
                _init("nccl" if use_cuda else "gloo", datetime.timedelta(seconds=timeout_s))
            except Exception as e:  # noqa: BLE001 - any set-up failure becomes one line
                raise ProcessGroupError(f"could not join the process group of {world} processes (as rank "
                                        f"{os.environ.get('RANK')}) within {timeout_s:g} s: "
                                        f"{str(e).splitlines()[0]}") from None
        rank, local = dist.get_rank(), env_int("LOCAL_RANK", 0, 0)
    else:
        rank, local = 0, 0
    if use_cuda:
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


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


def _init(backend: str, timeout: datetime.timedelta) -> None:
    """init_process_group on torchrun's store, under a prefix per restart attempt: a restarted group must not
    read the addresses its killed predecessor left in the store (gloo then connects to a dead peer)."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        dist.init_process_group(backend, timeout=timeout)
        return
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    dist.init_process_group(backend, store=dist.PrefixStore(f"srkit/attempt{attempt}/", store), rank=rank,
                            world_size=world, timeout=timeout)


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
