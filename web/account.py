"""Portal account pages: sign up, log in, log out, change the password, and a user's API keys.

Log-in answers the same "wrong email or password" for an unknown email, a wrong password and a
disabled account, and attempts are rate-limited per client address. Sign-up is open when
``Settings.signup_open`` says so (``web_signup``); otherwise an administrator creates accounts
with ``manage.py users create``. API keys made here are owned by the user, so the jobs made with
them are the same list as the user's portal jobs; a new key and its webhook secret are shown once.

Logging in or signing up moves the clips the visitor verified anonymously in this browser into
the account. Changing the password needs the current one (attempts count against the log-in limit,
as guessing it is guessing a password) and ends the user's other sessions; this one starts afresh.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from . import web_state
from .apikeys import SCOPES, ApiKeyError, KeyInfo, NewKey
from .errors import Problem
from .identity import current_user, limit_login_attempts, log_in, log_out, login_required, protect_forms, safe_next
from .users import PASSWORD_MIN, AccountError, User

bp = Blueprint("account", __name__)
bp.before_request(protect_forms)

WRONG_LOGIN = "Wrong email or password."


def _after_login():
    return redirect(safe_next(request.values.get("next")) or url_for("portal.jobs"), code=303)


def _start_session(user: User, greeting: str) -> None:
    """Log ``user`` in and say so, and say which anonymous jobs came along."""
    moved = log_in(user)
    if moved:
        greeting += (f" The {moved} clip{'s' if moved != 1 else ''} you verified before logging in "
                     f"{'are' if moved != 1 else 'is'} now in your jobs.")
    flash(greeting)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        limit_login_attempts()
        email = (request.form.get("email") or "").strip()
        user = web_state().users.authenticate(email, request.form.get("password") or "")
        if user is None:
            flash(WRONG_LOGIN, "error")
            return render_template("login.html", email=email), 401
        _start_session(user, f"Logged in as {user.email}.")
        return _after_login()
    if current_user() is not None:
        return _after_login()
    return render_template("login.html", email="")


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if not web_state().settings.signup_open:
        raise Problem(403, "sign-up is closed on this instance: ask its administrator for an account",
                      title="Sign-up closed")
    if request.method == "POST":
        limit_login_attempts()
        email = (request.form.get("email") or "").strip()
        password = request.form.get("password") or ""
        try:
            if password != (request.form.get("password2") or ""):
                raise AccountError("the two passwords differ")
            user = web_state().users.create(email, password)
        except AccountError as exc:
            flash(f"{str(exc).capitalize()}.", "error")
            return render_template("signup.html", email=email), 400
        _start_session(user, f"Welcome: your account {user.email} is ready.")
        return _after_login()
    return render_template("signup.html", email="")


@bp.post("/logout")
def logout():
    log_out()
    flash("Logged out.")
    return redirect(url_for("portal.verify_page"), code=303)


@bp.get("/account")
@login_required
def account():
    return render_template("account.html", password_min=PASSWORD_MIN)


@bp.post("/account/password")
@login_required
def change_password():
    limit_login_attempts()
    new = request.form.get("new_password") or ""
    try:
        if new != (request.form.get("new_password2") or ""):
            raise AccountError("the two new passwords differ")
        user = web_state().users.change_password(current_user().id, request.form.get("current_password") or "", new)
    except AccountError as exc:
        flash(f"{str(exc).capitalize()}.", "error")
        return render_template("account.html", password_min=PASSWORD_MIN), 400
    log_in(user)  # a fresh session holding the new session version; the others have ended
    flash("Your password is changed. Any other session of your account is logged out.")
    return redirect(url_for("account.account"), code=303)


def _keys_page(status: int = 200, new_key: NewKey | None = None, name: str = ""):
    user = current_user()
    keys = web_state().keys.list(owner=user.owner)
    response = render_template("keys.html", keys=sorted(keys, key=lambda k: (k.revoked_at is not None, k.created_at)),
                               scopes=SCOPES, new=new_key, name=name)
    return response, status, {"Cache-Control": "no-store"}  # a new key is on it: never cached


@bp.get("/keys")
@login_required
def keys():
    return _keys_page()


@bp.post("/keys")
@login_required
def create_key():
    name = (request.form.get("name") or "").strip()
    try:
        new = web_state().keys.create(name, request.form.getlist("scopes"), owner=current_user().owner)
    except ApiKeyError as exc:
        flash(f"{str(exc).capitalize()}.", "error")
        return _keys_page(400, name=name)
    return _keys_page(201, new_key=new)


def _own_key(key_id: str) -> KeyInfo:
    key = web_state().keys.get(key_id)
    if key is None or key.owner != current_user().owner:
        abort(404)
    return key


@bp.get("/keys/<key_id>/revoke")
@login_required
def confirm_revoke(key_id: str):
    return render_template("key_revoke.html", key=_own_key(key_id))


@bp.post("/keys/<key_id>/revoke")
@login_required
def revoke_key(key_id: str):
    key = _own_key(key_id)
    web_state().keys.revoke(key.id, owner=key.owner)
    flash(f"Revoked the key “{key.name}”: requests with it are refused from now on.")
    return redirect(url_for("account.keys"), code=303)
