"""Training metrics sent from a background thread, so that no rank waits on MLflow.

Rank 0 logs inside the step loop; a synchronous call there stalls every rank at the next
collective whenever the server is slow, and a server that is down would end the run. The sender
queues each batch and one thread sends them in order; a batch that fails stays buffered (oldest
dropped past `max_buffered`, with a warning) and goes with the next attempt. Written by hand rather
than with MlflowClient's `synchronous=False`: that queue lives on the store object, is flushed only
at interpreter exit (which a Ray Train worker, ended by Ray, never reaches) and gives up on a batch
after one failure.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

from mlflow.entities import Metric

from pipelines.registry import tracking

log = logging.getLogger("genpipe.tracking")
RETRY_SECONDS = 5.0


class MetricSender:
    """`send` returns at once; `close` waits (at most `timeout` seconds) for what is queued."""

    def __init__(self, uri: str, run_id: str, max_buffered: int = 100_000):
        self.uri, self.run_id, self.max_buffered = uri, run_id, max_buffered
        self._queue: queue.Queue[list[Metric] | None] = queue.Queue()
        self._buffer: deque[Metric] = deque()
        self._failing_since: float | None = None
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="genpipe-metrics", daemon=True)
        self._thread.start()

    def send(self, metrics: dict[str, float], step: int) -> None:
        self._queue.put(tracking.metric_entries(metrics, step))

    def close(self, timeout: float = 30.0) -> None:
        """Send what is left; what still cannot go after `timeout` is dropped with a warning."""
        self._queue.put(None)
        self._thread.join(timeout)
        left = len(self._buffer) + sum(len(batch or []) for batch in list(self._queue.queue))
        if self._thread.is_alive() or left:
            log.warning("MLflow at %s: %d training metrics could not be sent and are dropped", self.uri, left)

    def _run(self) -> None:
        closing = False
        while True:
            try:
                batch = self._queue.get(timeout=RETRY_SECONDS if self._buffer else None)
            except queue.Empty:
                batch = []
            if batch is None:
                closing = True
            else:
                self._buffer.extend(batch)
                self._trim()
            self._flush()
            if closing and (not self._buffer or self._failing_since is not None):
                return

    def _trim(self) -> None:
        while len(self._buffer) > self.max_buffered:
            self._buffer.popleft()
            self.dropped += 1
            if self.dropped == 1:
                log.warning("MLflow at %s: buffer full, dropping the oldest training metrics", self.uri)

    def _flush(self) -> None:
        client = tracking.client(self.uri)
        while self._buffer:
            chunk = [self._buffer[i] for i in range(min(1000, len(self._buffer)))]  # log_batch's limit
            try:
                client.log_batch(self.run_id, metrics=chunk)
            except Exception as exc:
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning(
                        "MLflow at %s is not answering (%s): training goes on, metrics are buffered",
                        self.uri,
                        str(exc).splitlines()[0][:200],
                    )
                return
            for _ in chunk:
                self._buffer.popleft()
            if self._failing_since is not None:
                log.warning("MLflow at %s answers again: buffered metrics sent", self.uri)
                self._failing_since = None
