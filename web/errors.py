"""Error handlers: RFC 9457 ``application/problem+json`` under ``/api/`` (and for a portal request that
asks for JSON), a small HTML page elsewhere.

Library errors map to statuses here, once: a missing (or someone else's) job is 404, bad job
parameters 400, media we do not read 415, media over a limit 413.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

PROBLEM_TYPE = "about:blank"


class Problem(HTTPException):
    """An HTTP error with problem+json extension members (``errors``, ``retry_after``...)."""

    def __init__(self, code: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(description=detail)
        self.code = code
        self.title = title
        self.extra = extra
        self.extra_headers = headers or {}


def status_for(exc: BaseException) -> int | None:
    """The HTTP status a library error maps to, or None for a bug."""
    from media.errors import EmptyMediaError, LimitExceededError, MediaError
    from pipeline.errors import JobInputError, JobNotFoundError

    if isinstance(exc, JobNotFoundError):
        return 404
    if isinstance(exc, LimitExceededError):
        return 413
    if isinstance(exc, EmptyMediaError | JobInputError):
        return 400
    if isinstance(exc, MediaError):
        return 415
    return None


def _wants_problem() -> bool:
    """JSON for the API, and for the portal's script (app.js asks for JSON); HTML for pages."""
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def problem_body(code: int, detail: str, *, title: str | None = None, **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem document (also used per item, inside a batch's answer)."""
    from werkzeug.http import HTTP_STATUS_CODES

    return {"type": PROBLEM_TYPE, "title": title or HTTP_STATUS_CODES.get(code, "Error"), "status": code,
            "detail": detail, "instance": request.path, **extra}


def problem_response(code: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None,
                     **extra: Any):
    response = jsonify(problem_body(code, detail, title=title, **extra))
    response.status_code = code
    response.mimetype = "application/problem+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _render(code: int, detail: str, title: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any):
    if _wants_problem():
        return problem_response(code, detail, title=title, headers=headers, **extra)
    from werkzeug.http import HTTP_STATUS_CODES

    html = render_template("error.html", status=code, title=title or HTTP_STATUS_CODES.get(code, "Error"),
                           detail=detail)
    return html, code, headers or {}


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if isinstance(exc, Problem):
            return _render(exc.code, exc.description, exc.title, exc.extra_headers, **exc.extra)
        headers = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "www-authenticate", "retry-after")}
        return _render(exc.code or 500, exc.description or exc.name, exc.name, headers)

    @app.errorhandler(Exception)
    def library_error(exc: Exception):
        code = status_for(exc)
        if code is None:
            app.logger.exception("unhandled error on %s %s", request.method, request.path)
            return _render(500, InternalServerError.description)
        return _render(code, str(exc))
