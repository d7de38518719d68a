"""Scheduler logic driven by an injected clock: no sleeping for minutes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.schedule.schedules import Schedule, Scheduler, ScheduleStore


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class RecordingLauncher:
    """Stands in for the process launcher: records starts; the test says when a run ends."""

    def __init__(self):
        self.started: list[str] = []
        self.adopted: list[str] = []
        self.attempts: list[tuple[str, int]] = []
        self.finished: dict[str, str] = {}  # an outcome the test has set, taken by the next `outcome` call
        self.ended: set[str] = set()

    def start(self, schedule, workflow_id, attempt=0):
        self.started.append(workflow_id)
        self.attempts.append((workflow_id, attempt))

    def adopt(self, schedule, workflow_id, attempt=0):
        self.adopted.append(workflow_id)
        self.attempts.append((workflow_id, attempt))

    def outcome(self, workflow_id):
        if workflow_id in self.finished:
            self.ended.add(workflow_id)
        return self.finished.pop(workflow_id, None)

    def release_all(self):
        return [w for w in self.started + self.adopted if w not in self.ended and w not in self.finished]


def make(tmp_path, holder="a", **fields):
    store = ScheduleStore(str(tmp_path))
    store.put(
        Schedule(
            name="hourly",
            config="quickstart",
            cron=fields.pop("cron", "0 * * * *"),
            created_at=fields.pop("created_at", at("2026-01-01T00:30:00")),
            **fields,
        )
    )
    launcher = RecordingLauncher()
    return store, launcher, Scheduler(store, launcher, holder, echo=lambda _: None)


def test_next_and_latest_slots_are_timezone_aware():
    schedule = Schedule(name="n", config="quickstart", cron="0 3 * * *", timezone="Europe/Paris", created_at=0)
    assert schedule.next_slot(at("2026-07-01T00:00:00")) == at("2026-07-01T01:00:00")  # CEST, UTC+2
    assert schedule.next_slot(at("2026-12-01T00:00:00")) == at("2026-12-01T02:00:00")  # CET, UTC+1
    assert schedule.latest_slot(at("2026-12-01T02:00:00")) == at("2026-12-01T02:00:00")  # a slot is due at its time
    assert schedule.latest_slot(at("2026-12-01T01:59:59")) == at("2026-11-30T02:00:00")


def test_fires_once_per_slot(tmp_path):
    store, launcher, scheduler = make(tmp_path)
    assert scheduler.tick(at("2026-01-01T00:59:59")) == []  # nothing due before the first slot
    assert scheduler.tick(at("2026-01-01T01:00:00")) == ["hourly-20260101-010000"]
    assert scheduler.tick(at("2026-01-01T01:00:30")) == []  # same slot: not again
    launcher.finished["hourly-20260101-010000"] = "succeeded"
    assert scheduler.tick(at("2026-01-01T01:10:00")) == []
    assert store.state("hourly").last_outcome == "succeeded" and store.state("hourly").running is None
    assert scheduler.tick(at("2026-01-01T02:00:01")) == ["hourly-20260101-020000"]


def test_catch_up_after_downtime_is_one_run_not_a_burst(tmp_path):
    store, launcher, scheduler = make(tmp_path)
    scheduler.tick(at("2026-01-01T01:00:00"))
    launcher.finished["hourly-20260101-010000"] = "succeeded"
    scheduler.tick(at("2026-01-01T01:01:00"))
    # Down from 01:01 to 06:20: slots 02:00..06:00 passed; one run, for 06:00.
    assert scheduler.tick(at("2026-01-01T06:20:00")) == ["hourly-20260101-060000"]
    history = [h["outcome"] for h in store.state("hourly").history]
    assert "missed 4 slot(s) while no scheduler ran; catching up once" in history
    assert scheduler.tick(at("2026-01-01T06:40:00")) == []


def test_two_schedulers_on_one_storage_never_fire_a_slot_twice(tmp_path):
    store, launcher, first = make(tmp_path, holder="a")
    second = Scheduler(store, launcher, "b", echo=lambda _: None)
    now = at("2026-01-01T01:00:05")
    assert first.tick(now) + second.tick(now) == ["hourly-20260101-010000"]
    # Even when the second never saw the first's state (a stale read), its claim is refused.
    assert store.claim("hourly", at("2026-01-01T01:00:00"), "b", now) is False
    assert launcher.started == ["hourly-20260101-010000"]


def test_a_run_still_going_is_not_doubled(tmp_path):
    store, launcher, scheduler = make(tmp_path)
    scheduler.tick(at("2026-01-01T01:00:00"))
    assert scheduler.tick(at("2026-01-01T02:00:00")) == []  # overlap=skip
    assert store.state("hourly").last_outcome == "skipped: previous run hourly-20260101-010000 still going"
    assert launcher.started == ["hourly-20260101-010000"]


def test_queue_overlap_fires_when_the_run_ends(tmp_path):
    store, launcher, scheduler = make(tmp_path, overlap="queue")
    scheduler.tick(at("2026-01-01T01:00:00"))
    assert scheduler.tick(at("2026-01-01T02:00:00")) == []
    launcher.finished["hourly-20260101-010000"] = "succeeded"
    assert scheduler.tick(at("2026-01-01T02:05:00")) == ["hourly-20260101-020000"]


def test_a_killed_schedulers_run_is_adopted_after_the_lease_and_recorded_once(tmp_path):
    store, launcher, first = make(tmp_path, holder="a")
    first.tick(at("2026-01-01T01:00:00"))  # "a" is killed with its run in flight
    successor = RecordingLauncher()
    second = Scheduler(store, successor, "b", echo=lambda _: None)
    assert second.tick(at("2026-01-01T01:00:30")) == []
    assert store.state("hourly").running.holder == "a" and not successor.adopted  # within the lease
    second.tick(at("2026-01-01T01:05:00"))
    assert successor.adopted == ["hourly-20260101-010000"] and store.state("hourly").running.holder == "b"
    successor.finished["hourly-20260101-010000"] = "succeeded: version 3 promoted"
    second.tick(at("2026-01-01T01:06:00"))
    second.tick(at("2026-01-01T01:07:00"))
    history = store.state("hourly").history
    assert [h["outcome"] for h in history] == ["succeeded: version 3 promoted"]
    assert second.tick(at("2026-01-01T02:00:00")) == ["hourly-20260101-020000"]  # the schedule goes on


def test_paused_schedules_do_not_fire(tmp_path):
    store, launcher, scheduler = make(tmp_path, paused=True)
    assert scheduler.tick(at("2026-01-01T05:00:00")) == []
    store.put(store.get("hourly").model_copy(update={"paused": False}))
    assert scheduler.tick(at("2026-01-01T05:00:01")) == ["hourly-20260101-050000"]


def test_a_stopped_scheduler_leaves_its_run_going_and_the_next_adopts_it_at_once(tmp_path):
    store, launcher, scheduler = make(tmp_path)
    scheduler.tick(at("2026-01-01T01:00:00"))
    scheduler.shutdown(at("2026-01-01T01:00:10"))
    running = store.state("hourly").running
    assert running.released and running.workflow_id == "hourly-20260101-010000"  # not stopped, not written off
    successor = RecordingLauncher()
    Scheduler(store, successor, "b", echo=lambda _: None).tick(at("2026-01-01T01:00:15"))
    assert successor.adopted == ["hourly-20260101-010000"]  # no lease to wait out
    assert store.state("hourly").history == []


@pytest.mark.parametrize("cron", ["61 * * * *", "* * *", "every day"])
def test_bad_cron_is_refused(cron):
    with pytest.raises(ValueError, match="not a cron expression"):
        Schedule(name="x", config="quickstart", cron=cron, created_at=0)


def test_a_cron_that_never_fires_is_refused_and_a_leap_day_is_not():
    with pytest.raises(ValueError, match="never fires"):
        Schedule(name="x", config="quickstart", cron="0 0 31 2 *", created_at=0)
    Schedule(name="x", config="quickstart", cron="0 0 29 2 *", created_at=0)


class FailingLauncher(RecordingLauncher):
    """A launcher whose first `failures` starts raise, as a Ray dashboard that is down does."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures

    def start(self, schedule, workflow_id, attempt=0):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("dashboard at http://head:8265 refused the connection")
        super().start(schedule, workflow_id, attempt)


