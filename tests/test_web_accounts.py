"""Portal accounts with the Flask test client: sign-up, log in and out, no user enumeration, the
log-in rate limit, CSRF, owners' jobs, the API keys page (and its keys against /api/v1), and
``manage.py users``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from pipeline_helpers import ROOT, TESTS
from web_helpers import WebEnv, log_in, token

API = "/api/v1"


def sign_up(client, email: str, password: str = "long enough pw", password2: str | None = None):
    form = {"csrf_token": token(client, "/signup"), "email": email, "password": password,
            "password2": password if password2 is None else password2}
    return client.post("/signup", data=form)


def attempt(client, email: str, password: str):
    return client.post("/login", data={"csrf_token": token(client, "/login"), "email": email, "password": password})


def flash_text(response) -> str:
    return " ".join(re.findall(r'<p class="flash[^"]*"[^>]*>([^<]*)</p>', response.get_data(as_text=True)))


def test_sign_up_log_out_and_log_in_again(client) -> None:
    response = sign_up(client, "  Erin@Example.COM ")
    assert response.status_code == 303 and response.headers["Location"] == "/jobs"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "erin@example.com" in client.get("/jobs").get_data(as_text=True)  # stored lower-case

    assert client.post("/logout", data={"csrf_token": token(client)}).status_code == 303
    assert "erin@example.com" not in client.get("/verify").get_data(as_text=True)
    assert client.get("/sign").status_code == 302

    again = attempt(client, "ERIN@example.com", "long enough pw")
    assert again.status_code == 303 and "Logged in as erin@example.com" in flash_text(client.get("/jobs"))
    assert client.get("/sign").status_code == 200


def test_secure_cookies_when_configured(env: WebEnv) -> None:
    client = env.app(web_secure_cookies=True).test_client()
    client.get("/login")
    assert "Secure" in sign_up(client, "sec@example.com").headers["Set-Cookie"]


@pytest.mark.parametrize(("email", "password", "password2", "message"), [
    ("not-an-email", "long enough pw", None, "valid email"),
    ("short@example.com", "short", None, "at least 8 characters"),
    ("twice@example.com", "long enough pw", "something else", "differ"),
    ("alice@example.com", "long enough pw", None, "already exists"),
])
def test_sign_up_refuses_bad_input_with_a_message(client, env: WebEnv, email, password, password2, message) -> None:
    env.account("alice")
    response = sign_up(client, email, password, password2)
    assert response.status_code == 400 and message in flash_text(response)
    assert client.get("/sign").status_code == 302  # not logged in


def test_sign_up_can_be_closed(env: WebEnv) -> None:
    from settings import load_settings

    closed = env.app(web_signup="false").test_client()
    assert closed.get("/signup").status_code == 403
    assert "Sign up" not in closed.get("/login").get_data(as_text=True)
    assert env.settings.signup_open  # "auto" on the embedded default...
    production = load_settings(env.settings.instance, env={"DATABASE_URL": "postgresql://db/vf"})
    assert not production.signup_open  # ...and closed once the instance has a real database


def test_wrong_password_and_unknown_email_look_the_same(client, env: WebEnv) -> None:
    email, password = env.account("alice")
    wrong = attempt(client, email, "not the password")
    unknown = attempt(client, "nobody@example.com", "not the password")
    garbage = attempt(client, "", "")
    assert wrong.status_code == unknown.status_code == garbage.status_code == 401
    assert flash_text(wrong) == flash_text(unknown) == flash_text(garbage) == "Wrong email or password."
    strip = re.compile(r'value="[^"]*"')  # the CSRF token and the echoed email differ, nothing else
    assert strip.sub("", wrong.get_data(as_text=True)) == strip.sub("", unknown.get_data(as_text=True))
    assert client.get("/sign").status_code == 302


def test_log_in_is_rate_limited_per_address(env: WebEnv) -> None:
    client = env.app(web_login_rate_burst=2, web_login_rate_per_minute=1).test_client()
    email, password = env.account("alice")
    assert [attempt(client, email, "guess").status_code for _ in range(2)] == [401, 401]
    limited = attempt(client, email, password)  # even the right password waits
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "rate limit" in limited.get_data(as_text=True)
    other = env.app(web_login_rate_burst=2, web_login_rate_per_minute=1).test_client()
    assert attempt(other, email, password).status_code == 303  # limiter state is per app here


def test_account_forms_need_the_csrf_token(client, env: WebEnv) -> None:
    email, password = env.account("alice")
    for path, form in [("/login", {"email": email, "password": password}),
                       ("/signup", {"email": "x@example.com", "password": "long pw 123", "password2": "long pw 123"}),
                       ("/logout", {}), ("/keys", {"name": "k", "scopes": "verify"})]:
        response = client.post(path, data=form)
        assert response.status_code == 400 and "did not come from this site" in response.get_data(as_text=True)
    log_in(client, env)
    key = client.post("/keys", data={"csrf_token": token(client, "/keys"), "name": "k", "scopes": "verify"})
    key_id = re.search(r'href="/keys/([^/]+)/revoke"', key.get_data(as_text=True)).group(1)
    assert client.post(f"/keys/{key_id}/revoke", data={"csrf_token": "forged"}).status_code == 400
    assert client.post("/logout").status_code == 400
    assert client.get("/keys").status_code == 200  # still logged in


def test_log_in_returns_to_the_page_asked_for_and_never_off_site(client, env: WebEnv) -> None:
    email, password = env.account("alice")
    assert client.get("/generate").headers["Location"] == "/login?next=/generate"
    form = {"csrf_token": token(client, "/login"), "email": email, "password": password}
    assert client.post("/login?next=/generate", data=form).headers["Location"] == "/generate"
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        client.post("/logout", data={"csrf_token": token(client)})
        form["csrf_token"] = token(client, "/login")
        assert client.post("/login", query_string={"next": target}, data=form).headers["Location"] == "/jobs"


def test_private_verify_needs_a_log_in(env: WebEnv) -> None:
    client = env.app(web_public_verify=False).test_client()
    assert client.get("/verify").headers["Location"] == "/login?next=/verify"
    assert client.get("/jobs").status_code == 302
    refused = client.post("/verify", data={**env.upload(), "csrf_token": token(client, "/login")})
    assert refused.status_code == 401
    log_in(client, env)
    assert client.post("/verify", data={**env.upload(), "csrf_token": token(client)}).status_code == 303


def test_users_see_only_their_own_jobs(client, env: WebEnv) -> None:
    log_in(client, env, "alice")
    env.pipeline.inline = True
    response = client.post("/sign", data={**env.upload("mine.mp4"), "csrf_token": token(client, "/sign"),
                                          "source": "capture"})
    job_url = response.headers["Location"]
    assert client.get(f"{job_url}/file/output").status_code == 200
    assert job_url in client.get("/jobs").get_data(as_text=True)

    other = env.app().test_client()
    log_in(other, env, "bob")
    for path in ("", "/status.json", "/file/output", "/file/input", "/manifest.c2pa"):
        assert other.get(job_url + path).status_code == 404, path
    assert other.post(f"{job_url}/cancel", data={"csrf_token": token(other)}).status_code == 404
    assert job_url not in other.get("/jobs").get_data(as_text=True)


def test_keys_page_creates_lists_and_revokes_keys_that_work_on_the_api(client, env: WebEnv) -> None:
    log_in(client, env, "alice")
    created = client.post("/keys", data={"csrf_token": token(client, "/keys"), "name": "laptop script",
                                         "scopes": ["verify", "sign"]})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    html = created.get_data(as_text=True)
    key = re.search(r'id="new-key" readonly value="(vf_[^"]+)"', html).group(1)
    secret = re.search(r'id="new-secret" readonly value="(whsec_[^"]+)"', html).group(1)
    listed = client.get("/keys").get_data(as_text=True)
    assert "laptop script" in listed and "verify, sign" in listed and "never" in listed
    assert key not in listed and secret not in listed and key[:10] in listed  # shown once, then the prefix only

    # The key works with its scopes, and its jobs are the user's: on the API and in the portal.
    auth = {"Authorization": f"Bearer {key}"}
    job = client.post(f"{API}/verifications", data=env.upload("api.mp4"), headers=auth)
    assert job.status_code == 202
    assert client.post(f"{API}/generations", json={"prompt": "x"}, headers=auth).status_code == 403
    assert job.get_json()["id"] in client.get("/jobs").get_data(as_text=True)
    portal_job = client.post("/verify", data={**env.upload("portal.mp4"), "csrf_token": token(client)})
    portal_id = portal_job.headers["Location"].rsplit("/", 1)[-1]
    assert client.get(f"{API}/jobs/{portal_id}", headers=auth).status_code == 200
    assert client.get(f"{API}/jobs/{portal_id}", headers=env.auth("bob")).status_code == 404
    row = re.search(r"<td>laptop script</td>.*?</tr>", client.get("/keys").get_data(as_text=True), re.S).group(0)
    assert "never" not in row  # last used: now

    # Someone else cannot see or revoke it; its owner revokes it after a confirmation page.
    key_id = re.search(r'href="/keys/([^/]+)/revoke"', row).group(1)
    other = env.app().test_client()
    log_in(other, env, "bob")
    assert "laptop script" not in other.get("/keys").get_data(as_text=True)
    assert other.get(f"/keys/{key_id}/revoke").status_code == 404
    assert other.post(f"/keys/{key_id}/revoke", data={"csrf_token": token(other)}).status_code == 404
    confirm = client.get(f"/keys/{key_id}/revoke")
    assert confirm.status_code == 200 and "Revoke the key “laptop script”?" in confirm.get_data(as_text=True)
    revoked = client.post(f"/keys/{key_id}/revoke", data={"csrf_token": token(client)})
    assert revoked.status_code == 303 and revoked.headers["Location"] == "/keys"
    assert "revoked" in client.get("/keys").get_data(as_text=True)
    assert client.get(f"{API}/jobs", headers=auth).status_code == 401


@pytest.mark.parametrize(("form", "message"), [
    ({"name": "", "scopes": "verify"}, "a name"),
    ({"name": "no scopes"}, "non-empty subset"),
    ({"name": "root", "scopes": "admin"}, "non-empty subset"),
])
def test_keys_page_refuses_bad_input(client, env: WebEnv, form, message) -> None:
    log_in(client, env, "alice")
    response = client.post("/keys", data={**form, "csrf_token": token(client, "/keys")})
    assert response.status_code == 400 and message in flash_text(response)
    assert client.get("/keys/no-such-key/revoke").status_code == 404


def test_users_cli_creates_lists_and_disables(client, env: WebEnv) -> None:
    run_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    for name in ("VERIFRAME_INSTANCE", "DATABASE_URL", "CELERY_BROKER_URL"):
        run_env.pop(name, None)

    def manage(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        # A new session has no terminal to prompt on, so the password comes from stdin.
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), "--instance", str(env.settings.instance),
                               "users", *args], input=stdin, capture_output=True, text=True, env=run_env,
                              start_new_session=True, timeout=120)

    created = manage("create", "--email", "Cli@Example.com", stdin="cli password 1\n")
    assert created.returncode == 0 and "created user cli@example.com" in created.stdout, created.stderr
    assert "cli password 1" not in created.stdout + created.stderr
    short = manage("create", "--email", "x@example.com", stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    listed = json.loads(manage("list", "--json").stdout)
    assert [u["email"] for u in listed if u["email"] == "cli@example.com"] and "password" not in json.dumps(listed)

    assert attempt(client, "cli@example.com", "cli password 1").status_code == 303
    key = client.post("/keys", data={"csrf_token": token(client, "/keys"), "name": "k", "scopes": "verify"})
    auth = {"Authorization": "Bearer " + re.search(r'value="(vf_[^"]+)"', key.get_data(as_text=True)).group(1)}
    assert client.get(f"{API}/jobs", headers=auth).status_code == 200

    assert manage("disable", "cli@example.com").returncode == 0
    assert client.get("/keys").status_code == 302  # the session ended
    assert client.get(f"{API}/jobs", headers=auth).status_code == 401  # and its keys are refused
    assert attempt(client, "cli@example.com", "cli password 1").status_code == 401
    assert manage("disable", "nobody@example.com").returncode == 2
    assert manage("enable", "cli@example.com").returncode == 0
    assert attempt(client, "cli@example.com", "cli password 1").status_code == 303
    assert client.get(f"{API}/jobs", headers=auth).status_code == 200
