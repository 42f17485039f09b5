"""A portal visitor's anonymous jobs move into the account they sign up for or log in to, in the
same browser: the jobs and their artifacts become the user's in the database, another visitor's
stay theirs, and the session is a fresh one afterwards (Flask test client, real SQLite instance)."""

from __future__ import annotations

import re

from test_web_accounts import attempt, flash_text, sign_up
from web_helpers import WebEnv, log_in, token


def verify(client, env: WebEnv, name: str, *, run: bool = True) -> str:
    """Verify the test clip as ``client``; the job's id (run to its end unless ``run`` is off)."""
    env.pipeline.inline = run
    response = client.post("/verify", data={**env.upload(name), "csrf_token": token(client)})
    assert response.status_code == 303
    return response.headers["Location"].rsplit("/", 1)[-1]


def owner_of(user_email: str, env: WebEnv) -> str:
    from web.users import UserStore

    return next(u.owner for u in UserStore(env.pipeline.runtime.engine).list() if u.email == user_email)


def owners(env: WebEnv, job_id: str) -> set[str]:
    """The owners of the job and of each of its artifacts, as stored."""
    view = env.pipeline.get(job_id)
    return {view.owner, *(item.owner for item in view.artifacts)}


def test_anonymous_jobs_move_into_the_account_made_at_sign_up(client, env: WebEnv) -> None:
    done = verify(client, env, "before-signup.mp4")
    queued = verify(client, env, "still-queued.mp4", run=False)
    stranger = env.app().test_client()
    theirs = verify(stranger, env, "strangers.mp4")
    anonymous = owners(env, done)
    assert len(anonymous) == 1 and next(iter(anonymous)).startswith("portal:")
    with client.session_transaction() as before:
        old_csrf = before["csrf"]

    response = sign_up(client, "newcomer@example.com")
    assert response.status_code == 303
    jobs_page = client.get("/jobs")
    assert "The 2 clips you verified before logging in are now in your jobs." in flash_text(jobs_page)
    html = jobs_page.get_data(as_text=True)
    assert done in html and queued in html and theirs not in html
    user = owner_of("newcomer@example.com", env)
    assert owners(env, done) == owners(env, queued) == {user}  # artifacts included
    assert client.get(f"/jobs/{done}/report.json").status_code == 200  # read through the job's owner
    assert client.get(f"/jobs/{done}/file/input").status_code == 200

    # A job still running when its visitor logged in writes its results under its new owner.
    assert env.pipeline.run(queued) == "succeeded"
    assert owners(env, queued) == {user}
    assert client.get(f"/jobs/{queued}/report.json").status_code == 200

    # The other visitor's job stayed theirs, and they still see it.
    assert owners(env, theirs) != {user} and next(iter(owners(env, theirs))).startswith("portal:")
    assert client.get(f"/jobs/{theirs}").status_code == 404
    assert theirs in stranger.get("/jobs").get_data(as_text=True)
    assert stranger.get(f"/jobs/{theirs}/report.json").status_code == 200

    # A fresh session: no anonymous identity any more, a new CSRF token.
    with client.session_transaction() as after:
        assert "anon" not in after and after["csrf"] != old_csrf


def test_anonymous_jobs_move_into_the_account_logged_in_to(client, env: WebEnv) -> None:
    env.account("erin")
    log_in(client, env, "erin")
    own = verify(client, env, "erins.mp4")
    client.post("/logout", data={"csrf_token": token(client)})

    anonymous = verify(client, env, "while-logged-out.mp4")
    other_browser = env.app().test_client()
    theirs = verify(other_browser, env, "someone-elses.mp4")
    log_in(client, env, "erin")
    assert "The 1 clip you verified before logging in is now in your jobs." in flash_text(client.get("/jobs"))
    html = client.get("/jobs").get_data(as_text=True)
    assert own in html and anonymous in html and theirs not in html
    erin = owner_of("erin@example.com", env)
    assert owners(env, anonymous) == {erin} and owners(env, theirs) != {erin}

    # Logging out leaves them in the account: the next anonymous session sees none of them...
    client.post("/logout", data={"csrf_token": token(client)})
    assert anonymous not in client.get("/jobs").get_data(as_text=True)
    # ...and the account sees them from any browser.
    elsewhere = env.app().test_client()
    log_in(elsewhere, env, "erin")
    assert anonymous in elsewhere.get("/jobs").get_data(as_text=True)


def test_a_failed_log_in_moves_nothing_and_keeps_the_session(client, env: WebEnv) -> None:
    email, _ = env.account("frank")
    job = verify(client, env, "kept.mp4")
    assert attempt(client, email, "not the password").status_code == 401
    assert owners(env, job) != {owner_of(email, env)}
    assert job in client.get("/jobs").get_data(as_text=True)  # still this browser's


def test_logging_in_without_anonymous_jobs_says_nothing_of_them(client, env: WebEnv) -> None:
    log_in(client, env, "grace")
    text = flash_text(client.get("/jobs"))
    assert text == "Logged in as grace@example.com." and not re.search(r"verified before", text)
