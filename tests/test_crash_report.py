"""A crashed worker's report names its pid and what Ray's driver core last wrote for that pid:
that process's log only."""

from __future__ import annotations

import os

import crash_report


def test_the_report_holds_the_crashed_workers_ray_driver_log_and_no_other(tmp_path):
    sessions, ray_temp = tmp_path / "sessions", tmp_path / "ray"
    old = ray_temp / "session_2026-12-01_10-00-00_1_1" / "logs"
    old.mkdir(parents=True)
    (old / "python-core-driver-01000000ffffffffffffffffffffffffffffffffffffffffffffffff_4242.log").write_text("older")
    os.utime(old / "python-core-driver-01000000ffffffffffffffffffffffffffffffffffffffffffffffff_4242.log", (1, 1))
    crash_report.record_worker(sessions, "123:4.00", "gw1", 4242)
    crash_report.record_worker(sessions, "123:4.00", "gw0", 4343)
    logs = ray_temp / "session_2026-12-06_14-00-00_1_1" / "logs"
    logs.mkdir(parents=True)
    lines = [f"line {i}" for i in range(40)] + ["Check failed: the raylet exited; the driver exits"]
    (logs / "python-core-driver-01000000ffffffffffffffffffffffffffffffffffffffffffffffff_4242.log").write_text(
        "\n".join(lines)
    )
    (logs / "python-core-driver-02000000ffffffffffffffffffffffffffffffffffffffffffffffff_4343.log").write_text("gw0's")

    report = crash_report.describe(sessions, "123:4.00", "gw1", ray_temp)

    assert "gw1 was pid 4242" in report and "memory available now:" in report
    assert report.endswith("Check failed: the raylet exited; the driver exits")
    assert "line 29" in report and "line 28" not in report  # the tail only
    assert "gw0's" not in report and "older" not in report  # nor an earlier process's with that pid

    crash_report.forget_workers(sessions, "123:4.00")
    assert "gw1 recorded no pid" in crash_report.describe(sessions, "123:4.00", "gw1", ray_temp)
