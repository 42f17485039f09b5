"""The JSON API under ``/api/v1``; every error is ``application/problem+json``.

Authentication is ``Authorization: Bearer <API key>``; a key's scopes (verify, generate, sign)
decide what it may submit, and its owner decides what it may read: another owner's job or
artifact is a 404, never a 403, so ids reveal nothing. Jobs are asynchronous: a submission answers
202 with the job and a ``Location`` to poll (or 200 when an optional ``wait`` saw it end), and may
name a ``callback_url`` to be sent the job, signed, when it ends (docs/webhooks.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any
from uuid import UUID

from flask import Blueprint, g, jsonify, request, send_file, url_for
from werkzeug.utils import secure_filename

from pipeline.models import JobKind, JobState
from pipeline.representation import API_ROOT, KIND_COLLECTION, job_document, job_url
from pipeline.webhooks import CallbackURLError, Subscription, check_callback_url

from . import web_state
from .errors import Problem, problem_body, status_for
from .uploads import received

bp = Blueprint("api", __name__)

MAX_PAGE = 100


# --- authentication, scopes, rate limits ------------------------------------------------------------


def client_address() -> str:
    return request.remote_addr or "unknown"


def rate_limit(bucket: str, per_minute: int, burst: int) -> None:
    decision = web_state().limiter.hit(bucket, per_minute / 60.0, burst)
    if not decision.allowed:
        retry = max(1, math.ceil(decision.retry_after_s))
        raise Problem(429, f"rate limit exceeded; retry in {retry} s", headers={"Retry-After": str(retry)},
                      retry_after=retry)


def authenticate():  # -> web.apikeys.KeyInfo
    """The caller's key from ``Authorization: Bearer``; Problem 401 without a valid one."""
    state = web_state()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    key = state.keys.authenticate(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if key is None:
        # Failed attempts are limited per client address, so guessing costs time.
        rate_limit(f"ip:{client_address()}", state.settings.ip_rate_per_minute, state.settings.api_rate_burst)
        raise Problem(401, "a valid API key is required (Authorization: Bearer <key>)",
                      headers={"WWW-Authenticate": 'Bearer realm="veriframe"'})
    return key


def require(scope: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate, rate-limit per key, and check ``scope`` (403 when the key lacks it)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = authenticate()
            settings = web_state().settings
            rate_limit(f"key:{key.id}", settings.api_rate_per_minute, settings.api_rate_burst)
            if scope is not None and scope not in key.scopes:
                raise Problem(403, f"this API key lacks the '{scope}' scope", required_scope=scope)
            g.api_key = key
            return view(*args, **kwargs)

        return wrapper

    return decorate


def owner() -> str:
    return g.api_key.owner


# --- representations ----------------------------------------------------------------------------------


def _root() -> str:
    return request.script_root + API_ROOT


def job_json(view: Any, *, with_report: bool = False) -> dict[str, Any]:
    """The job as GET /<kind>/{id} shows it (``pipeline.representation``, which webhooks send too)."""
    report = None
    if with_report and view.kind == "verify" and view.state == JobState.SUCCEEDED:
        report = web_state().pipeline.report_of(view)  # the view is already read and owner-checked
    return job_document(view, report, root=_root())


def _accepted(view: Any, wait_s: float) -> Any:
    pipeline = web_state().pipeline
    if wait_s > 0 and not view.done:
        try:
            view = pipeline.wait(view.id, timeout=wait_s, poll_s=0.1)
        except TimeoutError:
            view = pipeline.get(view.id)
    response = jsonify(job_json(view, with_report=True))
    response.status_code = 200 if view.done else 202
    response.headers["Location"] = job_url(view, _root())
    return response


def _wait_seconds() -> float:
    raw = request.values.get("wait", "0")
    try:
        value = float(raw)
    except ValueError:
        raise Problem(400, "'wait' must be a number of seconds", errors=[{"field": "wait", "message": "number"}]) \
            from None
    if not math.isfinite(value) or value < 0:
        raise Problem(400, "'wait' must be a non-negative number of seconds")
    return min(value, web_state().settings.api_max_wait_s)


def _idempotency_key(limit: int = 128) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= limit:
        raise Problem(400, f"Idempotency-Key must be 1 to {limit} characters")
    return key


def _webhook(raw: Any) -> Subscription | None:
    """The webhook a submission's ``callback_url`` asks for (None without one); Problem 422 when
    veriframe will not call that URL or the key has no webhook secret to sign with."""
    if raw is None or raw == "":
        return None
    try:
        if not isinstance(raw, str):
            raise CallbackURLError("callback_url must be a string")
        url = check_callback_url(raw, allow_http_loopback=web_state().settings.webhook_allow_http_loopback)
    except CallbackURLError as exc:
        raise Problem(422, str(exc), errors=[{"field": "callback_url", "message": str(exc)}]) from None
    if not g.api_key.webhooks:
        detail = "this API key has no webhook secret (it predates webhooks): create a new key to use callback_url"
        raise Problem(422, detail, errors=[{"field": "callback_url", "message": "no webhook secret"}])
    return Subscription(url, g.api_key.id)


# --- endpoints ------------------------------------------------------------------------------------


@bp.get("/health")
def health():
    from . import package_version

    return jsonify(status="ok", version=package_version(), instance=web_state().settings.instance.name)


@bp.get("/openapi.json")
def openapi():
    from .openapi import document

    return jsonify(document(batch_max_files=web_state().settings.api_batch_max_files))


@bp.post("/verifications")
@require("verify")
def create_verification():
    wait_s = _wait_seconds()
    webhook = _webhook(request.form.get("callback_url"))
    with received(request.files.get("file"), web_state().settings) as upload:
        view = web_state().pipeline.submit_verify(upload.path, filename=upload.filename, owner=owner(),
                                                  idempotency_key=_idempotency_key(), webhook=webhook)
    return _accepted(view, wait_s)


@bp.post("/verifications/batch")
@require("verify")
def create_verification_batch():
    """Several clips at once: one verify job per ``file`` part. A file that cannot be read gets its
    own problem in the answer; the others are queued all the same (202)."""
    settings, pipeline = web_state().settings, web_state().pipeline
    files = request.files.getlist("file")
    if not files:
        raise Problem(400, "send the clips as multipart/form-data fields named 'file'",
                      errors=[{"field": "file", "message": "required"}])
    if len(files) > settings.api_batch_max_files:
        raise Problem(400, f"a batch holds at most {settings.api_batch_max_files} files, not {len(files)}",
                      errors=[{"field": "file", "message": f"at most {settings.api_batch_max_files}"}])
    webhook = _webhook(request.form.get("callback_url"))
    key = _idempotency_key(limit=120)  # each file's job gets "<key>:<index>"
    items: list[dict[str, Any]] = []
    for index, file in enumerate(files):
        item: dict[str, Any] = {"index": index, "filename": secure_filename(file.filename or "") or None}
        try:
            with received(file, settings) as upload:
                view = pipeline.submit_verify(upload.path, filename=upload.filename, owner=owner(), webhook=webhook,
                                              idempotency_key=f"{key}:{index}" if key else None)
        except Problem as problem:
            item.update(status=problem.code, problem=problem_body(problem.code, problem.description,
                                                                  title=problem.title, **problem.extra))
        except Exception as exc:
            code = status_for(exc)
            if code is None:
                raise  # a bug, not this file's fault
            item.update(status=code, problem=problem_body(code, str(exc)))
        else:
            item.update(status=202, id=view.id, state=view.state, location=job_url(view, _root()))
        items.append(item)
    accepted = sum(1 for item in items if "id" in item)
    response = jsonify(items=items, accepted=accepted, rejected=len(items) - accepted)
    response.status_code = 202
    return response


def _flag(name: str, default: bool) -> bool:
    raw = request.form.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise Problem(400, f"'{name}' must be true or false", errors=[{"field": name, "message": "boolean"}])


def _text(name: str, limit: int = 200) -> str | None:
    value = (request.form.get(name) or "").strip()
    if len(value) > limit:
        raise Problem(400, f"'{name}' is longer than {limit} characters", errors=[{"field": name, "message": "long"}])
    return value or None


@bp.post("/signatures")
@require("sign")
def create_signature():
    from pipeline.work import SOURCES

    wait_s = _wait_seconds()
    source = request.form.get("source", "capture")
    if source not in SOURCES:
        raise Problem(400, f"'source' must be one of {', '.join(SOURCES)}",
                      errors=[{"field": "source", "message": f"one of {', '.join(SOURCES)}"}])
    title, author, watermark = _text("title"), _text("author"), _flag("watermark", True)
    webhook = _webhook(request.form.get("callback_url"))
    with received(request.files.get("file"), web_state().settings) as upload:
        view = web_state().pipeline.submit_sign(upload.path, filename=upload.filename, source=source, title=title,
                                                author=author, watermark=watermark, owner=owner(),
                                                idempotency_key=_idempotency_key(), webhook=webhook)
    return _accepted(view, wait_s)


# Generation options a client may set; model paths (config, checkpoint) are the operator's choice.
GENERATION_FIELDS: dict[str, tuple[type | tuple[type, ...], float | None, float | None]] = {
    "prompt": (str, 1, 2000), "negative": (str, 0, 2000), "title": (str, 0, 200),
    "width": (int, 16, 4096), "height": (int, 16, 4096), "seconds": ((int, float), 0.04, 600),
    "fps": ((int, float), 1, 120), "steps": (int, 1, 1000), "cfg": ((int, float), 0, 50),
    "seed": (int, 0, 2**31 - 1), "include_prompt": (bool, None, None),
}


def generation_request(body: Any) -> dict[str, Any]:
    """The validated JSON body of ``POST /generations`` (Problem 400 listing every bad field)."""
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    errors = [{"field": k, "message": "unknown field"} for k in body if k not in GENERATION_FIELDS]
    for name, (kind, low, high) in GENERATION_FIELDS.items():
        value = body.get(name)
        if value is None:
            if name == "prompt":
                errors.append({"field": name, "message": "required"})
            continue
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            errors.append({"field": name, "message": "wrong type"})
        elif isinstance(value, str) and not low <= len(value) <= high:
            errors.append({"field": name, "message": f"length must be within {low:g}..{high:g}"})
        elif name == "prompt" and not value.strip():
            errors.append({"field": name, "message": "blank"})
        elif isinstance(value, int | float) and not isinstance(value, bool) and not low <= value <= high:
            errors.append({"field": name, "message": f"must be within {low:g}..{high:g}"})
    if errors:
        raise Problem(400, "the generation request is invalid", errors=errors)
    return {k: v for k, v in body.items() if v is not None}


@bp.post("/generations")
@require("generate")
def create_generation():
    if not request.is_json:
        raise Problem(415, "send the generation request as application/json", title="Unsupported Media Type")
    body = request.get_json(silent=True)
    webhook = _webhook(body.pop("callback_url", None)) if isinstance(body, dict) else None
    params = generation_request(body)
    wait_s = _wait_seconds()
    prompt = params.pop("prompt")
    include_prompt, title = params.pop("include_prompt", False), params.pop("title", None)
    view = web_state().pipeline.submit_generate(prompt, owner=owner(), idempotency_key=_idempotency_key(),
                                                include_prompt=include_prompt, title=title, webhook=webhook,
                                                **params)
    return _accepted(view, wait_s)


# Ids are UUIDs (as the document says); the converter also keeps "/verifications/batch" from
# reading as the job "batch", which made OPTIONS on it advertise a GET.
@bp.get("/<any(verifications, signatures, generations):collection>/<uuid:job_id>")
@require()
def get_typed_job(collection: str, job_id: UUID):
    view = web_state().pipeline.get(str(job_id), owner=owner())
    if KIND_COLLECTION[view.kind] != collection:
        raise Problem(404, f"no {collection[:-1]} {job_id}")
    return jsonify(job_json(view, with_report=True))


@bp.get("/jobs/<uuid:job_id>")
@require()
def get_job(job_id: UUID):
    return jsonify(job_json(web_state().pipeline.get(str(job_id), owner=owner())))


@bp.delete("/jobs/<uuid:job_id>")
@require()
def cancel_job(job_id: UUID):
    return jsonify(job_json(web_state().pipeline.cancel(str(job_id), owner=owner())))


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Problem(400, f"'{name}' must be an integer within {low}..{high}",
                      errors=[{"field": name, "message": f"integer within {low}..{high}"}])
    return value


@bp.get("/jobs")
@require()
def list_jobs():
    limit, offset = _int_arg("limit", 20, 1, MAX_PAGE), _int_arg("offset", 0, 0, 10**9)
    kind, state = request.args.get("kind") or None, request.args.get("state") or None
    if kind is not None and kind not in set(JobKind):
        raise Problem(400, f"'kind' must be one of {', '.join(JobKind)}")
    if state is not None and state not in set(JobState):
        raise Problem(400, f"'state' must be one of {', '.join(JobState)}")
    views = web_state().pipeline.list_jobs(owner=owner(), kind=kind, state=state, limit=limit + 1, offset=offset)
    more = len(views) > limit
    filters = {k: v for k, v in (("kind", kind), ("state", state)) if v}
    return jsonify(
        items=[job_json(v) for v in views[:limit]], limit=limit, offset=offset,
        next=url_for("api.list_jobs", limit=limit, offset=offset + limit, **filters) if more else None,
        previous=url_for("api.list_jobs", limit=limit, offset=max(0, offset - limit), **filters) if offset else None,
    )


@bp.get("/artifacts/<uuid:artifact_id>")
@require()
def download_artifact(artifact_id: UUID):
    view, stream = web_state().pipeline.open_artifact(str(artifact_id), owner=owner())
    response = send_file(stream, mimetype=view.media_type, as_attachment=True,
                         download_name=view.filename or f"{view.id}.bin", etag=view.sha256, max_age=0)
    response.headers["Content-Length"] = str(view.size)
    return response


def manifest_of(view: Any) -> bytes | None:
    """The manifest store of a job: the one it signed, or the one a verified clip points to."""
    pipeline = web_state().pipeline
    item = view.artifact("manifest")
    if item is not None:
        with pipeline.runtime.store.open(item.sha256) as fh:
            return fh.read()
    if view.kind == "verify" and view.state == JobState.SUCCEEDED:
        report = pipeline.report(view.id)
        payload = (report.get("watermark") or {}).get("payload")
        sha = (report.get("file") or {}).get("sha256")
        if payload:
            return pipeline.manifest_bytes(payload=payload)
        return pipeline.manifest_bytes(asset_sha256=sha) if sha else None
    return None


@bp.get("/manifests/<uuid:job_id>")
@require()
def get_manifest(job_id: UUID):
    import io

    view = web_state().pipeline.get(str(job_id), owner=owner())
    data = manifest_of(view)
    if data is None:
        raise Problem(404, f"job {job_id} has no Content Credentials manifest")
    return send_file(io.BytesIO(data), mimetype="application/c2pa", as_attachment=True,
                     download_name=f"{job_id}.c2pa", max_age=0)
