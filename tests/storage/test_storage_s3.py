"""Storage on S3 (s3fs against a real moto server): transient errors are retried, and the
preflight check tells a missing bucket from refused credentials before anything starts."""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import s3fs
from helpers import s3_bucket, tiny_config

import storage
from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow import preflight
from storage.lease import Lease, LeaseHeld

INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class FlakyProxy(ThreadingHTTPServer):
    """Forwards S3 requests to moto and answers every `fail_every`-th one with HTTP 500 itself,
    as S3 does now and then (s3fs does not retry a 500 by itself: botocore's retry config must)."""

    def __init__(self, upstream: str, fail_every: int, lose_answers_to: str | None = None):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream, self.fail_every = urlsplit(upstream), fail_every
        self.requests = self.failed = self.lost = 0
        self.lock = threading.Lock()
        # PUTs whose path contains this reach moto, but their answer is replaced by a 500 once: a
        # write that landed while the client heard it fail.
        self.lose_answers_to = lose_answers_to

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def should_fail(self) -> bool:
        with self.lock:
            self.requests += 1
            fail = self.requests % self.fail_every == 0
            self.failed += fail
            return fail

    def should_lose_answer(self, method: str, path: str) -> bool:
        with self.lock:
            lose = method == "PUT" and self.lose_answers_to is not None and self.lose_answers_to in path
            if lose:
                self.lose_answers_to, self.lost = None, self.lost + 1
            return lose


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        head = self.command == "HEAD"  # a HEAD answer has no body but the length of the GET's
        if self.server.should_fail():
            self._internal_error(head)
            return
        upstream = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=30)
        upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
        response = upstream.getresponse()
        payload = response.read()
        if self.server.should_lose_answer(self.command, self.path):
            self._internal_error(head)
            return
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection") and (head or name.lower() != "content-length"):
                self.send_header(name, value)
        if not head:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        upstream.close()

    def _internal_error(self, head: bool) -> None:
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if head else str(len(INTERNAL_ERROR)))
        self.end_headers()
        if not head:
            self.wfile.write(INTERNAL_ERROR)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky(moto_server, s3_env):
    proxy = FlakyProxy(moto_server.url, fail_every=2)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    s3_env.setenv("AWS_ENDPOINT_URL", proxy.url)
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_transient_s3_errors_are_retried(moto_server, flaky):
    bucket = s3_bucket(moto_server, "flaky-retried")
    uri = f"s3://{bucket}/runs/workflows/w/train.json"
    for index in range(5):
        storage.write_json_atomic(uri, {"step": index})
        assert storage.read_json(uri) == {"step": index}
    assert flaky.failed >= 5  # half of all requests failed, and every operation still succeeded


def test_an_exclusive_create_whose_answer_was_lost_is_still_won(moto_server, s3_env):
    """A scheduler's claim (or a driver's lease) lands on S3 but the answer is lost: the client's
    retry meets the object. The nonce read back tells it the object is its own, so the slot is
    neither lost nor fired twice; another caller's payload still loses."""
    proxy = FlakyProxy(moto_server.url, fail_every=10**9, lose_answers_to="/claims/")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    s3_env.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        bucket = s3_bucket(moto_server, "lost-answers")
        uri = f"s3://{bucket}/schedules/s/claims/1700000000.json"
        assert storage.create_exclusive(uri, {"holder": "a", "nonce": "n1"}) is True
        assert proxy.lost == 1
        assert storage.create_exclusive(uri, {"holder": "b", "nonce": "n2"}) is False
        assert storage.read_json(uri) == {"holder": "a", "nonce": "n1"}
    finally:
        proxy.shutdown()


