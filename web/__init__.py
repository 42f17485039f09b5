"""Flask application factory: ``create_app()`` wires settings, the pipeline, blueprints and errors.

Configuration: veriframe settings (defaults < ``<instance>/config.toml`` < ``VERIFRAME_*``), then
``FLASK_*`` environment variables (``FLASK_SECRET_KEY``), then the ``config`` argument. Without a
configured secret key one is generated once and kept in ``<instance>/web_secret_key`` (mode 0600),
so sessions survive restarts and every process of the instance shares it.
"""

from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from settings import Settings, load_settings, write_private

# Same-origin everything; no inline script or style, no framing (clickjacking), no plugins.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
EXTENSION_KEY = "veriframe.web"


@dataclass
class WebState:
    """What the blueprints share: the API key and user stores (made on first use) and the rate limiter."""

    settings: Settings
    pipeline: Any  # pipeline.Pipeline
    limiter: Any  # web.ratelimit.MemoryLimiter | RedisLimiter

    @functools.cached_property
    def keys(self):  # -> web.apikeys.KeyStore
        from .apikeys import KeyStore

        return KeyStore(self.pipeline.runtime.engine)

    @functools.cached_property
    def users(self):  # -> web.users.UserStore
        from .users import UserStore

        return UserStore(self.pipeline.runtime.engine)


def package_version() -> str:
    """veriframe's installed version ("0+unknown" when run from a checkout that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("veriframe")
    except PackageNotFoundError:
        return "0+unknown"


def web_state() -> WebState:
    return current_app.extensions[EXTENSION_KEY]


def _secret_key(settings: Settings) -> str:
    path = settings.instance / "web_secret_key"
    if not path.exists():
        draft = path.with_name(f".web_secret_key.{os.getpid()}")
        write_private(draft, secrets.token_urlsafe(48))
        try:
            os.link(draft, path)  # atomic and exclusive: the first process's key wins, the others read it
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip()


def create_app(config: dict[str, Any] | None = None, *, pipeline: Any = None) -> Flask:
    """Build the app. ``pipeline``: a ready ``pipeline.Pipeline`` (tests); else one from settings."""
    app = Flask(__name__)
    config = dict(config or {})
    settings = config.pop("VERIFRAME_SETTINGS", None) or load_settings()
    app.config.update(
        VERIFRAME_SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.web_max_upload_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.web_secure_cookies,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
    )
    app.config.from_prefixed_env()
    app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        settings.instance.mkdir(parents=True, exist_ok=True)
        app.config["SECRET_KEY"] = _secret_key(settings)

    from pipeline import Pipeline

    from .ratelimit import limiter_for

    (pipeline or Pipeline(settings)).init_app(app)
    app.extensions[EXTENSION_KEY] = WebState(settings, app.extensions["veriframe.pipeline"],
                                             limiter_for(settings.broker_url))

    from pipeline.representation import API_ROOT

    from . import errors
    from .account import bp as account_bp
    from .api import bp as api_bp
    from .portal import bp as portal_bp

    errors.init_app(app)
    app.register_blueprint(portal_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(api_bp, url_prefix=API_ROOT)  # where the job links (and webhooks) point

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    return app
