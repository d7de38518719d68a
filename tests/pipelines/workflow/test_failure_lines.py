"""A failed step is shown in one line that carries its cause: Ray Train's errors end their first
line with ":" and put the worker's own error after a traceback."""

from __future__ import annotations

from pipelines.workflow.runner import _one_line


class WorkerGroupError(Exception):
    pass


class ControllerError(Exception):
    pass


def test_a_worker_error_shows_the_workers_own_error_line():
    snippet = (
        "Training failed due to worker errors:\n[Rank 0,1 Error Snippet]:\nTraceback (most recent call last):\n"
        '  File "settings.py", line 54, in loop_settings\n    raise ValueError(\n'
        "ValueError: train.batch_size: 10 x 2 workers is more than the train split's 14 rows\n"
    )
    assert _one_line(WorkerGroupError(snippet)) == (
        "WorkerGroupError: Training failed due to worker errors: "
        "ValueError: train.batch_size: 10 x 2 workers is more than the train split's 14 rows"
    )


def test_a_controller_error_shows_the_line_after_its_colon():
    error = ControllerError('Training failed due to controller error:\nCould not connect to the endpoint URL: "x"')
    assert _one_line(error) == (
        'ControllerError: Training failed due to controller error: Could not connect to the endpoint URL: "x"'
    )


def test_other_errors_keep_their_first_line():
    assert _one_line(ValueError("data.seq_len: too long\nmore detail")) == "ValueError: data.seq_len: too long"
