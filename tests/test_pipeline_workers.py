"""Reliability with real worker processes on real brokers (Redis, RabbitMQ, the embedded SQLite).

Each test starts ``manage.py worker`` (or ``manage.py serve``) as a separate process group and
does to it what production does: SIGKILL it mid-job, restart the broker under it, deliver the
same task twice, feed it garbage, stop serve with work queued.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from pipeline_helpers import (
    FAST_JOBS,
    RABBIT_URL,
    ROOT,
    TESTS,
    RedisServer,
    WorkerProcess,
    free_port,
    make_instance,
    port_open,
    postgres_database,
    settings_of,
    wait_for,
)
from sqlalchemy import func, select

from media.synthetic import make_test_clip
from pipeline.celery_app import send_job
from pipeline.models import Artifact, Job
from pipeline.service import Pipeline
from storage import LocalStore

pytestmark = pytest.mark.slow


@pytest.fixture
def redis(tmp_path: Path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def fake_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "generations.log"
    monkeypatch.setenv("VF_FAKE_LOG", str(log))
    monkeypatch.setenv("VF_FAKE_STEP_S", "0.3")
    return log


def _artifacts(pipeline: Pipeline, job_id: str) -> list[Artifact]:
    with pipeline.runtime.sessions() as session:
        return list(session.scalars(select(Artifact).where(Artifact.job_id == job_id)))


def _finished(pipeline: Pipeline, job_ids: list[str]) -> int:
    with pipeline.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(Job).where(
            Job.id.in_(job_ids), Job.state.in_(["succeeded", "failed", "cancelled"]))) or 0


def _manifests_with_payload(pipeline: Pipeline, payload: str) -> int:
    from provenance.manifest_store import ManifestStore

    return len(ManifestStore(pipeline.settings).by_payload(payload))


def _sigkill_mid_generate(tmp_path: Path, pipeline: Pipeline, inst: Path, gen_log: Path) -> None:
    worker = WorkerProcess(inst, queues="generate").start()
    try:
        job = pipeline.submit_generate("a red kite over a grey sea", steps=12, width=96, height=64)
        wait_for(lambda: pipeline.get(job.id).stage == "sampling" and pipeline.get(job.id).percent > 20, 40,
                 "the generate job to be sampling")
        worker.kill()
        assert pipeline.get(job.id).state == "running"  # as the dead worker left it
        replacement = WorkerProcess(inst, queues="generate").start()
        try:
            done = pipeline.wait(job.id, timeout=40)
        finally:
            replacement.stop()
    finally:
        worker.kill()
    assert done.state == "succeeded", done.error
    assert done.attempts == 2 and len(gen_log.read_text().splitlines()) == 2  # killed once, ran once more
    assert sorted(a.role for a in _artifacts(pipeline, job.id)) == ["manifest", "output"]
    store = pipeline.runtime.store
    assert isinstance(store, LocalStore) and len(list(store.iter_blobs())) == 2  # exactly one file, one manifest
    assert _manifests_with_payload(pipeline, done.result["watermark"]["payload"]) == 1
    report = pipeline.get(done.id).result
    assert report["generation"]["model"] == "fake-generator"


def test_sigkill_mid_generate_on_redis_and_postgresql(tmp_path: Path, redis: RedisServer,
                                                      fake_generator: Path) -> None:
    """SIGKILL a generate worker mid-sampling: a new worker finishes the job, one artifact, one manifest."""
    with postgres_database() as db:
        inst = make_instance(tmp_path, database_url=db, broker_url=redis.url,
                             generator_entrypoint="pipeline_helpers:slow_generate", **FAST_JOBS)
        pipeline = Pipeline(settings_of(inst))
        pipeline.migrate()
        try:
            _sigkill_mid_generate(tmp_path, pipeline, inst, fake_generator)
        finally:
            pipeline.runtime.close()


@pytest.fixture
def rabbit_vhost():
    if shutil.which("rabbitmqctl") is None or not port_open(5672):
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    name = f"vf_test_{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)

    try:
        ctl("add_vhost", name)
        ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot create a RabbitMQ vhost: {exc}")
    yield RABBIT_URL.rstrip("/") + "/" + name
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60)


def test_sigkill_mid_generate_on_rabbitmq(tmp_path: Path, rabbit_vhost: str, fake_generator: Path) -> None:
    """On RabbitMQ the killed worker's message comes back at once; the job still runs to one result."""
    inst = make_instance(tmp_path, broker_url=rabbit_vhost, generator_entrypoint="pipeline_helpers:slow_generate",
                         **FAST_JOBS)
    pipeline = Pipeline(settings_of(inst))
    pipeline.migrate()
    _sigkill_mid_generate(tmp_path, pipeline, inst, fake_generator)


def _finished_while_alive(pipeline: Pipeline, job_ids: list[str], worker: WorkerProcess) -> int:
    """Jobs finished so far; fails at once, with the worker's log, if the worker has exited."""
    if worker.proc is not None and worker.proc.poll() is not None:
        raise AssertionError(f"the worker exited ({worker.proc.returncode}):\n{worker.output()[-4000:]}")
    return _finished(pipeline, job_ids)


