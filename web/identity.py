"""Who is visiting the portal, and the CSRF check of its forms.

A visitor is a logged-in user (the session holds the user's id and session version, checked
against the user's row on every request, so disabling the account or changing its password ends
its other sessions at once) or, where ``web_public_verify`` allows it, an anonymous visitor who may
verify clips and whose jobs belong to their browser session alone (``portal:<random>``, the random
part kept in the signed session cookie). Jobs and artifacts are always looked up with the
visitor's owner, so anyone else's are a 404.

Logging in (or signing up) starts a new session, so no identity or CSRF token from before it
carries over (the session is a signed cookie: there is no server-side id to fixate). The jobs of
the anonymous identity it replaces move into the account first, so a visitor who verified before
logging in keeps them in their history; only that identity's jobs move, and only someone able to
set this site's cookies in the browser could make it name theirs.

Every POST of the portal carries the session's CSRF token (a hidden field, or ``X-CSRF-Token`` from
app.js) and counts against the per-address rate limit; the session cookie is HttpOnly and
SameSite=Lax (Secure with ``web_secure_cookies``).
"""

from __future__ import annotations

import functools
import hmac
import re
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import g, redirect, request, session, url_for

from . import web_state
from .api import client_address, rate_limit
from .errors import Problem
from .users import User

LOG_IN_FIRST = "log in first: signing and generating are for creators with an account"
ANONYMOUS_OWNER_PREFIX = "portal:"  # owner of an anonymous visitor's jobs: "portal:<32 hex>"
_ANONYMOUS_ID = re.compile(r"[0-9a-f]{32}")


def csrf_token() -> str:
    """The session's CSRF token (made on first use) for the forms of a page."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def protect_forms() -> None:
    """``before_request`` of the portal's blueprints: a POST needs the session's CSRF token (400
    without it) and is rate-limited per client address."""
    if request.method != "POST":
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        raise Problem(400, "the form expired or did not come from this site; reload the page and try again",
                      title="Bad Request")
    settings = web_state().settings
    rate_limit(f"ip:{client_address()}", settings.ip_rate_per_minute, settings.api_rate_burst)


def limit_login_attempts() -> None:
    """Log-in and sign-up attempts per client address (429 past ``web_login_rate_*``)."""
    settings = web_state().settings
    rate_limit(f"login:{client_address()}", settings.web_login_rate_per_minute, settings.web_login_rate_burst)


def current_user() -> User | None:
    """The logged-in, enabled user of this request, or None (the session of a disabled user, or one
    older than the user's last password change, ends here)."""
    if "vf_user" not in g:
        user_id = session.get("user_id")
        user = web_state().users.get(user_id) if isinstance(user_id, str) else None
        if user is not None and (user.disabled or session.get("session_version", 0) != user.session_version):
            user = None
        if user is None and user_id is not None:
            session.clear()
        g.vf_user = user
    return g.vf_user


def _anonymous_owner() -> str | None:
    """The owner of this session's anonymous jobs, if it made any identity for them."""
    anon = session.get("anon")
    return ANONYMOUS_OWNER_PREFIX + anon if isinstance(anon, str) and _ANONYMOUS_ID.fullmatch(anon) else None


def log_in(user: User) -> int:
    """Start a fresh session for ``user``: a new identity gets a new session (and CSRF token).

    The jobs this browser made anonymously move into the account first (only that session's
    owner's, which the signed cookie names), so that a failure leaves the old session as it was.
    Returns how many moved."""
    anonymous = _anonymous_owner()
    moved = web_state().pipeline.transfer_jobs(anonymous, user.owner) if anonymous else 0
    session.clear()
    session["user_id"] = user.id
    session["session_version"] = user.session_version
    g.vf_user = user
    return moved


def log_out() -> None:
    session.clear()
    g.vf_user = None


def visitor_owner(*, creator: bool = False) -> str:
    """The owner whose jobs this visitor sees and makes; Problem 401 when they may not.

    ``creator``: signing and generating, which need an account; otherwise (verify, reading jobs) an
    anonymous visitor is allowed while ``web_public_verify`` is on."""
    user = current_user()
    if user is not None:
        return user.owner
    if not creator and web_state().settings.web_public_verify:
        owner = _anonymous_owner()
        if owner is None:
            session["anon"] = secrets.token_hex(16)
            owner = ANONYMOUS_OWNER_PREFIX + session["anon"]
        return owner
    raise Problem(401, LOG_IN_FIRST if creator else "this instance verifies for logged-in users only: log in first")


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site (where to go after logging in), else None: never
    another site (``//evil.example``, ``https://...``, ``/\\evil.example``)."""
    if not target or len(target) > 2000 or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or target.startswith("//"):
        return None
    return target


def login_url() -> str:
    """The log-in page, coming back to this page afterwards."""
    return url_for("account.login", next=request.full_path.rstrip("?"))


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Pages for logged-in users: a GET without one goes to the log-in page, any other method is 401."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            if request.method in ("GET", "HEAD"):
                return redirect(login_url())
            raise Problem(401, LOG_IN_FIRST)
        return view(*args, **kwargs)

    return wrapper
