"""Webhooks: when a job ends, POST it to the ``callback_url`` its submission gave, signed.

The life of one webhook, a row of ``webhook_deliveries``::

    submit (callback_url) --> waiting --job ends--> pending --2xx--> delivered
                                                       |--error--> pending (next attempt after a backoff)
                                                       +--last attempt fails--> failed

The body is ``{"event": "job.<state>", "job": <the job as GET /<kind>/{id} returns it>}``; the
headers carry ``Veriframe-Event-Id`` (the row's id, the same on every attempt: receivers dedupe on
it, since delivery is at least once) and ``Veriframe-Signature: t=<unix time>,v1=<hex>``, the
HMAC-SHA256 of ``"<t>.<body>"`` under the submitting API key's webhook secret (Stripe's scheme).
:func:`verify_webhook` checks one on the receiving side.

Nothing here can hold up or fail a job: the job is final before its webhook is due, each attempt
runs in its own small task (``veriframe.webhook``, default queue), and :func:`announce` never raises.
A webhook whose task was lost is found again by the workers' sweep (:func:`reclaim_deliveries`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from .models import TERMINAL_STATES, ApiKey, DeliveryState, Job, WebhookDelivery, new_id, utcnow

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Veriframe-Signature"
EVENT_ID_HEADER = "Veriframe-Event-Id"
DEFAULT_TOLERANCE_S = 300.0  # how old a signed timestamp a receiver accepts (replay window)
RETRY_FACTOR = 3.0  # each retry waits this much longer than the one before
MAX_URL_CHARS = 2000
MAX_ERROR_CHARS = 500
USER_AGENT = "veriframe-webhooks/1"


class WebhookSignatureError(ValueError):
    """A webhook request's signature is missing, malformed, wrong, or too old."""


class CallbackURLError(ValueError):
    """A ``callback_url`` veriframe will not call; the message says why."""


@dataclasses.dataclass(frozen=True)
class Subscription:
    """What a submission asks for: POST the ended job to ``url``, signed with key ``key_id``'s secret."""

    url: str
    key_id: str


# --- signatures ---------------------------------------------------------------------------------


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Veriframe-Signature`` value for ``body``: ``t=<unix time>,v1=<hex HMAC-SHA256>``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(secret, t, body)}"


def verify_webhook(body: bytes, header: str | None, secret: str, *, tolerance_s: float = DEFAULT_TOLERANCE_S,
                   now: float | None = None) -> dict[str, Any]:
    """The event a webhook request carries, once its signature checks out.

    ``body`` is the raw request body (before any JSON parsing), ``header`` the
    ``Veriframe-Signature`` value. Raises WebhookSignatureError when the header is malformed, no
    ``v1`` signature matches (compared in constant time), or the timestamp is further than
    ``tolerance_s`` from now (a replayed request).
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header: expected t=<unix time>,v1=<hex>")
    expected = _digest(secret, timestamp, body)
    # Every candidate is compared, each in constant time: a header may carry several v1 values.
    if not any([hmac.compare_digest(expected, candidate) for candidate in candidates]):
        raise WebhookSignatureError("no signature matches: wrong secret or altered body")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise WebhookSignatureError(f"signature timestamp is {age:.0f} s from now, outside the "
                                    f"{tolerance_s:g} s tolerance")
    try:
        return json.loads(body)
    except ValueError:
        raise WebhookSignatureError("the signed body is not JSON") from None


# --- callback URLs ------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_callback_url(url: str, *, allow_http_loopback: bool = False) -> str:
    """``url`` if veriframe may POST webhooks to it; CallbackURLError otherwise.

    Only https, to a host name or a public address (an address literal in a private, loopback or
    link-local range is refused, so a client cannot aim the server at its own network). With
    ``allow_http_loopback`` (tests, local development) plain http to loopback is accepted too.
    Host names are not resolved here: see docs/webhooks.md for what that leaves to the network.
    """
    if not isinstance(url, str) or not url.strip():
        raise CallbackURLError("callback_url is empty")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise CallbackURLError(f"callback_url is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise CallbackURLError(f"callback_url is not a valid URL ({exc})") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise CallbackURLError("callback_url must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise CallbackURLError("callback_url must not carry credentials")
    if parts.fragment:
        raise CallbackURLError("callback_url must not have a #fragment")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise CallbackURLError("callback_url must not contain spaces or control characters")
    if parts.scheme == "http":
        if allow_http_loopback and _is_loopback(host):
            return url
        raise CallbackURLError("callback_url must use https")
    if _is_loopback(host):
        raise CallbackURLError("callback_url must not point at a loopback address")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return url  # a host name
    if not address.is_global:
        raise CallbackURLError("callback_url must not point at a private or reserved address")
    return url


# --- the delivery record ------------------------------------------------------------------------


def subscribe(session: Session, job_id: str, subscription: Subscription) -> str:
    """Record, with the job's own transaction, that the job's end is to be POSTed; returns its id."""
    now = utcnow()
    row = WebhookDelivery(id=new_id(), job_id=job_id, key_id=subscription.key_id, url=subscription.url,
                          state=DeliveryState.WAITING, attempts=0, created_at=now, updated_at=now)
    session.add(row)
    return row.id


def _make_due(session: Session, delivery_id: str, state: str, now: dt.datetime) -> bool:
    """waiting -> pending for a job that ended (compare-and-set: exactly one caller wins)."""
    return session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                      WebhookDelivery.state == DeliveryState.WAITING)
        .values(state=DeliveryState.PENDING, event=f"job.{state}", next_attempt_at=now, updated_at=now)
    ).rowcount == 1


def due_deliveries(sessions: sessionmaker[Session], job_id: str) -> list[str]:
    """Mark the job's webhook due if the job has ended and nobody did yet; returns the ids to send."""
    with sessions() as session:
        found = session.execute(
            select(WebhookDelivery.id, Job.state).join(Job, Job.id == WebhookDelivery.job_id)
            .where(WebhookDelivery.job_id == job_id, WebhookDelivery.state == DeliveryState.WAITING)
        ).all()
        now = utcnow()
        due = [d for d, state in found if state in TERMINAL_STATES and _make_due(session, d, state, now)]
        session.commit()
        return due


