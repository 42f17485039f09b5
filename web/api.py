"""The JSON API under ``/api/v1``; every error is ``application/problem+json``."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from werkzeug.exceptions import HTTPException

bp = Blueprint("api", __name__)


@bp.get("/health")
def health():
    settings = current_app.config["VERIFRAME_SETTINGS"]
    from importlib.metadata import version

    return jsonify(status="ok", version=version("veriframe"), instance=str(settings.instance))


@bp.app_errorhandler(HTTPException)
def problem(exc: HTTPException):
    body = {"type": "about:blank", "title": exc.name, "status": exc.code, "detail": exc.description}
    response = jsonify(body)
    response.status_code = exc.code or 500
    response.mimetype = "application/problem+json"
    return response
