"""Two schedulers ticking the same storage at the same moments over many slots, on a folder and on
S3 (moto): every slot is fired exactly once or skipped with a reason (a run still going), none is
fired twice and none is lost."""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
from helpers import s3_bucket

from pipelines.schedule.schedules import Schedule, Scheduler, ScheduleStore

START = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


class SharedLauncher:
    """Both schedulers' launcher: records every start; a run ends at the next look at it."""

    def __init__(self):
        self.started: list[str] = []
        self.lock = threading.Lock()

    def start(self, schedule, workflow_id, attempt=0):
        with self.lock:
            self.started.append(workflow_id)

    def adopt(self, schedule, workflow_id, attempt=0):
        pass

    def outcome(self, workflow_id):
        return "succeeded"

    def release_all(self):
        return []


def race(storage: str, slots: int) -> dict[str, int]:
    store = ScheduleStore(storage)
    store.put(Schedule(name="minutely", config="quickstart", cron="* * * * *", created_at=START - 30))
    launcher, lines, errors = SharedLauncher(), [], []
    schedulers = [Scheduler(store, launcher, holder, echo=lines.append) for holder in ("a", "b")]
    for minute in range(slots):
        for offset in (1, 20, 40):  # the run ends at a later tick of its holder
            barrier = threading.Barrier(2)

            def tick(scheduler, now=START + 60 * minute + offset, barrier=barrier):
                barrier.wait()
                try:
                    scheduler.tick(now)
                except Exception as exc:  # a tick must never raise: it would end the scheduler
                    errors.append(exc)

            threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    fired = Counter(re.findall(r"fired \S+ for slot (\S+)", "\n".join(lines)))
    skipped = Counter(re.findall(r"slot (\S+) skipped", "\n".join(lines)))
    traced = [fired[s] + skipped[s] for s in {*fired, *skipped}]
    return {
        "tick_errors": len(errors),
        "slots": slots,
        "fired": sum(fired.values()),
        "skipped": sum(skipped.values()),
        "double_fires": len(launcher.started) - len(set(launcher.started)),
        "lost": slots - len({*fired, *skipped}) + sum(n - 1 for n in traced if n > 1),
    }


def test_two_schedulers_on_a_folder_fire_every_slot_once(tmp_path):
    outcome = race(str(tmp_path), slots=40)
    assert outcome["double_fires"] == outcome["lost"] == outcome["tick_errors"] == 0, outcome
    assert outcome["fired"] >= 20, outcome  # most slots fire (a slot is skipped only behind a run)


@pytest.mark.slow
def test_two_schedulers_on_s3_fire_every_slot_once(moto_server, s3_env):
    s3_env.setenv("AWS_ENDPOINT_URL", moto_server.url)
    outcome = race(f"s3://{s3_bucket(moto_server, 'scheduler-race')}/store", slots=15)
    assert outcome["double_fires"] == outcome["lost"] == outcome["tick_errors"] == 0, outcome
    assert outcome["fired"] >= 7, outcome
