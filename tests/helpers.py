"""What many tests share: the repository root and the quickstart made tiny for 2 CPU cores."""

from __future__ import annotations

from pathlib import Path

from pipelines.cluster.local import Server, create_bucket, s3_environment
from pipelines.config import PipelineConfig, load_config
from storage import filesystem, join

REPO = Path(__file__).resolve().parent.parent

# Small enough for 2 CPU cores: a short schedule, few samples, a couple of classifier epochs, one
# training worker (each worker is ~9 s of a core: imports, DeepSpeed, gloo). A test about the group
# itself (ZeRO partitions, a killed worker, a resumed or regrouped group, placement across nodes)
# says so with GROUP after TINY.
TINY = [
    "train.num_workers=1",
    "model.params.timesteps=20",
    "train.max_steps=30",
    "train.log_every=5",
    "train.checkpoint_every=15",
    "train.sample_every=15",
    "train.system_metrics_every_s=2",  # a tiny run lasts seconds: sample the nodes often enough to see it
    "evaluate.num_samples=100",
    "evaluate.grid_size=16",
    "evaluate.classifier_epochs=2",
]

GROUP = "train.num_workers=2"  # the quickstart's own default: a group of two DeepSpeed workers


def tiny_config(storage: Path, *extra: str) -> PipelineConfig:
    return load_config("quickstart", [*TINY, *extra], storage=str(storage))


def seed_dataset(dataset: Path, storage: str | Path) -> None:
    """Copy a prepared dataset folder into `storage` (a folder or s3://...): the workflow's prepare
    step then finds it (a cache hit) instead of preparing it again."""
    target = join(str(storage), "datasets", dataset.name)
    fs, path = filesystem(target)
    if fs.exists(path):
        raise AssertionError(f"{target} exists: seed a fresh storage")
    fs.put(str(dataset), path, recursive=True)


def s3_bucket(moto: Server, name: str) -> str:
    """A new bucket on the moto server."""
    return create_bucket(s3_environment(moto), name)
