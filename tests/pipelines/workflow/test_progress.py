"""The console's progress channel: events posted from another Ray process reach the driver in
order, and become lines with a percentage and, once a rate is known, an ETA."""

from __future__ import annotations

import gc
import time

import pytest
import ray

from pipelines.workflow.progress import ConsoleProgress, flush, open_board


def test_events_from_a_ray_task_reach_the_driver_in_order(ray_session):
    report = open_board()

    @ray.remote(num_cpus=0)
    def step(report) -> None:
        report("train", text="train split: kept on the cpu")
        for done in (10, 20, 40):
            report("train", done=done, total=40, unit="steps", text=f"loss={1 / done:.3f}")
        flush(report)  # as every step's task does before it returns

    ray.get(step.remote(report))
    events = report.take()
    assert [event.get("done") for event in events] == [None, 10, 20, 40]
    assert report.take() == []  # taken once


def test_the_runs_of_one_driver_share_one_board_and_keep_their_own_events(ray_session):
    first = open_board()
    board = first.board._actor_id
    del first
    gc.collect()  # a finished run's reporters are gone: the board must outlive them
    time.sleep(2)  # (Ray ends an actor that no handle refers to within a moment)
    first, second = open_board(), open_board()
    assert first.board._actor_id == second.board._actor_id == board  # one actor process for all runs

    @ray.remote(num_cpus=0)
    def step(report, stage: str) -> None:
        report(stage, text=f"{stage} started")
        flush(report)

    ray.get([step.remote(first, "prepare"), step.remote(second, "train")])
    assert [event["stage"] for event in first.take()] == ["prepare"]
    assert [event["stage"] for event in second.take()] == ["train"]
    ray.kill(first.board)  # a board that died (with its node, say) is started again for the next run
    # ray.kill is asynchronous: a call sent just after it can still be served (seen once in a
    # loaded CI run), so wait until the death is known, within a deadline.
    deadline = time.monotonic() + 30
    with pytest.raises(ray.exceptions.RayActorError):
        while time.monotonic() < deadline:
            first.take()
            time.sleep(0.2)
    third = open_board()
    ray.get(step.remote(third, "evaluate"))
    assert [event["stage"] for event in third.take()] == ["evaluate"]


def test_console_lines_carry_a_percentage_and_an_eta(monkeypatch):
    lines: list[str] = []
    console = ConsoleProgress(lines.append)
    clock = iter([100.0, 110.0, 130.0])
    monkeypatch.setattr("pipelines.workflow.progress.time.monotonic", lambda: next(clock))
    console.show({"stage": "evaluate", "text": "scoring the model"})
    for done in (100, 200, 400):
        console.show({"stage": "train", "done": done, "total": 400, "unit": "steps", "text": "loss=0.2"})
    assert lines[0] == "  evaluate: scoring the model"
    assert lines[1] == "  train 100/400 steps (25%)  loss=0.2"  # no rate yet
    assert lines[2] == "  train 200/400 steps (50%)  loss=0.2  ETA 0:20"  # 100 steps in 10 s, 200 to go
    assert lines[3] == "  train 400/400 steps (100%)  loss=0.2"  # done: no ETA


def test_counts_from_many_processes_are_summed_with_a_rate_and_an_eta(monkeypatch):
    lines: list[str] = []
    console = ConsoleProgress(lines.append)
    clock = iter([0.0, 5.0, 10.0, 20.0, 30.0])
    monkeypatch.setattr("pipelines.workflow.progress.time.monotonic", lambda: next(clock))
    for add in (100, 100, 200):  # three Ray Data tasks' rows, of 1,000
        console.show({"stage": "prepare", "add": add, "total": 1000, "unit": "rows"})
    console.show({"stage": "tune", "add": 1, "unit": "trials"})  # no total known: a rate instead
    console.show({"stage": "tune", "add": 1, "unit": "trials"})
    assert lines[:3] == [
        "  prepare 100/1000 rows (10%)",
        "  prepare 200/1000 rows (20%)  ETA 0:40",  # 100 rows in 5 s, 800 to go
        "  prepare 400/1000 rows (40%)  ETA 0:20",  # 300 rows in 10 s, 600 to go
    ]
    assert lines[3:] == ["  tune 1 trials", "  tune 2 trials  0.1 trials/s"]
