"""The JSON API with the Flask test client: every endpoint, status code and problem+json shape.

Jobs are real (real storage, real C2PA signing and verification) and run through the pipeline's
runner in this process when a test says so; see tests/web_helpers.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from web_helpers import WebEnv

API = "/api/v1"




def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["type"] == "about:blank" and "detail" in body
    return body


# --- the document and the basics -----------------------------------------------------------------


def test_openapi_document_validates_and_covers_every_route(env: WebEnv, client) -> None:
    from openapi_spec_validator import validate

    response = client.get(f"{API}/openapi.json")
    doc = response.get_json()
    assert response.status_code == 200 and doc["openapi"].startswith("3.1")
    validate(doc)
    documented = {path for path in doc["paths"]}
    app = env.app()
    import re

    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = rule.rule.removeprefix(API)
            path = re.sub(r"<any\(([^)]*)\):collection>", lambda m: "{c}", path)
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)
            if "{c}" in path:
                expected = [path.replace("{c}", c) for c in ("verifications", "signatures", "generations")]
            else:
                expected = [path]
            for p in expected:
                assert p in documented, f"{p} ({rule.endpoint}) is not in openapi.json"


def test_health_and_security_headers(client) -> None:
    response = client.get(f"{API}/health")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_unknown_route_and_wrong_method_are_problems(client, env: WebEnv) -> None:
    assert_problem(client.get(f"{API}/nothing-here"), 404)
    response = client.get(f"{API}/verifications", headers=env.auth("alice"))
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]
    # "batch" is not a job id: job routes take UUIDs, so the batch path offers POST and nothing else.
    response = client.get(f"{API}/verifications/batch", headers=env.auth("alice"))
    assert_problem(response, 405)
    assert "GET" not in response.headers["Allow"]
    assert_problem(client.get(f"{API}/jobs/not-a-uuid", headers=env.auth("alice")), 404)


# --- authentication, scopes, rate limits ---------------------------------------------------------


def test_requests_without_a_valid_key_are_401(client, env: WebEnv) -> None:
    for headers in ({}, {"Authorization": "Bearer vf_not-a-key"}, {"Authorization": "Basic abc"},
                    {"Authorization": env.keys["alice"]}):
        response = client.get(f"{API}/jobs", headers=headers)
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(client.post(f"{API}/verifications", data=env.upload(), content_type="multipart/form-data"), 401)


def test_revoked_key_is_refused(env: WebEnv, client) -> None:
    keys = env.app().extensions["veriframe.web"].keys
    info, key, _ = keys.create("temp", "verify")
    assert client.get(f"{API}/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    keys.revoke(info.prefix)
    assert_problem(client.get(f"{API}/jobs", headers={"Authorization": f"Bearer {key}"}), 401)


def test_a_key_without_the_scope_is_403(client, env: WebEnv) -> None:
    viewer = env.auth("viewer")
    body = assert_problem(client.post(f"{API}/generations", json={"prompt": "a kite"}, headers=viewer), 403)
    assert body["required_scope"] == "generate"
    assert_problem(client.post(f"{API}/signatures", data=env.upload(), headers=viewer), 403)


def test_rate_limit_per_key_is_429_with_retry_after(env: WebEnv) -> None:
    client = env.app(api_rate_burst=3, api_rate_per_minute=1, ip_rate_per_minute=1).test_client()
    statuses = [client.get(f"{API}/jobs", headers=env.auth("viewer")).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    response = client.get(f"{API}/jobs", headers=env.auth("viewer"))
    body = assert_problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1 and body["retry_after"] >= 1
    # Another key has its own bucket; failed authentications are limited per client address.
    assert client.get(f"{API}/jobs", headers=env.auth("lister")).status_code == 200
    assert [client.get(f"{API}/jobs").status_code for _ in range(4)] == [401, 401, 401, 429]


# --- verifications ---------------------------------------------------------------------------


def test_verification_is_accepted_then_reports(client, env: WebEnv) -> None:
    response = client.post(f"{API}/verifications", data=env.upload("../../etc/My Clip.mp4"), headers=env.auth("alice"))
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"{API}/verifications/{job['id']}" == job["links"]["self"]
    assert job["state"] == "queued" and job["kind"] == "verify" and "owner" not in job
    assert job["params"]["filename"] == "etc_My_Clip.mp4" or job["params"]["filename"] == "My_Clip.mp4"
    assert job["id"] in env.pipeline.sent

    assert env.pipeline.run(job["id"]) == "succeeded"
    body = client.get(response.headers["Location"], headers=env.auth("alice")).get_json()
    assert body["state"] == "succeeded"
    report = body["report"]
    assert report["version"] == 5 and report["file"]["width"] == 160 and report["c2pa"]["state"] == "absent"
    assert "path" not in report["c2pa"]  # no server paths leak
    report_artifact = next(a for a in body["artifacts"] if a["role"] == "report")
    download = client.get(report_artifact["href"], headers=env.auth("alice"))
    assert download.status_code == 200 and json.loads(download.data)["file"]["sha256"] == report["file"]["sha256"]
    assert "path" not in json.loads(download.data)["c2pa"]  # nor in the stored report, downloaded as is
    assert "attachment" in download.headers["Content-Disposition"]


def test_verification_wait_returns_the_finished_report(client, env: WebEnv) -> None:
    env.pipeline.inline = True
    response = client.post(f"{API}/verifications?wait=5", data=env.upload(), headers=env.auth("alice"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["state"] == "succeeded" and body["report"]["watermark"]["present"] is False
    assert_problem(client.post(f"{API}/verifications?wait=soon", data=env.upload(), headers=env.auth("alice")), 400)


def test_idempotency_key_returns_the_first_job(client, env: WebEnv) -> None:
    headers = {**env.auth("alice"), "Idempotency-Key": "upload-42"}
    first = client.post(f"{API}/verifications", data=env.upload(), headers=headers).get_json()
    second = client.post(f"{API}/verifications", data=env.upload(), headers=headers).get_json()
    assert first["id"] == second["id"]


def test_uploads_are_sniffed_and_limited(env: WebEnv, tmp_path: Path) -> None:
    client = env.app().test_client()
    alice = env.auth("alice")
    text = b"this is not a video, whatever its name says\n" * 40
    body = assert_problem(client.post(f"{API}/verifications", data=env.upload("clip.mp4", text), headers=alice), 415)
    assert "not a video" in body["detail"]
    garbage = env.upload("a.mp4", b"\x00\x00\x01\xff" * 300)  # MPEG-like start, but no container
    assert_problem(client.post(f"{API}/verifications", data=garbage, headers=alice), 415)
    assert_problem(client.post(f"{API}/verifications", data={}, headers=alice), 400)
    assert_problem(client.post(f"{API}/verifications", data=env.upload("e.mp4", b""), headers=alice), 400)
    small = env.app(web_max_upload_bytes=4096).test_client()
    assert_problem(small.post(f"{API}/verifications", data=env.upload(), headers=alice), 413)
    # Limits on what the media holds are enforced before a job exists, too.
    tiny = env.app(max_pixels=100 * 50).test_client()
    before = len(env.pipeline.sent)
    body = assert_problem(tiny.post(f"{API}/verifications", data=env.upload(), headers=alice), 413)
    assert "exceeds the limit" in body["detail"] and len(env.pipeline.sent) == before


# --- owners --------------------------------------------------------------------------------------


def test_another_owners_job_artifact_and_manifest_are_404(client, env: WebEnv) -> None:
    env.pipeline.inline = True
    job = client.post(f"{API}/verifications?wait=5", data=env.upload(), headers=env.auth("alice")).get_json()
    bob = env.auth("bob")
    assert_problem(client.get(f"{API}/verifications/{job['id']}", headers=bob), 404)
    assert_problem(client.get(f"{API}/jobs/{job['id']}", headers=bob), 404)
    assert_problem(client.delete(f"{API}/jobs/{job['id']}", headers=bob), 404)
    assert_problem(client.get(job["artifacts"][0]["href"], headers=bob), 404)
    assert_problem(client.get(f"{API}/manifests/{job['id']}", headers=bob), 404)
    assert job["id"] not in [j["id"] for j in client.get(f"{API}/jobs", headers=bob).get_json()["items"]]
    # A verify job is not a generation, whoever asks.
    assert_problem(client.get(f"{API}/generations/{job['id']}", headers=env.auth("alice")), 404)


def test_verification_lists_its_keyframes_as_artifacts_of_its_owner(client, env: WebEnv) -> None:
    env.pipeline.inline = True
    alice, bob = env.auth("alice"), env.auth("bob")
    job = client.post(f"{API}/verifications?wait=5", data=env.upload(), headers=alice).get_json()
    section = job["report"]["keyframes"]
    items = section["items"]
    # The test clip has 8 frames at 24 fps: six spread over it, kept at their 160x96 size.
    assert [i["index"] for i in items] == [0, 2, 3, 4, 6, 7]
    assert [i["time_s"] for i in items] == [round(i / 24, 3) for i in (0, 2, 3, 4, 6, 7)]
    assert section["heatmaps"] == {"state": "none", "message": "the detector is switched off (verify_detector)"}
    roles = {a["role"]: a for a in job["artifacts"]}
    for n, item in enumerate(items, start=1):
        assert item["image"] == f"keyframe-{n}" and item["heatmap"] is None and item["heatmap_artifact"] is None
        link = item["image_artifact"]
        assert link == {"id": roles[f"keyframe-{n}"]["id"], "href": f"{API}/artifacts/{link['id']}"}
        picture = client.get(link["href"], headers=alice)
        assert picture.status_code == 200 and picture.mimetype == "image/jpeg" and picture.data[:2] == b"\xff\xd8"
        assert (item["width"], item["height"]) == (160, 96)
        assert_problem(client.get(link["href"], headers=bob), 404)
    # (A second delivery of a task that really runs again is tested on a worker in test_pipeline_workers.)
    assert len(job["artifacts"]) == 1 + 1 + 6  # input, report, keyframes


# --- signatures, manifests, artifacts ------------------------------------------------------------


def test_sign_then_download_then_verify_and_fetch_the_manifest(client, env: WebEnv) -> None:
    env.pipeline.inline = True
    alice = env.auth("alice")
    response = client.post(f"{API}/signatures?wait=10", headers=alice,
                           data={**env.upload("harbour.mp4"), "source": "capture", "title": "Harbour",
                                 "author": "A. Creator", "watermark": "true"})
    assert response.status_code == 200, response.get_json()
    job = response.get_json()
    assert job["state"] == "succeeded" and job["result"]["manifest"]["label"].startswith("urn:c2pa:")
    signed = client.get(job["links"]["download"], headers=alice)
    assert signed.status_code == 200 and signed.mimetype == "video/mp4"
    assert "filename=harbour.signed.mp4" in signed.headers["Content-Disposition"]
    manifest = client.get(job["links"]["manifest"], headers=alice)
    assert manifest.status_code == 200 and manifest.mimetype == "application/c2pa" and len(manifest.data) > 100
    assert client.get(f"{API}/signatures/{job['id']}", headers=alice).get_json()["id"] == job["id"]

    verified = client.post(f"{API}/verifications?wait=10", headers=alice,
                           data={"file": (__import__("io").BytesIO(signed.data), "signed.mp4")}).get_json()
    c2pa = verified["report"]["c2pa"]
    assert c2pa["state"] == "trusted" and c2pa["title"] == "Harbour"
    assert client.get(f"{API}/manifests/{verified['id']}", headers=alice).data == manifest.data


def test_signature_parameters_are_checked(client, env: WebEnv) -> None:
    alice = env.auth("alice")
    body = assert_problem(client.post(f"{API}/signatures", headers=alice, data={**env.upload(), "source": "stolen"}),
                          400)
    assert body["errors"][0]["field"] == "source"
    assert_problem(client.post(f"{API}/signatures", headers=alice, data={**env.upload(), "watermark": "maybe"}), 400)


# --- generations -------------------------------------------------------------------------------


def test_generation_request_is_validated(client, env: WebEnv) -> None:
    alice = env.auth("alice")
    body = assert_problem(client.post(f"{API}/generations", headers=alice, json={
        "prompt": " ", "width": "wide", "steps": 0, "checkpoint": "/etc/passwd", "include_prompt": 1}), 400)
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert set(fields) == {"prompt", "width", "steps", "checkpoint", "include_prompt"}
    assert fields["checkpoint"] == "unknown field"  # model paths are never the client's to choose
    assert_problem(client.post(f"{API}/generations", headers=alice, json=["a kite"]), 400)
    assert_problem(client.post(f"{API}/generations", headers=alice, data="prompt=kite",
                               content_type="application/x-www-form-urlencoded"), 415)


def test_generation_without_a_checkpoint_fails_with_its_stored_error(client, env: WebEnv) -> None:
    alice = env.auth("alice")
    response = client.post(f"{API}/generations", headers=alice,
                           json={"prompt": "a red kite over the sea", "width": 96, "height": 64, "steps": 2, "seed": 7})
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"{API}/generations/{job['id']}"
    assert job["params"]["seed"] == 7 and job["params"]["prompt"] == "a red kite over the sea"
    assert env.pipeline.run(job["id"]) == "failed"
    body = client.get(f"{API}/generations/{job['id']}", headers=alice).get_json()
    assert body["state"] == "failed" and body["error_kind"] == "unavailable" and "checkpoint" in body["error"]
    assert_problem(client.get(f"{API}/manifests/{job['id']}", headers=alice), 404)


# --- jobs: cancel and pages ----------------------------------------------------------------------


def test_cancel_a_queued_job(client, env: WebEnv) -> None:
    alice = env.auth("alice")
    job = client.post(f"{API}/generations", headers=alice, json={"prompt": "never mind"}).get_json()
    response = client.delete(f"{API}/jobs/{job['id']}", headers=alice)
    assert response.status_code == 200 and response.get_json()["state"] == "cancelled"
    assert client.delete(f"{API}/jobs/{job['id']}", headers=alice).get_json()["state"] == "cancelled"
    assert_problem(client.delete(f"{API}/jobs/no-such-job", headers=alice), 404)


def test_jobs_are_paginated_and_filtered(client, env: WebEnv) -> None:
    lister = env.app().extensions["veriframe.web"].keys.create("pager", "verify,generate", owner="pager")[1]
    headers = {"Authorization": f"Bearer {lister}"}
    ids = [client.post(f"{API}/generations", headers=headers, json={"prompt": f"clip {i}"}).get_json()["id"]
           for i in range(3)]
    client.post(f"{API}/verifications", headers=headers, data=env.upload())
    page = client.get(f"{API}/jobs?limit=2&kind=generate", headers=headers).get_json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2] and page["previous"] is None
    rest = client.get(page["next"], headers=headers).get_json()
    assert [j["id"] for j in rest["items"]] == [ids[0]] and rest["next"] is None and rest["previous"]
    assert len(client.get(f"{API}/jobs", headers=headers).get_json()["items"]) == 4
    assert client.get(f"{API}/jobs?state=succeeded", headers=headers).get_json()["items"] == []
    for bad in ("limit=0", "limit=101", "offset=-1", "limit=x", "kind=paint", "state=odd"):
        assert_problem(client.get(f"{API}/jobs?{bad}", headers=headers), 400)


# --- callbacks and batches -----------------------------------------------------------------------


def test_callback_urls_veriframe_will_not_call_are_422(client, env: WebEnv) -> None:
    alice = env.auth("alice")
    before = len(env.pipeline.sent)
    for url in ("http://hooks.example.com/vf", "ftp://hooks.example.com/vf", "https://192.168.1.5/hook",
                "javascript:alert(1)"):
        body = assert_problem(client.post(f"{API}/verifications", headers=alice,
                                          data={**env.upload(), "callback_url": url}), 422)
        assert body["errors"][0]["field"] == "callback_url"
    assert_problem(client.post(f"{API}/signatures", headers=alice,
                               data={**env.upload(), "callback_url": "https://10.0.0.1/"}), 422)
    assert_problem(client.post(f"{API}/generations", headers=alice, json={"prompt": "x", "callback_url": 5}), 422)
    assert_problem(client.post(f"{API}/generations", headers=alice,
                               json={"prompt": "x", "callback_url": "https://localhost/hook"}), 422)
    # http to loopback only where the instance allows it (tests, local development).
    strict = env.app(webhook_allow_http_loopback=False).test_client()
    assert_problem(strict.post(f"{API}/generations", headers=alice,
                               json={"prompt": "x", "callback_url": "http://127.0.0.1:9/hook"}), 422)
    assert len(env.pipeline.sent) == before  # no job was made for any of them


def test_a_key_without_a_webhook_secret_cannot_ask_for_callbacks(client, env: WebEnv) -> None:
    from sqlalchemy import text

    keys = env.app().extensions["veriframe.web"].keys
    old = keys.create("pre-webhooks", "generate", owner="dora")
    with env.pipeline.runtime.engine.begin() as conn:  # as a key made before migration 0002 is
        conn.execute(text("UPDATE web_api_keys SET webhook_secret = NULL WHERE id = :id"), {"id": old.info.id})
    headers = {"Authorization": f"Bearer {old.key}"}
    body = assert_problem(client.post(f"{API}/generations", headers=headers,
                                      json={"prompt": "x", "callback_url": "https://hooks.example.com/vf"}), 422)
    assert "webhook secret" in body["detail"]
    assert client.post(f"{API}/generations", headers=headers, json={"prompt": "x"}).status_code == 202


def test_batch_verification_queues_every_readable_file(client, env: WebEnv) -> None:
    import io

    alice = env.auth("alice")
    clip = env.clip.read_bytes()
    files = [(io.BytesIO(clip), "a.mp4"), (io.BytesIO(b"plain text, not a video\n" * 40), "notes.mp4"),
             (io.BytesIO(clip), "../b.mp4"), (io.BytesIO(b""), "empty.mp4")]
    response = client.post(f"{API}/verifications/batch", headers={**alice, "Idempotency-Key": "batch-1"},
                           data={"file": files, "callback_url": "https://hooks.example.com/vf"})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert [(i["index"], i["status"]) for i in body["items"]] == [(0, 202), (1, 415), (2, 202), (3, 400)]
    assert body["accepted"] == 2 and body["rejected"] == 2
    assert body["items"][2]["filename"] == "b.mp4"
    for item in (body["items"][1], body["items"][3]):
        problem = item["problem"]
        assert problem["status"] == item["status"] and problem["title"] and problem["detail"] and "id" not in item
    for item in (body["items"][0], body["items"][2]):
        assert item["id"] in env.pipeline.sent and item["location"] == f"{API}/verifications/{item['id']}"
        job = client.get(item["location"], headers=alice).get_json()
        assert job["state"] == "queued" and job["kind"] == "verify"
    assert body["items"][0]["id"] != body["items"][2]["id"]
    # The same Idempotency-Key again gives the same jobs, file by file.
    again = client.post(f"{API}/verifications/batch", headers={**alice, "Idempotency-Key": "batch-1"},
                        data={"file": [(io.BytesIO(clip), "a.mp4")]}).get_json()
    assert again["items"][0]["id"] == body["items"][0]["id"]


def test_batch_limits_are_problems(env: WebEnv) -> None:
    import io

    alice = env.auth("alice")
    client = env.app(api_batch_max_files=2).test_client()
    three = {"file": [(io.BytesIO(env.clip.read_bytes()), f"{i}.mp4") for i in range(3)]}
    body = assert_problem(client.post(f"{API}/verifications/batch", headers=alice, data=three), 400)
    assert "at most 2" in body["detail"]
    assert_problem(client.post(f"{API}/verifications/batch", headers=alice, data={}), 400)
    assert_problem(client.post(f"{API}/verifications/batch", headers=env.auth("lister"),
                               data={**env.upload(), "callback_url": "http://example.com/"}), 422)
    assert_problem(client.post(f"{API}/verifications/batch", data=env.upload()), 401)
    assert_problem(client.post(f"{API}/verifications/batch", headers={**alice, "Idempotency-Key": "k" * 121},
                               data=env.upload()), 400)
