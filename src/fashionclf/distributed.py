"""Data-parallel training over the processes torchrun starts: gloo on CPU, NCCL on CUDA, one machine or several.

Every process draws the same seeded order and augmentation of each global batch and trains on its own contiguous
slice of it; DistributedDataParallel averages the gradients. --batch-size stays the global batch, so a run matches
one process with the same settings up to float rounding, BatchNorm aside: on CPU each process normalises its slice
with the slice's own statistics (SyncBatchNorm needs CUDA).

Outside torchrun (WORLD_SIZE unset or 1) every helper here is the identity, and nothing is initialised.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fashionclf.errors import FashionClfError

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def launched() -> bool:
    """Whether this process is one of several that torchrun started (read from torchrun's environment variables)."""
    return world_size() > 1


def is_main() -> bool:
    """Rank 0 alone writes the run directory, logs and shows progress."""
    return rank() == 0


def backend() -> str | None:
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def describe() -> str:
    """For the log: how many processes train, or nothing in a single process."""
    return f", {world_size()} processes ({backend()})" if launched() else ""


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the duration; yields this process's device (cuda:LOCAL_RANK on CUDA)."""
    if not launched():
        yield device
        return
    cuda = device.type == "cuda"
    if cuda:  # one GPU per process, whatever --device named
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    try:
        # No process goes on before all have joined, so each has checked the run directory before rank 0 writes it.
        dist.barrier()
        yield device
    finally:
        dist.destroy_process_group()


def check_batches(images: int, batch_size: int) -> None:
    """Refuse a split of the batches that would leave a process without images, before any process starts."""
    processes = world_size()
    if batch_size % processes:
        raise FashionClfError(f"--batch-size {batch_size} is not divisible by the {processes} processes")
    if 0 < images % batch_size < processes:
        raise FashionClfError(
            f"the last batch of {images} training images in batches of {batch_size} is smaller than the number of "
            f"processes ({processes}); change --batch-size or --validation-size"
        )


def local_part(batch: torch.Tensor) -> torch.Tensor:
    """This process's contiguous slice of a global batch (sizes differ by one at most, in the last batch)."""
    return batch.tensor_split(world_size())[rank()]


def loss_weight(local: int, total: int) -> float:
    """The factor on this process's mean loss that makes DDP's average of the processes' gradients the gradient of
    the mean over the whole batch, also when the last batch does not split evenly (1.0 in a single process)."""
    return local * world_size() / total


def batch_totals(weighted_loss: torch.Tensor, correct: torch.Tensor) -> tuple[float, int]:
    """The mean loss over the global batch and its number of correct predictions, the same in every process (so a
    diverging loss stops all of them alike)."""
    if not launched():
        return weighted_loss.item(), int(correct.item())
    totals = torch.stack([weighted_loss.detach().double(), correct.double()])
    dist.all_reduce(totals)
    return totals[0].item() / world_size(), int(totals[1].item())


def from_main(compute: Callable[[], T]) -> T:
    """compute() run by rank 0 alone and its result handed to every process: validation uses rank 0's BatchNorm
    statistics, those it saves, and every process then agrees on the best epoch."""
    if not launched():
        return compute()
    result = [compute() if is_main() else None]
    dist.broadcast_object_list(result, src=0)
    return cast(T, result[0])  # every process now holds rank 0's result


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Under torchrun on CUDA, BatchNorm normalises with the statistics of the whole batch across the GPUs, as one
    process would; its state_dict keys stay those of BatchNorm, so checkpoints load anywhere."""
    if launched() and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def synced_unless(deferred: bool, network: nn.Module) -> AbstractContextManager:
    """Around a part of a batch: DDP all-reduces the gradients after each backward unless `deferred`, so that the
    parts of a --micro-batch step, all but the last, keep theirs local and the step communicates once."""
    if deferred and isinstance(network, DistributedDataParallel):
        return network.no_sync()
    return nullcontext()


def parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """What the training step calls: under torchrun a DistributedDataParallel wrapper of `model`, which averages the
    gradients across processes, else `model` itself. Checkpoints save `model`, so their keys have no prefix."""
    if not launched():
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