def test_a_launch_that_fails_is_retried_then_reported_never_lost(tmp_path):
    store, _, _ = make(tmp_path)
    scheduler = Scheduler(store, FailingLauncher(failures=2), "a", echo=lambda _: None)
    assert scheduler.tick(at("2026-01-01T01:00:00")) == []
    assert store.state("hourly").queued_slot == at("2026-01-01T01:00:00")
    assert scheduler.tick(at("2026-01-01T01:00:10")) == []
    assert scheduler.tick(at("2026-01-01T01:00:20")) == ["hourly-20260101-010000"]  # third try
    outcomes = [h["outcome"] for h in store.state("hourly").history]
    assert outcomes[0].startswith("launch failed (1/3): ConnectionError: dashboard at http://head:8265")

    hopeless = Scheduler(store, FailingLauncher(failures=99), "b", echo=lambda _: None)
    store.save_state("hourly", store.state("hourly").model_copy(update={"running": None}))
    for second in range(0, 40, 10):
        assert hopeless.tick(at("2026-01-01T02:00:00") + second) == []
    state = store.state("hourly")
    assert state.last_outcome.startswith("launch failed (3/3)") and state.last_outcome.endswith("given up")
    assert state.queued_slot is None


def test_a_broken_schedule_stops_neither_the_others_nor_the_list(tmp_path, capsys):
    from pipelines import cli
    from storage import write_json_atomic

    store, launcher, scheduler = make(tmp_path)
    broken = Schedule(name="broken", config="quickstart", cron="0 * * * *", created_at=at("2026-01-01T00:30:00"))
    # As an older genpipe could store it: a date that never comes.
    write_json_atomic(store._uri("broken", "schedule.json"), {**broken.model_dump(mode="json"), "cron": "0 0 31 2 *"})
    assert scheduler.tick(at("2026-01-01T01:00:00")) == ["hourly-20260101-010000"]
    assert store.state("broken").last_outcome.startswith("error: ValidationError")
    assert cli.main(["schedule", "list", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "broken  broken: cron: '0 0 31 2 *' never fires" in out and "hourly  '0 * * * *'" in out

    # The broken one can be looked at and removed; a name that is not one never reaches a folder.
    assert cli.main(["schedule", "pause", "broken", "--storage", str(tmp_path)]) == 2
    assert "schedule 'broken' is broken: cron: '0 0 31 2 *' never fires" in capsys.readouterr().err
    assert cli.main(["schedule", "remove", "../schedules/hourly", "--storage", str(tmp_path)]) == 2
    assert cli.main(["schedule", "remove", "broken", "--storage", str(tmp_path)]) == 0
    assert store.names() == ["hourly"]


def test_a_schedule_fires_the_config_as_it_was_added_until_updated(tmp_path, monkeypatch):
    """Editing or deleting the YAML after `schedule add` changes nothing; `schedule update` does.
    The fired run's arguments name no file: the resolved config travels in its environment."""
    import yaml

    from pipelines import cli
    from pipelines.config import CONFIG_VARIABLE, read_config_source, validate_config
    from pipelines.schedule.launchers import run_arguments, run_environment

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    mine = tmp_path / "my.yaml"
    raw = read_config_source("quickstart")
    raw["train"]["max_steps"] = 30
    mine.write_text(yaml.safe_dump(raw))
    storage = str(tmp_path / "store")
    add = ["schedule", "add", "nightly", str(mine), "--cron", "0 3 * * *", "--storage", storage]
    assert cli.main([*add, "--set", "train.learning_rate=0.01"]) == 0

    def fired():
        schedule = ScheduleStore(storage).get("nightly")
        arguments = run_arguments(schedule, storage, "wf")
        assert str(mine) not in " ".join(arguments) and arguments[1] == f"env:{CONFIG_VARIABLE}"
        return validate_config(yaml.safe_load(run_environment(schedule)[CONFIG_VARIABLE]))

    raw["train"]["max_steps"] = 31
    mine.write_text(yaml.safe_dump(raw))
    config = fired()
    assert (config.train.max_steps, config.train.learning_rate) == (30, 0.01)
    assert config.storage == storage and config.tracking_uri == "http://mlflow.example:5000"

    assert cli.main(["schedule", "update", "nightly", "--storage", storage]) == 0
    assert (fired().train.max_steps, fired().train.learning_rate) == (31, 0.01)  # the file again, the same --set
    assert cli.main(["schedule", "update", "nightly", "--set", "train.learning_rate=0.02", "--storage", storage]) == 0
    assert fired().train.learning_rate == 0.02
    mine.unlink()
    assert fired().train.max_steps == 31  # the file is gone, the schedule is not
    assert cli.main(["schedule", "update", "nightly", "--storage", storage]) == 2  # nothing to resolve from


def test_a_schedule_of_comparisons_fires_genpipe_compare_with_the_section_resolved(tmp_path):
    """`--command compare`: each slot is `genpipe compare` of the resolved config, which carries a
    `compare:` section (its defaults when the config has none)."""
    import yaml

    from pipelines import cli
    from pipelines.config import CONFIG_VARIABLE, validate_config
    from pipelines.schedule.launchers import run_arguments, run_environment

    storage = str(tmp_path / "store")
    add = ["schedule", "add", "weekly", "quickstart", "--cron", "0 4 * * 0", "--storage", storage]
    assert cli.main([*add, "--command", "compare", "--set", "compare.families=vae,dcgan"]) == 0
    schedule = ScheduleStore(storage).get("weekly")
    assert schedule.command == "compare" and run_arguments(schedule, storage, "wf")[0] == "compare"
    config = validate_config(yaml.safe_load(run_environment(schedule)[CONFIG_VARIABLE]))
    assert config.compare is not None and config.compare.families == ["vae", "dcgan"]
    assert config.register.gate.metric == config.compare.metric == "eval/classifier_fid"
    assert cli.main([*add[:2], "daily", *add[3:], "--command", "compare", "--set", "compare.families=gpt"]) == 2


def test_a_schedule_written_before_resolved_configs_still_fires_its_config_and_sets(tmp_path):
    from pipelines.schedule.launchers import run_arguments, run_environment

    old = Schedule(name="old", config="quickstart", sets=["train.max_steps=5"], cron="0 * * * *", created_at=0)
    assert run_environment(old) == {}
    assert run_arguments(old, str(tmp_path), "wf")[:2] == ["run", "quickstart"]
    assert "train.max_steps=5" in run_arguments(old, str(tmp_path), "wf")


def test_a_failed_run_is_resumed_under_its_workflow_id_and_its_slot_has_one_outcome(tmp_path):
    store, launcher, scheduler = make(tmp_path, retries=2, retry_delay_s=60)
    run = "hourly-20260101-010000"
    scheduler.tick(at("2026-01-01T01:00:00"))
    launcher.finished[run] = "interrupted: its driver stopped (genpipe resume hourly-20260101-010000)"
    scheduler.tick(at("2026-01-01T01:05:00"))
    scheduler.tick(at("2026-01-01T01:05:59"))
    assert launcher.attempts == [(run, 0)]  # the delay first: what killed it takes a while to come back
    scheduler.tick(at("2026-01-01T01:06:00"))
    launcher.finished[run] = "failed at train: storage: s3://b/x: cannot reach the S3 endpoint"
    scheduler.tick(at("2026-01-01T01:10:00"))
    scheduler.tick(at("2026-01-01T01:11:59"))  # the second delay is twice the first
    assert launcher.attempts == [(run, 0), (run, 1)]
    # This scheduler is killed while the run waits to resume: another one takes it over and resumes it.
    other = RecordingLauncher()
    Scheduler(store, other, "b", echo=lambda _: None).tick(at("2026-01-01T01:13:00"))
    Scheduler(store, other, "b", echo=lambda _: None).tick(at("2026-01-01T01:13:10"))
    assert other.attempts == [(run, 2)]
    state = store.state("hourly")
    assert state.running is not None and state.running.attempt == 2
    other.finished[run] = "succeeded: version 3 promoted"
    Scheduler(store, other, "b", echo=lambda _: None).tick(at("2026-01-01T01:30:00"))
    history = [h["outcome"] for h in store.state("hourly").history]
    assert [h.rsplit(";", 1)[-1].strip() for h in history[:2]] == ["resuming in 60 s (1/2)", "resuming in 120 s (2/2)"]
    assert all(h.startswith("retrying: ") for h in history[:2])
    assert history[2:] == ["succeeded: version 3 promoted"]  # the slot's one outcome


def test_a_run_that_fails_past_its_retries_is_recorded_failed_once(tmp_path):
    store, launcher, scheduler = make(tmp_path, retries=1, retry_delay_s=0)
    run = "hourly-20260101-010000"
    scheduler.tick(at("2026-01-01T01:00:00"))
    for minute in (5, 10):
        launcher.finished[run] = f"failed at register: MLflow down ({minute})"
        scheduler.tick(at(f"2026-01-01T01:{minute:02d}:00"))
        scheduler.tick(at(f"2026-01-01T01:{minute:02d}:01"))
    assert launcher.attempts == [(run, 0), (run, 1)]
    state = store.state("hourly")
    assert state.running is None and state.last_outcome == "failed at register: MLflow down (10)"
    assert [h["outcome"].startswith("retrying: ") for h in state.history] == [True, False]


def test_six_fields_have_their_seconds_first_as_the_cli_says():
    every_ten_seconds = Schedule(name="n", config="quickstart", cron="*/10 * * * * *", created_at=0)
    assert every_ten_seconds.next_slot(at("2026-01-01T00:00:01")) == at("2026-01-01T00:00:10")
    every_two_minutes = Schedule(name="n", config="quickstart", cron="0 */2 * * * *", created_at=0)
    assert every_two_minutes.next_slot(at("2026-01-01T00:00:01")) == at("2026-01-01T00:02:00")


def test_a_ray_job_whose_driver_was_killed_in_a_step_is_interrupted_not_failed(tmp_path):
    from ray.job_submission import JobStatus

    from pipelines.schedule.launchers import job_exit
    from pipelines.workflow.lease import DriverLease
    from pipelines.workflow.runner import Workflow
    from storage import write_json_atomic

    workflow = Workflow(str(tmp_path), "wf")
    assert job_exit(JobStatus.FAILED, workflow) == 1  # failed before the workflow existed (a preflight)
    write_json_atomic(workflow.meta_uri, {})
    lease = DriverLease.of(workflow.uri)
    lease.acquire()
    lease.doing("train")
    lease.release("failed")
    assert job_exit(JobStatus.FAILED, workflow) == 1  # it said so itself
    record = {"host": "elsewhere", "pid": 1, "state": "running", "doing": "train", "heartbeat_at": 0, "term_s": 1}
    write_json_atomic(f"{lease.folder}/{lease.latest()[0] + 1:08d}.json", record)  # kill -9'd in train
    assert job_exit(JobStatus.FAILED, workflow) == 130
    assert job_exit(JobStatus.STOPPED, workflow) == 130 and job_exit(JobStatus.SUCCEEDED, workflow) == 0
