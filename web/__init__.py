"""Flask application factory: ``create_app()`` wires settings, blueprints and error handlers."""

from __future__ import annotations

from typing import Any

from flask import Flask

from settings import load_settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; config comes from veriframe settings, then ``FLASK_*`` env, then ``config``."""
    app = Flask(__name__)
    settings = load_settings()
    app.config.update(VERIFRAME_SETTINGS=settings, MAX_CONTENT_LENGTH=settings.max_bytes)
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)

    from .api import bp as api_bp
    from .portal import bp as portal_bp

    app.register_blueprint(portal_bp)
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    return app
