"""Webhooks: signatures (known answers), callback URLs, and delivery to a real HTTP receiver.

Jobs are submitted through the API and run in this process (tests/web_helpers.py); the webhook
is then delivered with ``pipeline.webhooks.deliver``, the function the Celery task wraps, to an
``http.server`` listening on loopback. The last test runs the Celery side with a real worker.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pipeline_helpers import FAST_JOBS, WorkerProcess, free_port, make_instance, settings_of, wait_for
from web_helpers import WebEnv

from media.synthetic import make_test_clip
from pipeline.models import WebhookDelivery
from pipeline.runtime import Runtime
from pipeline.service import Pipeline
from pipeline.webhooks import (
    CallbackURLError,
    Subscription,
    WebhookSignatureError,
    check_callback_url,
    deliver,
    signature_header,
    verify_webhook,
)
from web.apikeys import KeyStore

API = "/api/v1"

# --- signatures -------------------------------------------------------------------------------

SECRET = "whsec_known-answer"
BODY = b'{"event":"job.succeeded"}'
T = 1_700_000_000
# HMAC-SHA256 of "1700000000." + BODY under SECRET (also what `openssl dgst -sha256 -hmac` prints).
KNOWN = "19aa25929640b0624ccff48372ece6beaa3c415a860dd7afa2b9f357b4b10412"


def test_signature_known_answer_and_verification() -> None:
    header = signature_header(SECRET, BODY, timestamp=T)
    assert header == f"t={T},v1={KNOWN}"
    assert verify_webhook(BODY, header, SECRET, now=T + 10) == {"event": "job.succeeded"}
    # A receiver mid-rotation may see several v1 values: any one matching is enough.
    assert verify_webhook(BODY, f"t={T},v1={'0' * 64},v1={KNOWN}", SECRET, now=T)["event"] == "job.succeeded"


@pytest.mark.parametrize("body, header, secret", [
    (BODY + b" ", f"t={T},v1={KNOWN}", SECRET),  # altered body
    (BODY, f"t={T},v1={KNOWN}", "whsec_other"),  # wrong secret
    (BODY, f"t={T + 1},v1={KNOWN}", SECRET),  # timestamp changed: the signature covers it
    (BODY, f"t={T},v1={KNOWN.upper()}", SECRET),
])
def test_a_bad_signature_is_refused(body: bytes, header: str, secret: str) -> None:
    with pytest.raises(WebhookSignatureError, match="no signature matches"):
        verify_webhook(body, header, secret, now=T)


@pytest.mark.parametrize("header", [None, "", f"v1={KNOWN}", f"t={T}", f"t=soon,v1={KNOWN}", KNOWN])
def test_a_malformed_signature_header_is_refused(header: str | None) -> None:
    with pytest.raises(WebhookSignatureError, match="malformed"):
        verify_webhook(BODY, header, SECRET, now=T)


def test_an_old_or_future_signature_is_refused() -> None:
    header = signature_header(SECRET, BODY, timestamp=T)
    assert verify_webhook(BODY, header, SECRET, now=T + 300)
    for now in (T + 301, T - 301):
        with pytest.raises(WebhookSignatureError, match="outside the 300 s tolerance"):
            verify_webhook(BODY, header, SECRET, now=now)
    assert verify_webhook(BODY, header, SECRET, now=T + 3000, tolerance_s=3600)


# --- callback URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/vf", "ftp://hooks.example.com/vf", "javascript:alert(1)", "hooks.example.com/vf",
    "https://", "https://user:pw@hooks.example.com/", "https://hooks.example.com/a#frag",
    "https://hooks.example.com:99999/", "https://hooks.example.com/a b", "https://127.0.0.1/h", "https://[::1]/h",
    "https://localhost/h", "https://10.1.2.3/h", "https://192.168.0.7/h", "https://169.254.169.254/latest",
    "https://[fd00::1]/h", "https://0.0.0.0/h", "https://x.example/" + "a" * 2000, "",
])
def test_callback_urls_veriframe_will_not_call(url: str) -> None:
    with pytest.raises(CallbackURLError):
        check_callback_url(url, allow_http_loopback=True)


def test_callback_urls_it_will_call() -> None:
    assert check_callback_url(" https://hooks.example.com/vf?team=7 ") == "https://hooks.example.com/vf?team=7"
    assert check_callback_url("https://93.184.216.34:8443/vf")
    for url in ("http://127.0.0.1:8080/h", "http://localhost/h", "http://[::1]:9/h"):
        assert check_callback_url(url, allow_http_loopback=True) == url
        with pytest.raises(CallbackURLError, match="https"):
            check_callback_url(url)


# --- delivery -------------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver on loopback: answers each POST with the next of ``statuses`` (200 when
    they run out) and keeps every request's headers and raw body."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/veriframe"


@pytest.fixture
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _delivery(env: WebEnv, delivery_id: str) -> WebhookDelivery:
    with env.pipeline.runtime.sessions() as session:
        return session.get(WebhookDelivery, delivery_id)


def _new_webhooks(env: WebEnv, before: int) -> list[str]:
    return env.pipeline.webhooks[before:]


def test_an_ended_job_is_posted_signed_and_retried_after_a_500(client, env: WebEnv, receiver: Receiver) -> None:
    alice = env.auth("alice")
    receiver.statuses = [500]
    response = client.post(f"{API}/verifications", data={**env.upload(), "callback_url": receiver.url}, headers=alice)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    before = len(env.pipeline.webhooks)
    assert env.pipeline.announce(job_id) == []  # still queued: nothing is due
    assert env.pipeline.run(job_id) == "succeeded"
    [delivery_id] = _new_webhooks(env, before)

    first = deliver(env.pipeline.runtime, delivery_id)
    assert first.status == "retry" and first.http_status == 500 and first.retry_in == pytest.approx(0.05)
    row = _delivery(env, delivery_id)
    assert row.state == "pending" and row.attempts == 1 and row.last_status == 500 and "500" in row.last_error
    time.sleep(first.retry_in + 0.05)
    second = deliver(env.pipeline.runtime, delivery_id)
    assert second.status == "delivered" and second.http_status == 200
    row = _delivery(env, delivery_id)
    assert row.state == "delivered" and row.attempts == 2 and row.last_error is None and row.delivered_at
    assert deliver(env.pipeline.runtime, delivery_id).status == "skipped"  # delivered: never sent again
    assert env.pipeline.announce(job_id) == []

    assert len(receiver.requests) == 2
    for headers, body in receiver.requests:
        assert headers["veriframe-event-id"] == delivery_id  # the same on every attempt
        assert headers["content-type"] == "application/json"
        event = verify_webhook(body, headers["veriframe-signature"], env.webhook_secrets["alice"])
        assert event["event"] == "job.succeeded"
    shown = client.get(f"{API}/verifications/{job_id}", headers=alice).get_json()
    assert event["job"] == shown and event["job"]["report"]["file"]["width"] == 160
    with pytest.raises(WebhookSignatureError):  # another key's secret does not verify it
        verify_webhook(body, headers["veriframe-signature"], env.webhook_secrets["bob"])


def test_cancelling_a_job_posts_job_cancelled(client, env: WebEnv, receiver: Receiver) -> None:
    alice = env.auth("alice")
    job = client.post(f"{API}/generations", headers=alice,
                      json={"prompt": "a kite", "callback_url": receiver.url}).get_json()
    before = len(env.pipeline.webhooks)
    assert client.delete(f"{API}/jobs/{job['id']}", headers=alice).get_json()["state"] == "cancelled"
    [delivery_id] = _new_webhooks(env, before)
    assert deliver(env.pipeline.runtime, delivery_id).status == "delivered"
    headers, body = receiver.requests[-1]
    event = verify_webhook(body, headers["veriframe-signature"], env.webhook_secrets["alice"])
    assert event["event"] == "job.cancelled" and event["job"]["id"] == job["id"]
    assert event["job"]["links"]["self"] == f"{API}/generations/{job['id']}"


def test_a_failed_job_is_posted_and_a_dead_receiver_is_given_up_without_touching_the_job(
        client, env: WebEnv) -> None:
    alice = env.auth("alice")
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    job = client.post(f"{API}/generations", headers=alice,
                      json={"prompt": "a kite", "width": 96, "height": 64, "callback_url": dead}).get_json()
    before = len(env.pipeline.webhooks)
    assert env.pipeline.run(job["id"]) == "failed"  # no checkpoint: the job fails, its webhook is due
    [delivery_id] = _new_webhooks(env, before)
    assert _delivery(env, delivery_id).event == "job.failed"
    runtime = Runtime(dataclasses.replace(env.settings, webhook_max_attempts=2))
    try:
        first = deliver(runtime, delivery_id)
        assert first.status == "retry" and first.http_status is None and "refused" in first.error.lower()
        time.sleep(first.retry_in + 0.05)
        assert deliver(runtime, delivery_id).status == "failed"
    finally:
        runtime.close()
    row = _delivery(env, delivery_id)
    assert row.state == "failed" and row.attempts == 2 and row.last_status is None and row.last_error
    body = client.get(f"{API}/generations/{job['id']}", headers=alice).get_json()
    assert body["state"] == "failed" and body["error_kind"] == "unavailable"  # the job is as it ended


def test_a_revoked_key_gets_no_more_webhooks(client, env: WebEnv, receiver: Receiver) -> None:
    keys = env.app().extensions["veriframe.web"].keys
    new = keys.create("soon-revoked", "generate", owner="carol")
    headers = {"Authorization": f"Bearer {new.key}"}
    job = client.post(f"{API}/generations", headers=headers, json={"prompt": "x", "callback_url": receiver.url})
    keys.revoke(new.info.id)
    before = len(env.pipeline.webhooks)
    env.pipeline.cancel(job.get_json()["id"])
    [delivery_id] = _new_webhooks(env, before)
    result = deliver(env.pipeline.runtime, delivery_id)
    assert result.status == "failed" and "revoked" in result.error and receiver.requests == []


@pytest.mark.slow
def test_a_real_worker_delivers_and_retries_the_webhook(tmp_path: Path, receiver: Receiver) -> None:
    """The Celery side: the job's task queues the webhook task, which retries itself after a 500."""
    inst = make_instance(tmp_path, **FAST_JOBS, webhook_allow_http_loopback=True, webhook_retry_base_s=0.2)
    pipeline = Pipeline(settings_of(inst))
    pipeline.migrate()
    new = KeyStore(pipeline.runtime.engine).create("worker-test", "verify")
    clip = make_test_clip(tmp_path / "clip.mp4", width=64, height=48, frames=4)
    receiver.statuses = [500]
    worker = WorkerProcess(inst, queues="default").start()
    try:
        job = pipeline.submit_verify(clip, webhook=Subscription(receiver.url, new.info.id))
        wait_for(lambda: len(receiver.requests) >= 2, 90, "the webhook and its retry")
    finally:
        worker.stop()
        pipeline.runtime.close()
    (first_headers, _), (headers, body) = receiver.requests
    assert first_headers["veriframe-event-id"] == headers["veriframe-event-id"]
    event = verify_webhook(body, headers["veriframe-signature"], new.webhook_secret)
    assert event["event"] == "job.succeeded" and event["job"]["id"] == job.id
