"""Changing a password on the account page (current one required, sign-up's rules, CSRF, the
user's other sessions end) and resetting one with ``manage.py users set-password`` (Flask test
client and the real CLI over a real SQLite instance)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pipeline_helpers import ROOT, TESTS
from test_web_accounts import attempt, flash_text
from web_helpers import WebEnv, log_in, token


def change(client, current: str, new: str, new2: str | None = None, *, csrf: str | None = None):
    form = {"csrf_token": token(client, "/account") if csrf is None else csrf, "current_password": current,
            "new_password": new, "new_password2": new if new2 is None else new2}
    return client.post("/account/password", data=form)


def test_account_page_needs_a_log_in(client) -> None:
    assert client.get("/account").headers["Location"] == "/login?next=/account"
    refused = client.post("/account/password", data={"csrf_token": token(client), "current_password": "x",
                                                     "new_password": "long enough 1", "new_password2": "long enough 1"})
    assert refused.status_code == 401


@pytest.mark.parametrize(("current", "new", "new2", "message"), [
    ("not my password", "brand new pw 1", None, "The current password is wrong."),
    (None, "short", None, "at least 8 characters"),
    (None, "brand new pw 1", "brand new pw 2", "differ"),
    (None, "x" * 1025, None, "at most 1024 characters"),
])
def test_a_refused_change_says_why_and_changes_nothing(client, env: WebEnv, current, new, new2, message) -> None:
    email, password = env.account("henry")
    log_in(client, env, "henry")
    response = change(client, password if current is None else current, new, new2)
    assert response.status_code == 400 and message in flash_text(response)
    assert client.get("/keys").status_code == 200  # still logged in
    assert attempt(env.app().test_client(), email, password).status_code == 303  # the password is unchanged


def test_the_change_needs_the_csrf_token(client, env: WebEnv) -> None:
    email, password = env.account("irene")
    log_in(client, env, "irene")
    for csrf in ("", "forged"):
        response = change(client, password, "brand new pw 1", csrf=csrf)
        assert response.status_code == 400 and "did not come from this site" in response.get_data(as_text=True)
    assert attempt(env.app().test_client(), email, password).status_code == 303


def test_changing_the_password_logs_out_the_other_sessions(client, env: WebEnv) -> None:
    email, old = env.account("judy")
    log_in(client, env, "judy")
    laptop = env.app().test_client()
    log_in(laptop, env, "judy")
    page = client.get("/account")
    assert page.status_code == 200 and "Change your password" in page.get_data(as_text=True)
    assert 'href="/account"' in page.get_data(as_text=True)  # the header's email leads here

    changed = change(client, old, "judy's new passphrase")
    assert changed.status_code == 303 and changed.headers["Location"] == "/account"
    assert "Your password is changed." in flash_text(client.get("/account"))
    assert client.get("/keys").status_code == 200  # this session goes on...
    assert laptop.get("/keys").headers["Location"] == "/login?next=/keys"  # ...the other one ended
    assert laptop.get("/sign").status_code == 302

    assert attempt(env.app().test_client(), email, old).status_code == 401
    assert attempt(laptop, email, "judy's new passphrase").status_code == 303
    assert laptop.get("/keys").status_code == 200


def test_a_wrong_current_password_counts_against_the_log_in_limit(env: WebEnv) -> None:
    _, password = env.account("karl")
    client = env.app(web_login_rate_burst=3, web_login_rate_per_minute=1).test_client()
    log_in(client, env, "karl")  # the first of the 3
    assert [change(client, "guess", "brand new pw 1").status_code for _ in range(2)] == [400, 400]
    assert change(client, password, "brand new pw 1").status_code == 429


def manage(env: WebEnv, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    run_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    for name in ("VERIFRAME_INSTANCE", "DATABASE_URL", "CELERY_BROKER_URL"):
        run_env.pop(name, None)
    # A new session has no terminal to prompt on, so the password comes from stdin.
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), "--instance", str(env.settings.instance),
                           "users", *args], input=stdin, capture_output=True, text=True, env=run_env,
                          start_new_session=True, timeout=120)


def test_users_cli_sets_a_password_and_ends_the_users_sessions(client, env: WebEnv) -> None:
    email, old = env.account("lena")
    log_in(client, env, "lena")
    done = manage(env, "set-password", "--email", "  LENA@example.com", stdin="reset by admin 1\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "set a new password for lena@example.com; its portal sessions have ended\n"
    assert "reset by admin 1" not in done.stdout + done.stderr
    assert client.get("/keys").status_code == 302  # the session ended
    assert attempt(client, email, old).status_code == 401
    assert attempt(env.app().test_client(), email, "reset by admin 1").status_code == 303


@pytest.mark.parametrize(("email", "password", "message"), [
    ("nobody@example.com", "long enough 1", "no user with email 'nobody@example.com'"),
    ("mia@example.com", "short", "at least 8 characters"),
    ("mia@example.com", "", "at least 8 characters"),
])
def test_users_cli_set_password_refuses_an_unknown_email_or_a_weak_password(env: WebEnv, email, password,
                                                                            message) -> None:
    _, kept = env.account("mia")
    refused = manage(env, "set-password", "--email", email, stdin=f"{password}\n")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1 and message in refused.stderr
    assert attempt(env.app().test_client(), "mia@example.com", kept).status_code == 303
