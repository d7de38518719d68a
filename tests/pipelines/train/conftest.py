"""One one-process gloo group for every test here that builds DeepSpeed engines in the pytest
process: DeepSpeed keeps its communication groups for the life of the process (as a sweep trial's
actor does), so a second group after the first was destroyed would meet its stale state."""

from __future__ import annotations

import os

import pytest

from pipelines.train.settings import one_process_group
from pipelines.train.worker import quiet_worker_logs


@pytest.fixture(scope="session")
def process_group():
    """The launcher variables are put back afterwards."""
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR")
    saved = {name: os.environ.get(name) for name in names}
    quiet_worker_logs()
    with one_process_group(on_gpu=False):
        yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