def test_a_lease_sees_what_another_process_wrote(moto_server, s3_env):
    """Listings are never answered from a cache: a lease whose newer generation another process
    wrote (and then released) is seen as it is, held and then free, not refused for ever."""
    s3_env.setenv("AWS_ENDPOINT_URL", moto_server.url)
    folder = f"s3://{s3_bucket(moto_server, 'lease-view')}/lease"
    mine = Lease(folder)
    mine.acquire(renew=False)
    mine.release("finished")
    assert mine.latest()[0] == 1  # listed once: a listings cache would keep this answer
    other_process = s3fs.S3FileSystem(skip_instance_cache=True)
    elsewhere = {"host": "elsewhere", "pid": 1, "state": "running", "term_s": 60.0, "heartbeat_at": time.time()}
    other_process.pipe(f"{folder[5:]}/00000002.json", json.dumps(elsewhere).encode())
    assert mine.latest()[0] == 2
    with pytest.raises(LeaseHeld, match="elsewhere"):
        Lease(folder).acquire(renew=False)
    other_process.pipe(f"{folder[5:]}/00000002.json", json.dumps({**elsewhere, "state": "finished"}).encode())
    Lease(folder).acquire(renew=False)  # free again: taken as generation 3
    assert mine.latest()[0] == 3


def test_without_retries_the_same_errors_fail(moto_server, flaky):
    """The control: the proxy's 500s do reach the client, so the test above proves the retries."""
    bucket = s3_bucket(moto_server, "flaky-control")
    fs, path = storage.filesystem(
        f"s3://{bucket}/x.json", skip_instance_cache=True, config_kwargs={"retries": {"total_max_attempts": 1}}
    )
    with pytest.raises(OSError):
        for _ in range(4):
            fs.pipe_file(path, b"{}")
    assert flaky.failed >= 1


def test_preflight_names_a_missing_bucket(moto_server, s3_env):
    s3_env.setenv("AWS_ENDPOINT_URL", moto_server.url)
    with pytest.raises(preflight.PreflightError, match="bucket 'no-such-bucket' does not exist"):
        preflight.check_storage("s3://no-such-bucket/runs")
    preflight.check_storage(f"s3://{s3_bucket(moto_server, 'preflight-ok')}/runs")  # writable: passes


def test_preflight_names_an_unreachable_endpoint(s3_env):
    s3_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(preflight.PreflightError, match="cannot reach it.*AWS_ENDPOINT_URL"):
        preflight.check_storage("s3://any-bucket/runs")


def test_embedded_mlflow_keeps_artifacts_beside_the_shards_on_s3(moto_server, s3_env, tmp_path):
    s3_env.setenv("AWS_ENDPOINT_URL", moto_server.url)
    bucket = s3_bucket(moto_server, "embedded-artifacts")
    config = tiny_config(f"s3://{bucket}/runs")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, _ = tracking.start_workflow_run(config, uri, "w1")
    tracking.client(uri).log_text(run_id, "hello", "notes/hello.txt")
    keys = s3fs.S3FileSystem().find(f"{bucket}/runs/mlartifacts")
    assert any(key.endswith(f"{run_id}/artifacts/notes/hello.txt") for key in keys), keys


def test_status_on_a_missing_bucket_is_one_line_not_a_traceback(moto_server, s3_env, capsys):
    s3_env.setenv("AWS_ENDPOINT_URL", moto_server.url)
    assert cli.main(["status", "--storage", "s3://no-such-bucket/runs"]) == 2
    expected = "--storage: s3://no-such-bucket/runs: bucket 'no-such-bucket' does not exist"
    assert capsys.readouterr().err.strip() == expected
    bucket = s3_bucket(moto_server, "status-ok")
    assert cli.main(["status", "--storage", f"s3://{bucket}/runs"]) == 0
    assert f"no workflows in s3://{bucket}/runs" in capsys.readouterr().out


def test_preflight_names_a_data_folder_missing_from_the_bucket(moto_server, s3_env):
    from data_prep.config import DataConfig

    s3_env.setenv("AWS_ENDPOINT_URL", moto_server.url)
    bucket = s3_bucket(moto_server, "data-source")
    s3fs.S3FileSystem().pipe(f"{bucket}/corpus/a.txt", b"some text")
    present = DataConfig.model_validate({"source": {"kind": "text_files", "path": f"s3://{bucket}/corpus/*.txt"}})
    preflight.check_source(present)
    missing = DataConfig.model_validate({"source": {"kind": "text_files", "path": f"s3://{bucket}/corpsu/*.txt"}})
    with pytest.raises(
        preflight.PreflightError, match=rf"data.source.path: s3://{bucket}/corpsu/\*.txt: .* does not exist"
    ):
        preflight.check_source(missing)
