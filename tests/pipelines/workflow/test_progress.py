"""The console's progress channel: events posted from another Ray process reach the driver in
order, and become lines with a percentage and, once a rate is known, an ETA."""

from __future__ import annotations

import ray

from pipelines.workflow.progress import ConsoleProgress, flush, open_board


def test_events_from_a_ray_task_reach_the_driver_in_order(ray_session):
    board, report = open_board()

    @ray.remote(num_cpus=0)
    def step(report) -> None:
        report("train", text="train split: kept on the cpu")
        for done in (10, 20, 40):
            report("train", done=done, total=40, unit="steps", text=f"loss={1 / done:.3f}")
        flush(report)  # as every step's task does before it returns

    ray.get(step.remote(report))
    events = ray.get(board.take.remote())
    assert [event.get("done") for event in events] == [None, 10, 20, 40]
    assert ray.get(board.take.remote()) == []  # taken once


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
