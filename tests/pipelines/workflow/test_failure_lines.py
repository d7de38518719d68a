"""A failed step is shown in one line that carries its cause, read from Ray's errors as data: a
worker group's `worker_failures`, a controller's `controller_failure`, a task error's `cause`."""

from __future__ import annotations

import ray.exceptions
from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

from pipelines.workflow.runner import _one_line


def test_a_worker_error_shows_the_lowest_failed_ranks_own_error():
    failures = {
        1: RuntimeError("rank 1 lost its peer"),
        0: ValueError("train.batch_size: 10 x 2 workers is more than the train split's 14 rows\nmore detail"),
    }
    error = WorkerGroupError("[Rank 0,1 Error Snippet]:\nTraceback (most recent call last): ...", failures)
    assert _one_line(error) == (
        "WorkerGroupError: training failed on rank 0: "
        "ValueError: train.batch_size: 10 x 2 workers is more than the train split's 14 rows"
    )


def test_a_controller_error_shows_the_controllers_own_error():
    error = ControllerError(ConnectionError('Could not connect to the endpoint URL: "x"\nretried 3 times'))
    assert _one_line(error) == (
        "ControllerError: training failed in its controller: "
        'ConnectionError: Could not connect to the endpoint URL: "x"'
    )


def test_a_ray_task_error_shows_the_steps_own_error():
    cause = WorkerGroupError("snippet", {0: ValueError("data.seq_len: too long")})
    wrapped = ray.exceptions.RayTaskError("run_step", "Traceback ...", cause).as_instanceof_cause()
    assert _one_line(wrapped) == "WorkerGroupError: training failed on rank 0: ValueError: data.seq_len: too long"


def test_other_errors_keep_their_first_line():
    assert _one_line(ValueError("data.seq_len: too long\nmore detail")) == "ValueError: data.seq_len: too long"