def _wait_for_all(pipeline: Pipeline, job_ids: list[str], worker: WorkerProcess, timeout: float) -> None:
    """Wait until every job has finished; a timeout says where the others stand, with the worker's log."""
    try:
        wait_for(lambda: _finished_while_alive(pipeline, job_ids, worker) == len(job_ids), timeout,
                 f"all {len(job_ids)} jobs to finish", interval=0.5)
    except AssertionError as exc:
        with pipeline.runtime.sessions() as session:
            where = Counter(session.execute(select(Job.state, Job.stage).where(Job.id.in_(job_ids))).all())
        raise AssertionError(f"{exc}; jobs by (state, stage): {dict(where)}\n{worker.output()[-4000:]}") from None


def test_redis_restart_with_50_verify_jobs_queued(tmp_path: Path, redis: RedisServer) -> None:
    """Redis restarts before the run and three times in quick succession during it: the worker stays
    up, all 50 jobs complete, none runs twice. (Quick restarts while the worker holds unacknowledged
    messages made kombu's own Redis transport crash the worker: see pipeline.redis_transport.)"""
    inst = make_instance(tmp_path, broker_url=redis.url, **{**FAST_JOBS, "job_resend_after_s": 5.0})
    pipeline = Pipeline(settings_of(inst))
    pipeline.migrate()
    clip = make_test_clip(tmp_path / "clip.mp4", width=64, height=48, frames=4)
    submitted = [pipeline.submit_verify(clip).id for _ in range(50)]
    redis.restart()  # everything is queued: the append-only file keeps it
    worker = WorkerProcess(inst, queues="default", concurrency=2).start()
    try:
        wait_for(lambda: _finished_while_alive(pipeline, submitted, worker) >= 10, 40, "10 jobs to finish",
                 interval=0.25)
        for _ in range(3):  # and again with jobs running and reserved, before the worker has settled
            redis.restart()
            time.sleep(0.5)
        _wait_for_all(pipeline, submitted, worker, 60)
    finally:
        worker.stop()
    views = [pipeline.get(j) for j in submitted]
    assert {v.state for v in views} == {"succeeded"}
    assert {v.attempts for v in views} == {1}  # none ran twice
    roles = ["input", *(f"keyframe-{n}" for n in range(1, 5)), "report"]  # 4 frames: 4 keyframes
    assert all(sorted(a.role for a in _artifacts(pipeline, v.id)) == roles for v in views)


def test_redis_transport_turns_a_lost_connection_into_connection_errors(tmp_path: Path, redis: RedisServer) -> None:
    """After Redis went away a channel has no transport under it. Closing it keeps its unacknowledged
    messages in Redis, and a task finishing later acknowledges on it with a connection error, which
    Celery logs and drops (kombu's own transport raises AttributeError in both, which exits a Celery
    worker). A normal close still gives the messages back to the queue at once."""
    import redis as redis_py

    from pipeline.celery_app import create_celery
    from pipeline.redis_transport import Transport

    inst = make_instance(tmp_path, broker_url=redis.url, **FAST_JOBS)
    app = create_celery(settings_of(inst))
    raw = redis_py.Redis.from_url(redis.url)
    for gone in (True, False):
        with app.connection_for_write() as conn:
            assert isinstance(conn.transport, Transport)
            queue = conn.SimpleQueue("vf-transport-test")
            queue.put({"gone": gone})
            message = queue.get(timeout=5)  # taken, not acknowledged
            assert message.payload == {"gone": gone} and raw.hlen("unacked") == 1
            if gone:
                queue.channel.connection.client = None  # what a reconnect leaves behind
            queue.channel.close()
            if gone:
                with pytest.raises(conn.connection_errors):
                    message.ack()  # the task that held it finished after the reconnect
            assert (raw.hlen("unacked"), raw.llen("vf-transport-test")) == ((1, 0) if gone else (0, 1))
            raw.delete("unacked", "unacked_index", "vf-transport-test")


def test_same_task_delivered_twice_gives_one_result(tmp_path: Path, redis: RedisServer) -> None:
    inst = make_instance(tmp_path, broker_url=redis.url, **FAST_JOBS)
    pipeline = Pipeline(settings_of(inst))
    pipeline.migrate()
    clip = make_test_clip(tmp_path / "clip.mp4", width=96, height=64, frames=6)
    job = pipeline.submit_verify(clip, idempotency_key="upload-42")
    assert pipeline.submit_verify(clip, idempotency_key="upload-42").id == job.id  # the client retried
    for _ in range(2):
        send_job(pipeline.celery, job.id, "verify")  # the broker redelivered, twice
    worker = WorkerProcess(inst, queues="default", concurrency=2).start()
    try:
        done = pipeline.wait(job.id, timeout=40)
        wait_for(lambda: worker.output().count("succeeded in") >= 3, 20, "all three deliveries to be handled")
    finally:
        worker.stop()
    assert done.state == "succeeded" and done.attempts == 1
    assert sorted(a.role for a in _artifacts(pipeline, job.id)) == ["input", *(f"keyframe-{n}" for n in range(1, 7)),
                                                                    "report"]
    assert worker.output().count(": 'succeeded'") == 1  # one delivery did the work, the others saw it done


