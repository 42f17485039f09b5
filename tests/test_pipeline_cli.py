"""``manage.py jobs|db|worker`` end to end (the worker-backed paths are in test_pipeline_workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import FAST_JOBS, ROOT, WorkerProcess, make_instance

from media.synthetic import make_test_clip


def run(inst: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VERIFRAME_DEBUG", "DATABASE_URL", "CELERY_BROKER_URL")}
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), "--instance", str(inst), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_submit_list_show_cancel_without_a_worker(tmp_path: Path) -> None:
    inst = make_instance(tmp_path, **FAST_JOBS)
    clip = make_test_clip(tmp_path / "clip.mp4", width=64, height=48, frames=4)
    r = run(inst, "jobs", "verify", str(clip), "--no-wait")
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    listed = run(inst, "jobs", "list", "--json")
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]
    shown = json.loads(run(inst, "jobs", "show", job_id).stdout)
    assert shown["kind"] == "verify" and shown["state"] == "queued" and shown["params"]["filename"] == "clip.mp4"
    assert [a["role"] for a in shown["artifacts"]] == ["input"]
    r = run(inst, "jobs", "cancel", job_id, "00000000-0000-0000-0000-000000000000")
    assert r.returncode == 2 and r.stdout.strip() == f"{job_id} cancelled"
    assert r.stderr.strip() == "error: no job 00000000-0000-0000-0000-000000000000"


@pytest.mark.slow
def test_sign_and_verify_through_a_worker(tmp_path: Path) -> None:
    inst = make_instance(tmp_path, **FAST_JOBS)
    clip = make_test_clip(tmp_path / "clip.mp4", width=320, height=180, frames=16, pattern="noise")
    worker = WorkerProcess(inst, queues="default").start()
    try:
        signed = tmp_path / "signed.mp4"
        r = run(inst, "jobs", "sign", str(clip), str(signed), "--source", "capture", "--timeout", "60")
        assert r.returncode == 0 and signed.is_file(), r.stderr + worker.output()[-2000:]
        r = run(inst, "jobs", "verify", str(signed), "--json", "--timeout", "60")
        assert r.returncode == 0, r.stderr
        body = json.loads(r.stdout)
        assert body["state"] == "succeeded" and body["report"]["c2pa"]["state"] == "trusted"
        assert body["report"]["watermark"]["present"]
    finally:
        worker.stop()
