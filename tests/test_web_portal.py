"""The portal with the Flask test client: pages, CSRF, the public verify flow, creators' pages,
security headers, the report page and its exports, the API-key CLI. (Accounts and the API keys
page: test_web_accounts.py.)"""

from __future__ import annotations

import dataclasses
import io
import json
import re

import pytest
from web_helpers import WebEnv, log_in, token


@pytest.mark.parametrize("page", ["/verify", "/sign", "/generate", "/jobs", "/keys", "/login", "/signup"])
def test_pages_render_with_security_headers(client, page: str) -> None:
    response = client.get(page, follow_redirects=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html = response.get_data(as_text=True)
    assert '<html lang="en">' in html and 'name="viewport"' in html and "<script>" not in html
    assert client.get("/").status_code == 302


def test_static_assets_are_served(client) -> None:
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").mimetype == "text/css"


def test_forms_need_the_csrf_token(client, env: WebEnv) -> None:
    response = client.post("/verify", data=env.upload())
    assert response.status_code == 400 and "did not come from this site" in response.get_data(as_text=True)
    assert client.post("/verify", data={**env.upload(), "csrf_token": "forged"}).status_code == 400


def test_public_verify_flow_shows_the_report_to_its_session_only(client, env: WebEnv) -> None:
    response = client.post("/verify", data={**env.upload("street.mp4"), "csrf_token": token(client)})
    assert response.status_code == 303
    job_url = response.headers["Location"]
    job_id = job_url.rsplit("/", 1)[-1]
    running = client.get(job_url).get_data(as_text=True)
    assert 'http-equiv="refresh"' in running and "data-job-status" in running
    status = client.get(f"{job_url}/status.json").get_json()
    assert status["state"] == "queued" and status["done"] is False

    assert env.pipeline.run(job_id) == "succeeded"
    html = client.get(job_url).get_data(as_text=True)
    assert "No Content Credentials" in html and "Watermark" in html and "160×96" in html
    assert 'http-equiv="refresh"' not in html and "street.mp4" in html
    export = client.get(f"{job_url}/report.json")
    assert export.status_code == 200 and "attachment" in export.headers["Content-Disposition"]
    assert json.loads(export.data)["file"]["width"] == 160
    assert job_id in client.get("/jobs").get_data(as_text=True)

    stranger = env.app().test_client()
    assert stranger.get(job_url).status_code == 404
    assert stranger.get(f"{job_url}/report.json").status_code == 404


def _verified(client, env: WebEnv) -> str:
    """The page of a public verification of the test clip, run to its end."""
    env.pipeline.inline = True
    response = client.post("/verify", data={**env.upload("street.mp4"), "csrf_token": token(client)})
    assert response.status_code == 303
    return response.headers["Location"]


def test_report_page_shows_the_keyframe_strip_to_its_session_only(client, env: WebEnv) -> None:
    job_url = _verified(client, env)
    html = client.get(job_url).get_data(as_text=True)
    pictures = re.findall(r'<img src="([^"]+)" width="160" height="96" alt="([^"]+)"', html)
    assert [src for src, _ in pictures] == [f"{job_url}/picture/keyframe-{n}" for n in range(1, 7)]
    assert pictures[1][1] == "Frame 2 of the file (0.08 s)" and "<figcaption>0.29 s</figcaption>" in html
    assert "No artifact heatmaps: the detector is switched off (verify_detector)." in html
    assert 'style="' not in html and "<script>" not in html  # the CSP allows neither
    picture = client.get(pictures[0][0])
    assert picture.status_code == 200 and picture.mimetype == "image/jpeg" and picture.data[:2] == b"\xff\xd8"
    assert "attachment" not in picture.headers.get("Content-Disposition", "")
    assert client.get(f"{job_url}/picture/report").status_code == 404  # pictures only
    assert client.get(f"{job_url}/picture/keyframe-9").status_code == 404

    export = json.loads(client.get(f"{job_url}/report.json").data)
    items = export["keyframes"]["items"]
    assert [i["image_artifact"]["href"] for i in items] == [src for src, _ in pictures]
    assert [i["index"] for i in items] == [0, 2, 3, 4, 6, 7] and items[0]["image_artifact"]["id"]

    stranger = env.app().test_client()
    assert stranger.get(pictures[0][0]).status_code == 404


@pytest.mark.slow
def test_report_page_shows_heatmaps_on_keyframes_with_a_legend(client, env: WebEnv, monkeypatch) -> None:
    pytest.importorskip("detector")
    monkeypatch.setattr(env.pipeline.runtime, "settings", dataclasses.replace(env.settings, verify_detector=True))
    job_url = _verified(client, env)
    html = client.get(job_url).get_data(as_text=True)
    detector_panel = html[html.index('id="det-h"'):html.index('id="file-h"')]
    heatmaps = re.findall(r'<img src="([^"]+/picture/heatmap-[0-9])"', detector_panel)
    assert len(heatmaps) == 6 and "Artifact heatmaps on keyframes" in detector_panel
    assert '<linearGradient id="heat-scale"><stop offset="0.0" stop-color="#440154"/>' in detector_panel
    assert "probability of AI generation per 32 px patch" in detector_panel
    assert "from single frames" in detector_panel and "from how the clip changes frame to frame" in detector_panel
    assert "No artifact heatmaps" not in html and 'style="' not in html
    picture = client.get(heatmaps[0])
    assert picture.status_code == 200 and picture.mimetype == "image/png"
    export = json.loads(client.get(f"{job_url}/report.json").data)["keyframes"]
    assert export["heatmaps"]["state"] == "per_frame"
    assert [i["heatmap_artifact"]["href"] for i in export["items"]] == heatmaps


@pytest.mark.slow
def test_report_page_says_why_a_heavily_compressed_clip_is_not_judged(client, env: WebEnv, monkeypatch,
                                                                      tmp_path) -> None:
    pytest.importorskip("detector")
    from media import transcode

    monkeypatch.setattr(env.pipeline.runtime, "settings", dataclasses.replace(env.settings, verify_detector=True))
    env.pipeline.inline = True
    crushed = tmp_path / "crushed.mp4"
    transcode(env.clip, crushed, crf=51, preset="ultrafast")
    response = client.post("/verify", data={**env.upload("crushed.mp4", crushed.read_bytes()),
                                            "csrf_token": token(client)})
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    detector_panel = html[html.index('id="det-h"'):html.index('id="file-h"')]
    assert "Outside the frame model's scope: heavily compressed: mean quantiser QP" in detector_panel
    assert "Not used for the verdict: heavily compressed: mean quantiser QP" in detector_panel
    report = json.loads(client.get(f"{response.headers['Location']}/report.json").data)
    assert report["detector"]["mean_qp"] > 40 and report["detector"]["temporal"]["in_scope"] is False
    assert report["verdict"]["label"] == "uncertain"


def test_script_uploads_get_json_and_problems_are_readable(client, env: WebEnv) -> None:
    response = client.post("/verify", data={**env.upload(), "csrf_token": token(client)},
                           headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.get_json()["url"].startswith("/jobs/")
    bad = client.post("/verify", data={**env.upload("x.mp4", b"plain text " * 99), "csrf_token": token(client)})
    assert bad.status_code == 415 and "not a video or image" in bad.get_data(as_text=True)


def test_creators_pages_need_an_account(client, env: WebEnv) -> None:
    form = {**env.upload(), "csrf_token": token(client), "source": "capture"}
    refused = client.post("/sign", data=form)
    assert refused.status_code == 401 and 'href="/login"' in refused.get_data(as_text=True)
    script = client.post("/generate", data={"csrf_token": token(client), "prompt": "x"},
                         headers={"Accept": "application/json"})  # what app.js sends: a problem it can show
    assert script.status_code == 401 and script.mimetype == "application/problem+json"
    assert "log in first" in script.get_json()["detail"]
    for page in ("/sign", "/generate", "/keys"):
        response = client.get(page)
        assert response.status_code == 302 and response.headers["Location"] == f"/login?next={page}"


def test_log_in_sign_and_download(client, env: WebEnv) -> None:
    log_in(client, env)
    assert "alice@example.com" in client.get("/sign").get_data(as_text=True)
    env.pipeline.inline = True
    response = client.post("/sign", data={**env.upload("beach.mp4"), "csrf_token": token(client, "/sign"),
                                          "source": "edit", "title": "Beach"})
    assert response.status_code == 303
    job_url = response.headers["Location"]
    html = client.get(job_url).get_data(as_text=True)
    assert "Signed file" in html and "beach.signed.mp4" in html and "<video" in html
    download = client.get(f"{job_url}/file/output")
    assert download.status_code == 200 and download.mimetype == "video/mp4"
    assert client.get(f"{job_url}/manifest.c2pa").mimetype == "application/c2pa"

    # The signed clip verifies as trusted, with the signer and the edit shown.
    verify = client.post("/verify", data={"file": (io.BytesIO(download.data), "beach.signed.mp4"),
                                          "csrf_token": token(client)})
    report = client.get(verify.headers["Location"]).get_data(as_text=True)
    assert "Content Credentials valid, from a trusted signer" in report and "veriframe development" in report
    assert "Beach" in report and "Manifest (.c2pa)" in report


def test_generation_without_checkpoint_shows_the_stored_error(client, env: WebEnv) -> None:
    log_in(client, env)
    env.pipeline.inline = True
    response = client.post("/generate", data={"csrf_token": token(client, "/generate"), "prompt": "a lighthouse",
                                              "width": "96", "height": "64", "steps": "2", "seed": ""})
    assert response.status_code == 303
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The job failed" in html and "checkpoint" in html and "not installed on the server" in html
    bad = client.post("/generate", data={"csrf_token": token(client, "/generate"), "prompt": "x", "steps": "many"})
    assert bad.status_code == 400


def test_cancel_from_the_job_page_and_log_out(client, env: WebEnv) -> None:
    log_in(client, env, "bob")
    response = client.post("/generate", data={"csrf_token": token(client, "/generate"), "prompt": "slow"})
    job_url = response.headers["Location"]
    assert client.post(f"{job_url}/cancel", data={"csrf_token": token(client)}).status_code == 303
    assert "Cancelled" in client.get(job_url).get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": token(client)}).status_code == 303
    assert client.get(job_url).status_code == 404  # an anonymous visitor does not see bob's jobs


def test_apikeys_cli_creates_lists_and_revokes(env: WebEnv, capsys: pytest.CaptureFixture[str]) -> None:
    import manage

    inst = ["--instance", str(env.settings.instance)]
    assert manage.main([*inst, "apikeys", "create", "--name", "cli", "--scopes", "verify,sign"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("vf_")
    keys = env.app().extensions["veriframe.web"].keys
    found = keys.authenticate(key)
    assert found is not None and found.scopes == ("verify", "sign")
    assert manage.main([*inst, "apikeys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert any(k["id"] == found.id for k in listed) and key not in json.dumps(listed)
    assert manage.main([*inst, "apikeys", "revoke", found.id]) == 0
    assert keys.authenticate(key) is None
    assert manage.main([*inst, "apikeys", "create", "--name", "x", "--scopes", "root"]) == 2


def test_keys_are_stored_hashed(env: WebEnv) -> None:
    from sqlalchemy import text

    with env.pipeline.runtime.engine.connect() as conn:
        rows = conn.execute(text("SELECT key_hash, prefix FROM web_api_keys")).all()
    stored = json.dumps([list(r) for r in rows])
    assert rows and all(env.keys[who] not in stored for who in env.keys)


def test_token_buckets_refill_over_time() -> None:
    from web.ratelimit import MemoryLimiter

    now = [0.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    assert [limiter.hit("k", 1.0, 2).allowed for _ in range(3)] == [True, True, False]
    assert limiter.hit("k", 1.0, 2).retry_after_s == pytest.approx(1.0)
    now[0] = 1.0
    assert limiter.hit("k", 1.0, 2).allowed and not limiter.hit("k", 1.0, 2).allowed
    assert limiter.hit("other", 1.0, 2).allowed


def test_redis_token_buckets_are_shared(tmp_path) -> None:
    from pipeline_helpers import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    try:
        from web.ratelimit import limiter_for

        first, second = limiter_for(server.url), limiter_for(server.url)
        assert type(first).__name__ == "RedisLimiter"
        results = [first.hit("k", 0.01, 2).allowed, second.hit("k", 0.01, 2).allowed, first.hit("k", 0.01, 2)]
        assert results[:2] == [True, True] and not results[2].allowed and results[2].retry_after_s > 1
    finally:
        server.stop()
