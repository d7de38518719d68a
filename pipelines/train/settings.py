"""One training set-up for a Ray Train worker and a Tune trial alike: the process's threads and
seeds, the group's strategy, and how many steps make an epoch and the run."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from pipelines.config import TrainConfig, cpu_threads
from pipelines.train.strategy import Strategy


@dataclass(frozen=True)
class LoopSettings:
    """How one process trains; equal on every rank of a group except `rank`."""

    train: TrainConfig
    strategy: Strategy  # how the group shares the model (pipelines/train/strategy.py)
    rank: int
    world_size: int
    device: torch.device
    steps_per_epoch: int
    total_steps: int

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


def set_up_process(train: TrainConfig, rank: int, cpus: float, device: torch.device) -> None:
    """Threads to match the CPUs Ray gave the process (more would over-subscribe a small node),
    a seed per rank, and TF32 matmuls on GPUs."""
    torch.set_num_threads(cpu_threads(cpus))
    torch.manual_seed(train.seed * 1000 + rank)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


LANES_PER_WORKER = 8  # the default lanes: every worker of the largest group reads lanes of its own


def data_lanes(train: TrainConfig, world: int, recorded: int | None) -> int:
    """The lanes of the data order (data_prep.sample_order): those a resumed run's checkpoint was
    written with (`recorded`), else `train.lanes`, else 8 per worker of the largest group the
    run may have (an elastic run's maximum, not the size it happens to start at)."""
    if recorded is not None:
        return recorded
    return train.lanes or LANES_PER_WORKER * max(world, train.max_workers)


def loop_settings(
    train: TrainConfig, strategy: Strategy, rank: int, world_size: int, device: torch.device, split_rows: int
) -> LoopSettings:
    """The settings of a group of `world_size` processes sharing a train split of `split_rows`:
    every step reads world x batch x accum samples of it, so each rank runs the same steps. The run
    lasts `max_steps` optimizer steps when set (epochs then follow from it), else `epochs` epochs."""
    rows_per_step = world_size * train.batch_size * train.grad_accum_steps
    steps_per_epoch = split_rows // rows_per_step
    if steps_per_epoch == 0:
        raise ValueError(
            f"train.batch_size: {train.batch_size} x train.grad_accum_steps {train.grad_accum_steps} x "
            f"{world_size} workers is more than the train split's {split_rows} rows"
        )
    # As in the Hugging Face Trainer: max_steps, when set, is the run's length and overrides epochs.
    total = train.max_steps or steps_per_epoch * train.epochs
    return LoopSettings(train, strategy, rank, world_size, device, steps_per_epoch, total)


def _join_group_of_one(on_gpu: bool, folder: str) -> None:
    """Rendezvous through a private file, so concurrent trials on a node never race for a port."""
    import torch.distributed as dist

    for name in ("RANK", "LOCAL_RANK"):
        os.environ[name] = "0"  # DeepSpeed's engine asserts a launcher set them
    os.environ["WORLD_SIZE"] = "1"
    dist.init_process_group(
        "nccl" if on_gpu else "gloo", init_method=f"file://{folder}/rendezvous", rank=0, world_size=1
    )


@contextmanager
def one_process_group(on_gpu: bool) -> Iterator[None]:
    """A torch.distributed group of one, which DeepSpeed's engines expect, for one trial."""
    import torch.distributed as dist

    with tempfile.TemporaryDirectory() as folder:
        _join_group_of_one(on_gpu, folder)
        try:
            yield
        finally:
            dist.destroy_process_group()


def lasting_process_group(on_gpu: bool) -> None:
    """A group of one that lasts as long as the process: a Tune actor that goes on to the next
    trial keeps it, since DeepSpeed keeps its handles to the group it first saw (a group made
    again is one it refuses: "not registered")."""
    import torch.distributed as dist

    if not dist.is_initialized():
        folder = tempfile.mkdtemp(prefix="genpipe-group-")
        atexit.register(shutil.rmtree, folder, True)
        _join_group_of_one(on_gpu, folder)