def announce(sessions: sessionmaker[Session], job_id: str, send: Callable[[str], object]) -> list[str]:
    """Send the webhook of a job that just ended, if it asked for one. Never raises: a webhook that
    could not be queued now is picked up by the workers' sweep."""
    try:
        due = due_deliveries(sessions, job_id)
    except Exception as exc:
        log.warning("job %s: webhook state not updated (the sweep will): %s", job_id, exc)
        return []
    for delivery_id in due:
        try:
            send(delivery_id)
        except Exception as exc:
            log.warning("webhook %s of job %s not queued (the sweep will): %s", delivery_id, job_id, exc)
    return due


def reclaim_deliveries(sessions: sessionmaker[Session], *, grace_s: float) -> list[str]:
    """Webhooks whose task went missing, to send again: jobs that ended ``grace_s`` ago with their
    webhook still waiting, and attempts overdue by ``grace_s`` (lost message, worker died mid-POST)."""
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=grace_s)
    out: list[str] = []
    with sessions() as session:
        ended = session.execute(
            select(WebhookDelivery.id, Job.state).join(Job, Job.id == WebhookDelivery.job_id)
            .where(WebhookDelivery.state == DeliveryState.WAITING, Job.state.in_(list(TERMINAL_STATES)),
                   Job.finished_at < cutoff)
        ).all()
        out += [d for d, state in ended if _make_due(session, d, state, now)]
        overdue = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.attempts).where(
                WebhookDelivery.state == DeliveryState.PENDING, WebhookDelivery.next_attempt_at < cutoff)
        ).all()
        for delivery_id, attempts in overdue:
            n = session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                              WebhookDelivery.state == DeliveryState.PENDING,
                                              WebhookDelivery.attempts == attempts,
                                              WebhookDelivery.next_attempt_at < cutoff)
                .values(next_attempt_at=now, updated_at=now)
            ).rowcount
            if n == 1:
                out.append(delivery_id)
        session.commit()
    if out:
        log.warning("re-sending %d webhooks whose task was lost", len(out))
    return out


# --- one attempt ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DeliveryResult:
    """How an attempt ended. ``status``: delivered, retry (again in ``retry_in`` seconds), failed
    (given up), or skipped (not due: already delivered, given up, another attempt running, missing)."""

    status: str
    retry_in: float | None = None
    http_status: int | None = None
    error: str | None = None