def test_bad_input_fails_with_a_clear_error_and_no_retries(tmp_path: Path, redis: RedisServer) -> None:
    inst = make_instance(tmp_path, broker_url=redis.url, generator_entrypoint="pipeline_helpers:no_weights",
                         **FAST_JOBS)
    pipeline = Pipeline(settings_of(inst))
    pipeline.migrate()
    text = tmp_path / "holiday.mp4"
    text.write_text("this is not a video\n" * 100)
    bad = pipeline.submit_verify(text)
    nogen = pipeline.submit_generate("a kite", steps=4)
    worker = WorkerProcess(inst).start()
    try:
        bad = pipeline.wait(bad.id, timeout=40)
        nogen = pipeline.wait(nogen.id, timeout=40)
    finally:
        worker.stop()
    assert bad.state == "failed" and bad.error_kind == "bad_input" and bad.attempts == 1
    assert bad.error and "\n" not in bad.error and "Traceback" not in bad.error
    assert nogen.state == "failed" and nogen.error_kind == "unavailable" and "no usable checkpoint" in nogen.error
    assert "Retry in" not in worker.output()


def test_cancel_and_time_limit_stop_running_generate_jobs(tmp_path: Path, redis: RedisServer,
                                                           fake_generator: Path) -> None:
    inst = make_instance(tmp_path, broker_url=redis.url, generator_entrypoint="pipeline_helpers:slow_generate",
                         generate_time_limit_s=3.0, **FAST_JOBS)
    pipeline = Pipeline(settings_of(inst))
    pipeline.migrate()
    worker = WorkerProcess(inst, queues="generate").start()
    try:
        cancelled = pipeline.submit_generate("a long take", steps=40)
        too_long = pipeline.submit_generate("an even longer take", steps=40)
        wait_for(lambda: pipeline.get(cancelled.id).stage == "sampling", 40, "sampling to start")
        pipeline.cancel(cancelled.id)
        timed_out = pipeline.wait(too_long.id, timeout=30)
    finally:
        worker.stop()
    view = pipeline.get(cancelled.id)
    assert f"job {cancelled.id}: stopped" in worker.output()
    assert view.state == "cancelled" and view.percent < 100 and _artifacts(pipeline, cancelled.id) == []
    assert timed_out.state == "failed" and timed_out.error_kind == "timeout" and "3 s limit" in timed_out.error
    assert timed_out.attempts == 1 and _artifacts(pipeline, too_long.id) == []


def test_a_generation_stuck_without_progress_still_times_out(tmp_path: Path, redis: RedisServer,
                                                              fake_generator: Path) -> None:
    """The generate worker's pool enforces the time limit even when the job never reports progress."""
    inst = make_instance(tmp_path, broker_url=redis.url, generator_entrypoint="pipeline_helpers:stuck_generate",
                         generate_time_limit_s=2.0, **FAST_JOBS)
    pipeline = Pipeline(settings_of(inst))
    pipeline.migrate()
    worker = WorkerProcess(inst, queues="generate").start()
    try:
        job = pipeline.submit_generate("a take that never ends", steps=4)
        ended = pipeline.wait(job.id, timeout=60)
    finally:
        worker.stop()
    assert ended.state == "failed" and ended.error_kind == "timeout", (ended, worker.output()[-2000:])
    assert ended.attempts == 1 and _artifacts(pipeline, job.id) == []


def test_embedded_broker_jobs_survive_a_restart_of_serve(tmp_path: Path, fake_generator: Path) -> None:
    """``serve`` is stopped with jobs queued (and one running); started again, it finishes them all."""
    inst = make_instance(tmp_path, generator_entrypoint="pipeline_helpers:slow_generate", **FAST_JOBS)
    pipeline = Pipeline(settings_of(inst))
    pipeline.migrate()
    clip = make_test_clip(tmp_path / "clip.mp4", width=64, height=48, frames=4)
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}

    def serve() -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                ["nice", "-n", "10", sys.executable, str(ROOT / "manage.py"), "--instance", str(inst), "serve",
                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    first = serve()
    try:
        slow = pipeline.submit_generate("a slow one", steps=12)
        queued = [pipeline.submit_verify(clip).id for _ in range(2)]
        wait_for(lambda: pipeline.get(slow.id).stage == "sampling", 40, "the embedded worker to start a job")
        first.send_signal(signal.SIGTERM)
        first.wait(40)
        later = [pipeline.submit_verify(clip).id]  # submitted while serve is down
        assert not all(pipeline.get(j).done for j in queued + later)
        second = serve()
        try:
            for job_id in [slow.id, *queued, *later]:
                assert pipeline.wait(job_id, timeout=60).state == "succeeded", log.read_text()[-3000:]
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    with pipeline.runtime.sessions() as session:
        reports = session.scalar(select(func.count()).select_from(Artifact).where(Artifact.role == "report"))
    assert reports == 3
