"""Training metrics (and sample grids) sent from a background thread, so that no rank waits on MLflow.

Rank 0 logs inside the step loop; a synchronous call there stalls every rank at the next
collective whenever the server is slow (MLflow's client retries for minutes), and a server that is
down would end the run. The sender queues each batch and one thread sends them in order; a batch
that fails stays buffered (oldest dropped past `max_buffered`, with a warning) and goes with the
next attempt. Other logging calls (an image, a table) are tried once and dropped with a warning. Written by hand rather
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
from collections.abc import Callable

from mlflow.entities import Metric

from pipelines.registry import tracking
from typed_errors import first_line

log = logging.getLogger("genpipe.tracking")
RETRY_SECONDS = 5.0


class MetricSender:
    """`send` returns at once; `close` waits (at most `timeout` seconds) for what is queued."""

    def __init__(self, uri: str, run_id: str, max_buffered: int = 100_000, tell: Callable[[str], None] | None = None):
        self.uri, self.run_id, self.max_buffered = uri, run_id, max_buffered
        self.tell = tell  # the user's console, for the warnings that matter to them
        self._queue: queue.Queue[list[Metric] | Callable[[], None] | None] = queue.Queue()
        self._buffer: deque[Metric] = deque()
        self._failing_since: float | None = None
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="genpipe-metrics", daemon=True)
        self._thread.start()

    def send(self, metrics: dict[str, float], step: int) -> None:
        self._queue.put(tracking.metric_entries(metrics, step))

    def call(self, log_call: Callable[[], None]) -> None:
        """Run one logging call (an image, a table) in the background, in order with the metrics."""
        self._queue.put(log_call)

    def close(self, timeout: float = 30.0) -> None:
        """Send what is left; what still cannot go after `timeout` is dropped with a warning."""
        self._queue.put(None)
        self._thread.join(timeout)
        left = len(self._buffer) + sum(len(batch) for batch in list(self._queue.queue) if isinstance(batch, list))
        if self._thread.is_alive() or left:
            self._tell(f"MLflow at {self.uri}: {left} training metrics could not be sent and are dropped")

    def _run(self) -> None:
        closing = False
        while True:
            try:
                batch = self._queue.get(timeout=RETRY_SECONDS if self._buffer else None)
            except queue.Empty:
                batch = []
            if batch is None:
                closing = True
            elif callable(batch):
                self._try(batch)
            else:
                self._buffer.extend(batch)
                self._trim()
            self._flush()
            if closing and (not self._buffer or self._failing_since is not None):
                return

    def _tell(self, message: str) -> None:
        log.warning(message)
        if self.tell is not None:
            self.tell(message)

    def _try(self, log_call: Callable[[], None]) -> None:
        try:
            log_call()
        except Exception as exc:
            log.warning("MLflow at %s: a logging call was dropped: %s", self.uri, first_line(exc, 200))

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
                    log.warning("MLflow at %s is not answering: %s", self.uri, first_line(exc, 300))
                    self._tell(f"MLflow at {self.uri} is not answering: training goes on, metrics are buffered")
                return
            for _ in chunk:
                self._buffer.popleft()
            if self._failing_since is not None:
                self._tell(f"MLflow at {self.uri} answers again: buffered metrics sent")
                self._failing_since = None