def retry_delay(attempts: int, base_s: float) -> float:
    """Seconds before the attempt after ``attempts`` failed ones: base, 3x base, 9x base, ..."""
    return base_s * RETRY_FACTOR ** max(0, attempts - 1)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not an instruction: following it would let a receiver aim the
    server elsewhere (and would turn the POST into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int | None, str | None]:
    """POST ``body``; returns (HTTP status or None, error or None). Never raises for network trouble."""
    opener = urllib.request.build_opener(_NoRedirects)
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            response.read(64 * 1024)  # the receiver's answer is not used; read some so it can finish
            return response.status, None
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return None, f"{type(exc.reason).__name__}: {exc.reason}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def deliver(runtime: Any, delivery_id: str) -> DeliveryResult:
    """One attempt at a due webhook (``runtime``: a :class:`pipeline.runtime.Runtime`).

    The attempt first leases the row (moves ``next_attempt_at`` past its own timeout), so two
    copies of the task never POST at once; then posts, then records what happened.
    """
    from .jobs import get_job
    from .representation import job_document, read_report

    settings = runtime.settings
    now = utcnow()
    with runtime.sessions() as session:
        row = session.get(WebhookDelivery, delivery_id)
        if row is None or row.state != DeliveryState.PENDING:
            return DeliveryResult("skipped")
        attempts, url, event, job_id = row.attempts, row.url, row.event, row.job_id
        lease = now + dt.timedelta(seconds=settings.webhook_timeout_s + 30)
        leased = session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                          WebhookDelivery.state == DeliveryState.PENDING,
                                          WebhookDelivery.attempts == attempts,
                                          WebhookDelivery.next_attempt_at <= now)
            .values(next_attempt_at=lease, updated_at=now)
        ).rowcount
        session.commit()
        if leased != 1:
            return DeliveryResult("skipped")  # not due yet, or another attempt holds it
        key = session.get(ApiKey, row.key_id)
        view = get_job(session, job_id)

    problem = None
    if key is None or not key.webhook_secret:
        problem = "the API key that asked for this webhook has no webhook secret"
    elif key.revoked_at is not None:
        problem = "the API key that asked for this webhook was revoked"
    else:
        try:
            check_callback_url(url, allow_http_loopback=settings.webhook_allow_http_loopback)
        except CallbackURLError as exc:
            problem = f"{exc} (no longer allowed)"
    if problem is not None:
        return _record(runtime, delivery_id, attempts, None, problem, final=True)

    report = read_report(runtime.store, view) if view.kind == "verify" else None
    body = json.dumps({"event": event, "job": job_document(view, report)}, separators=(",", ":"),
                      default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, EVENT_ID_HEADER: delivery_id,
               SIGNATURE_HEADER: signature_header(key.webhook_secret, body)}
    status, error = post(url, body, headers, settings.webhook_timeout_s)
    if status is not None and 200 <= status < 300:
        return _record(runtime, delivery_id, attempts, status, None, final=True)
    log.info("webhook %s (job %s) attempt %d failed: %s", delivery_id, job_id, attempts + 1, error)
    return _record(runtime, delivery_id, attempts, status, error or f"HTTP {status}",
                   final=attempts + 1 >= settings.webhook_max_attempts)


def _record(runtime: Any, delivery_id: str, attempts: int, status: int | None, error: str | None, *,
            final: bool) -> DeliveryResult:
    """Store an attempt's outcome (only if no other attempt moved the row on meanwhile)."""
    now = utcnow()
    values: dict[str, Any] = {"attempts": attempts + 1, "last_status": status, "updated_at": now,
                              "last_error": error[:MAX_ERROR_CHARS] if error else None}
    if error is None:
        values.update(state=DeliveryState.DELIVERED, delivered_at=now, next_attempt_at=None)
        result = DeliveryResult("delivered", http_status=status)
    elif final:
        values.update(state=DeliveryState.FAILED, next_attempt_at=None)
        result = DeliveryResult("failed", http_status=status, error=error)
    else:
        delay = retry_delay(attempts + 1, runtime.settings.webhook_retry_base_s)
        values.update(next_attempt_at=now + dt.timedelta(seconds=delay))
        result = DeliveryResult("retry", retry_in=delay, http_status=status, error=error)
    with runtime.sessions() as session:
        n = session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                          WebhookDelivery.state == DeliveryState.PENDING,
                                          WebhookDelivery.attempts == attempts)
            .values(**values)
        ).rowcount
        session.commit()
    if n != 1:
        return DeliveryResult("skipped")
    if result.status == "failed":
        log.warning("webhook %s: given up after %d attempts: %s", delivery_id, attempts + 1, error)
    return result
