"""A pytest plugin for benchmarks/suite_by_test.py: each test's span, from its setup to the end of
its teardown, as one JSON line in the file $GENPIPE_TEST_SPANS (every xdist worker appends)."""

from __future__ import annotations

import json
import os
import time

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    started = time.time()
    yield
    span = {"test": item.nodeid, "start": started, "end": time.time()}
    with open(os.environ["GENPIPE_TEST_SPANS"], "a") as spans:
        spans.write(json.dumps(span) + "\n")
