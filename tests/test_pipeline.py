"""The pipeline without workers: configuration, migrations, storage, the job life cycle, workflows.

Workflows and the runner are plain functions, tested here directly on SQLite and on a real
PostgreSQL; tests/test_pipeline_workers.py runs them through real Celery worker processes.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from pathlib import Path

import pytest
from pipeline_helpers import FAST_JOBS, make_instance, postgres_database, settings_of
from sqlalchemy import select, update

from media.errors import MediaError
from media.synthetic import make_test_clip
from pipeline import jobs
from pipeline.celery_app import broker_url, celery_config, is_embedded, time_limits
from pipeline.db import (
    SCHEMA_REVISION,
    create_db_engine,
    current_revision,
    head_revision,
    session_factory,
    upgrade,
)
from pipeline.errors import (
    BlobNotFoundError,
    ClaimLostError,
    ComponentUnavailableError,
    JobCancelledError,
    JobInputError,
    StorageError,
    StorageUnavailableError,
    TransientError,
)
from pipeline.models import Artifact, Base, Job, JobState
from pipeline.runner import execute
from pipeline.runtime import Runtime
from pipeline.service import Pipeline
from pipeline.work import JobContext
from pipeline.work import generate as generate_work
from pipeline.work import sign as sign_work
from pipeline.work import verify as verify_work
from settings import ConfigError, load_settings
from storage import LocalStore, S3Store, blob_key

# --- configuration ------------------------------------------------------------------------------


def test_service_urls_default_to_the_instance_and_accept_conventional_variables(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={})
    assert s.sqlalchemy_url == f"sqlite:///{(tmp_path / 'veriframe.db').resolve()}"
    assert broker_url(s) == f"sqla+sqlite:///{(tmp_path / 'broker.db').resolve()}" and is_embedded(s)
    s = load_settings(tmp_path, env={"DATABASE_URL": "postgresql://u@db/vf", "CELERY_BROKER_URL": "redis://r:6379/0"})
    assert s.sqlalchemy_url == "postgresql+psycopg://u@db/vf"
    assert broker_url(s) == "redis://r:6379/0" and not is_embedded(s)
    s = load_settings(tmp_path, env={"CELERY_BROKER_URL": "redis://a", "VERIFRAME_BROKER_URL": "amqp://b"})
    assert s.broker_url == "amqp://b"  # our own variable wins over the alias
    with pytest.raises(ConfigError):
        load_settings(tmp_path, env={"VERIFRAME_JOB_STALE_AFTER_S": "1", "VERIFRAME_JOB_HEARTBEAT_S": "1"})


def test_celery_config_is_json_only_late_acking_and_time_limited(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"})
    conf = celery_config(s)
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"] and conf["worker_prefetch_multiplier"] == 1
    longest_hard = max(hard for _, hard in time_limits(s).values())
    assert conf["broker_transport_options"]["visibility_timeout"] > longest_hard
    for name, soft in [("veriframe.verify", s.verify_time_limit_s), ("veriframe.generate", s.generate_time_limit_s)]:
        note = conf["task_annotations"][name]
        assert note["soft_time_limit"] == soft < note["time_limit"] and note["max_retries"] == s.job_max_retries
    assert conf["task_routes"]["veriframe.generate"]["queue"] == "generate"
    assert conf["task_routes"]["veriframe.verify"]["queue"] == "default"
    assert conf["worker_max_memory_per_child"] == s.worker_max_memory_per_child_kb
    embedded = celery_config(load_settings(tmp_path, env={}))
    assert embedded["broker_url"].startswith("sqla+sqlite:///") and not embedded["worker_enable_remote_control"]


# --- migrations ---------------------------------------------------------------------------------


def _schema_diff(engine) -> list:
    """What the migrations made that the ORM classes do not say (the pipeline's and the manifest store's)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from provenance.manifest_store import ManifestRow

    models = [Base.metadata, ManifestRow.metadata]
    known = {name for m in models for name in m.tables}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), models)
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name not in known)]


def test_migrations_build_the_models_schema_on_sqlite(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'vf.db'}")
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision() == upgrade(engine) == SCHEMA_REVISION  # idempotent
    assert _schema_diff(engine) == []


def test_migration_0002_adopts_the_tables_create_all_made(tmp_path: Path) -> None:
    """An instance at 0001 whose web app and manifest store made their own tables at run time
    keeps them, rows included; it gains the keys' webhook secret and the webhook table."""
    from alembic import command
    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, insert, inspect

    from pipeline.db import _alembic_config
    from provenance.manifest_store import ManifestStore
    from web.apikeys import KeyStore, hash_key

    engine = create_db_engine(f"sqlite:///{tmp_path / 'veriframe.db'}")  # the instance tmp_path's database
    assert upgrade(engine, "0001") == "0001"
    legacy = MetaData()  # the shapes web/apikeys.py and provenance/manifest_store.py gave create_all
    keys_table = Table(
        "web_api_keys", legacy, Column("id", String(36), primary_key=True),
        Column("name", String(128), nullable=False), Column("owner", String(128), nullable=False),
        Column("scopes", Text, nullable=False), Column("key_hash", String(64), unique=True, nullable=False),
        Column("prefix", String(16), nullable=False), Column("created_at", DateTime(timezone=True), nullable=False),
        Column("revoked_at", DateTime(timezone=True)))
    manifests = Table(
        "manifests", legacy, Column("id", Integer, primary_key=True),
        Column("label", String(200), unique=True, nullable=False), Column("payload_hex", String(16), index=True),
        Column("asset_sha256", String(64), index=True, nullable=False),
        Column("manifest_sha256", String(64), nullable=False), Column("source", String(20), nullable=False),
        Column("version", Integer, nullable=False), Column("created_at", DateTime(timezone=True), nullable=False))
    legacy.create_all(engine)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(insert(keys_table).values(id="k-old", name="old", owner="alice", scopes="verify",
                                               key_hash=hash_key("vf_old-key"), prefix="vf_old-key", created_at=now))
        conn.execute(insert(manifests).values(label="urn:c2pa:old", payload_hex="00ff00ff00ff00ff",
                                              asset_sha256="a" * 64, manifest_sha256="b" * 64, source="capture",
                                              version=1, created_at=now))

    def check_upgraded() -> None:
        assert current_revision(engine) == SCHEMA_REVISION == head_revision()
        assert "webhook_secret" in {c["name"] for c in inspect(engine).get_columns("web_api_keys")}
        assert inspect(engine).has_table("webhook_deliveries")
        old = KeyStore(engine).authenticate("vf_old-key")
        assert old is not None and old.owner == "alice" and not old.webhooks  # kept, without a secret
        store = ManifestStore(load_settings(tmp_path, env={}))
        assert [m.label for m in store.by_payload("00ff00ff00ff00ff")] == ["urn:c2pa:old"]

    assert upgrade(engine) == SCHEMA_REVISION
    check_upgraded()
    new = KeyStore(engine).create("new", "verify")
    assert new.webhook_secret.startswith("whsec_") and KeyStore(engine).get(new.info.id).webhooks

    # Down to 0001 drops only what 0002 added; up again adopts the tables a second time.
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert not inspect(engine).has_table("webhook_deliveries") and inspect(engine).has_table("manifests")
    assert upgrade(engine) == SCHEMA_REVISION
    check_upgraded()
    engine.dispose()


@pytest.mark.slow
def test_migrations_and_claims_on_postgresql() -> None:
    with postgres_database() as url:
        engine = create_db_engine(load_settings(Path("."), env={"DATABASE_URL": url}).sqlalchemy_url)
        try:
            threads = [threading.Thread(target=upgrade, args=(engine,)) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()  # concurrent upgrades serialise on the advisory lock
            assert current_revision(engine) == head_revision() and _schema_diff(engine) == []
            sessions = session_factory(engine)
            with sessions() as session:
                job, _ = jobs.create_job(session, "verify", {"x": 1})
                session.commit()
            results: list[str] = []
            barrier = threading.Barrier(4)

            def race(i: int) -> None:
                barrier.wait()
                results.append(jobs.claim_job(sessions, job.id, f"t{i}", stale_after=30, max_attempts=5).status)

            racers = [threading.Thread(target=race, args=(i,)) for i in range(4)]
            for t in racers:
                t.start()
            for t in racers:
                t.join()
            assert sorted(results) == ["busy", "busy", "busy", "claimed"]
        finally:
            engine.dispose()


# --- storage ------------------------------------------------------------------------------------


def test_local_store_is_content_addressed_atomic_and_refuses_paths(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    ref = store.put_bytes(b"hello")
    assert ref.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" and ref.size == 5
    assert store.path_of(ref.sha256) == tmp_path / "s" / "sha256" / "2c" / "f2" / ref.sha256
    src = tmp_path / "f.bin"
    src.write_bytes(b"hello")
    assert store.put_file(src) == ref and list(store.iter_blobs()) == [ref.sha256]
    assert list((tmp_path / "s" / "tmp").iterdir()) == []  # no partial files left behind
    with store.open(ref.sha256) as fh:
        assert fh.read() == b"hello"
    with store.local_copy(ref.sha256, tmp_path / "scratch") as path:
        assert path.read_bytes() == b"hello"
    for bad in ("../../etc/passwd", "A" * 64, ref.sha256[:-1]):
        with pytest.raises(StorageError):
            blob_key(bad)
    with pytest.raises(BlobNotFoundError):
        store.open("0" * 64)
    store.delete(ref.sha256)
    assert not store.exists(ref.sha256)


def test_s3_store_round_trip_and_transient_errors(tmp_path: Path) -> None:
    moto = pytest.importorskip("moto")
    import boto3

    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="vf-artifacts")
        store = S3Store("vf-artifacts", prefix="p/", client=client)
        data = b"x" * 70_000
        src = tmp_path / "blob"
        src.write_bytes(data)
        ref = store.put_file(src)
        assert store.put_bytes(data) == ref and store.exists(ref.sha256)
        assert client.head_object(Bucket="vf-artifacts", Key=f"p/{blob_key(ref.sha256)}")["ContentLength"] == len(data)
        with store.open(ref.sha256) as fh:
            assert fh.read() == data
        with store.local_copy(ref.sha256, tmp_path / "scratch") as path:
            assert path.read_bytes() == data
        assert not path.exists() and list(store.iter_blobs()) == [ref.sha256]
        with pytest.raises(BlobNotFoundError):
            store.open("0" * 64)
        store.delete(ref.sha256)
        assert not store.exists(ref.sha256)

    from botocore.exceptions import EndpointConnectionError

    class Down:
        def head_object(self, **_: object) -> None:
            raise EndpointConnectionError(endpoint_url="http://s3.invalid")

    with pytest.raises(StorageUnavailableError):
        S3Store("vf-artifacts", client=Down()).put_bytes(b"x")


# --- the job life cycle -------------------------------------------------------------------------


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    rt = Runtime(settings_of(make_instance(tmp_path, **FAST_JOBS)))
    rt.migrate()
    yield rt
    rt.close()


def test_idempotency_key_gives_one_job(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        a, created_a = jobs.create_job(session, "verify", {}, owner="k1", idempotency_key="abc")
        b, created_b = jobs.create_job(session, "verify", {}, owner="k1", idempotency_key="abc")
        c, _ = jobs.create_job(session, "verify", {}, owner="k2", idempotency_key="abc")
        session.commit()
    assert created_a and not created_b and a.id == b.id != c.id


def test_claim_is_exclusive_until_the_holder_goes_stale(runtime: Runtime) -> None:
    sessions = runtime.sessions
    with sessions() as session:
        job, _ = jobs.create_job(session, "verify", {})
        session.commit()
    first = jobs.claim_job(sessions, job.id, "a", stale_after=3, max_attempts=3, worker="elsewhere:1")
    assert first.status == "claimed" and first.job.attempts == 1
    busy = jobs.claim_job(sessions, job.id, "b", stale_after=3, max_attempts=3)
    assert busy.status == "busy" and 0 < busy.retry_in <= 3
    with sessions() as session:  # the holder stops beating
        old = jobs.utcnow() - dt.timedelta(seconds=10)
        session.execute(update(Job).where(Job.id == job.id).values(heartbeat_at=old))
        session.commit()
    assert not jobs.heartbeat(sessions, job.id, "b")
    second = jobs.claim_job(sessions, job.id, "b", stale_after=3, max_attempts=3)
    assert second.status == "claimed" and second.job.attempts == 2
    with pytest.raises(ClaimLostError):  # the presumed-dead attempt cannot write a result
        jobs.finish_job(sessions, job.id, "a", jobs.Outcome({"x": 1}, [jobs.NewArtifact("report", "0" * 64, 1, "x")]))
    with sessions() as session:
        assert session.scalars(select(Artifact).where(Artifact.job_id == job.id)).all() == []
    done = jobs.finish_job(sessions, job.id, "b", jobs.Outcome({"ok": True},
                                                                [jobs.NewArtifact("report", "1" * 64, 2, "x")]))
    assert done.state == "succeeded" and done.result == {"ok": True} and len(done.artifacts) == 1
    assert jobs.claim_job(sessions, job.id, "c", stale_after=3, max_attempts=3).status == "done"


def test_a_dead_holder_on_this_host_is_taken_over_at_once(runtime: Runtime) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with runtime.sessions() as session:
        job, _ = jobs.create_job(session, "verify", {})
        session.commit()
    holder = f"{socket.gethostname()}:{dead.stdout.strip()}"
    first = jobs.claim_job(runtime.sessions, job.id, "a", stale_after=60, max_attempts=3, worker=holder)
    assert first.status == "claimed"
    assert jobs.claim_job(runtime.sessions, job.id, "b", stale_after=60, max_attempts=3).status == "claimed"


def test_jobs_that_keep_killing_workers_are_abandoned(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        job, _ = jobs.create_job(session, "verify", {})
        session.commit()
    for i in range(2):
        assert jobs.claim_job(runtime.sessions, job.id, f"t{i}", stale_after=0.01, max_attempts=2).status == "claimed"
        with runtime.sessions() as session:
            session.execute(update(Job).values(heartbeat_at=jobs.utcnow() - dt.timedelta(seconds=1)))
            session.commit()
    claim = jobs.claim_job(runtime.sessions, job.id, "t9", stale_after=0.01, max_attempts=2)
    assert claim.status == "abandoned" and claim.job.state == "failed" and claim.job.error_kind == "abandoned"
    assert "abandoned after 2 attempts" in claim.job.error


def test_cancel_stops_a_running_job_at_its_next_progress_report(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        job, _ = jobs.create_job(session, "generate", {"prompt": "x"})
        session.commit()
    assert jobs.claim_job(runtime.sessions, job.id, "a", stale_after=3, max_attempts=3).status == "claimed"
    jobs.report_progress(runtime.sessions, job.id, "a", "sampling", 40)
    with runtime.sessions() as session:
        assert jobs.cancel_job(session, job.id).state == "cancelled"
    with pytest.raises(JobCancelledError):
        jobs.report_progress(runtime.sessions, job.id, "a", "sampling", 50)
    with runtime.sessions() as session:
        view = jobs.get_job(session, job.id)
        assert view.state == "cancelled" and view.percent == 40
        assert jobs.cancel_job(session, job.id).state == "cancelled"  # idempotent


def test_orphans_are_requeued_once_however_many_sweep(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        running, _ = jobs.create_job(session, "verify", {})
        unsent, _ = jobs.create_job(session, "sign", {})
        fresh, _ = jobs.create_job(session, "verify", {})
        session.commit()
    jobs.claim_job(runtime.sessions, running.id, "a", stale_after=3, max_attempts=3, worker="gone:1")
    with runtime.sessions() as session:
        long_ago = jobs.utcnow() - dt.timedelta(minutes=5)
        session.execute(update(Job).where(Job.id == running.id).values(heartbeat_at=long_ago))
        session.execute(update(Job).where(Job.id.in_([unsent.id])).values(created_at=long_ago))
        session.execute(update(Job).where(Job.id == fresh.id).values(sent_at=jobs.utcnow()))
        session.commit()
    results: list[list[tuple[str, str]]] = []
    threads = [threading.Thread(target=lambda: results.append(jobs.reclaim_orphans(runtime.sessions, stale_after=3)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = sorted(x for r in results for x in r)
    assert found == sorted([(running.id, "verify"), (unsent.id, "sign")])
    with runtime.sessions() as session:
        assert jobs.get_job(session, running.id).state == "queued"


# --- workflows as plain functions ---------------------------------------------------------------


def _ctx(runtime: Runtime, job_id: str, params: dict, scratch: Path) -> JobContext:
    seen: list[tuple[str, float]] = []
    scratch.mkdir(parents=True, exist_ok=True)
    ctx = JobContext(job_id=job_id, params=params, settings=runtime.settings, store=runtime.store,
                     scratch=scratch, progress=lambda stage, pct: seen.append((stage, pct)))
    ctx.seen = seen  # type: ignore[attr-defined]
    return ctx


def _stored(runtime: Runtime, path: Path) -> dict:
    ref = runtime.store.put_file(path)
    return {"sha256": ref.sha256, "size": ref.size}


@pytest.mark.slow
def test_sign_then_verify_then_recover_through_the_watermark(runtime: Runtime, tmp_path: Path) -> None:
    # 320x180: at 160x120 the mark's score after the re-encode sits 1-3 points over the threshold
    # and a random payload can land under it (measured); the size keeps the test about the pipeline
    clip = make_test_clip(tmp_path / "clip.mp4", width=320, height=180, frames=16, pattern="noise")
    ctx = _ctx(runtime, "job-sign", {"input": _stored(runtime, clip), "filename": "clip.mp4", "source": "capture",
                                     "title": "Harbour"}, tmp_path / "s1")
    signed = sign_work(ctx)
    assert [a.role for a in signed.artifacts] == ["output", "manifest"]
    assert signed.result["watermark"]["payload"] and signed.result["manifest"]["label"].startswith("urn:c2pa:")
    assert [s for s, _ in ctx.seen][:2] == ["probe", "watermark and sign"]

    output, manifest = signed.artifacts
    kept = Pipeline(runtime.settings).manifest_bytes(payload=signed.result["watermark"]["payload"])
    assert kept == runtime.store.open(manifest.sha256).read()
    assert Pipeline(runtime.settings).manifest_bytes(asset_sha256=output.sha256) == kept
    vctx = _ctx(runtime, "job-verify", {"input": {"sha256": output.sha256, "size": output.size}}, tmp_path / "s2")
    outcome = verify_work(vctx)
    report = json.loads(runtime.store.open(outcome.artifacts[0].sha256).read())
    assert report["version"] == 5 and report["c2pa"]["state"] == "trusted" and report["watermark"]["present"]
    assert report["watermark"]["payload"] == signed.result["watermark"]["payload"]
    assert report["file"]["sha256"] == output.sha256 and report["detector"]["state"] == "disabled"
    assert outcome.result["summary"]["c2pa_state"] == "trusted"

    from media import transcode

    with runtime.store.local_copy(output.sha256, tmp_path) as path:
        transcode(path, tmp_path / "reencoded.mp4", crf=23, preset="ultrafast")  # strips the manifest
    rctx = _ctx(runtime, "job-verify-2", {"input": _stored(runtime, tmp_path / "reencoded.mp4")}, tmp_path / "s3")
    summary = verify_work(rctx).result["summary"]
    assert summary["recovered"] and summary["watermark_present"]


@pytest.mark.slow
def test_verify_report_carries_the_detector_and_a_verdict(tmp_path: Path) -> None:
    pytest.importorskip("detector")
    rt = Runtime(settings_of(make_instance(tmp_path, **{**FAST_JOBS, "verify_detector": True})))
    clip = make_test_clip(tmp_path / "clip.mp4", width=128, height=96, frames=8, pattern="noise")
    outcome = verify_work(_ctx(rt, "job-det", {"input": _stored(rt, clip)}, tmp_path / "s"))
    report = json.loads(rt.store.open(outcome.artifacts[0].sha256).read())
    assert {"detector", "artifacts", "verdict"} <= set(report) and report["verdict"]["label"]
    assert outcome.result["summary"]["verdict"] == report["verdict"]["label"]


@pytest.mark.parametrize(("given", "kept"), [("../../etc/passwd", "passwd"), ("..", "upload"), ("", "upload"),
                                             ("C:\\clips\\a b.mp4", "a b.mp4"), (".hidden.mp4", "hidden.mp4"),
                                             ("x\x00y;rm -rf.mp4", "x_y_rm -rf.mp4")])
def test_user_file_names_are_made_harmless(given: str, kept: str) -> None:
    from pipeline.work import safe_filename

    assert safe_filename(given) == kept


def test_bad_inputs_raise_typed_errors(runtime: Runtime, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    with pytest.raises(MediaError):
        verify_work(_ctx(runtime, "j1", {"input": _stored(runtime, text)}, tmp_path / "a"))
    with pytest.raises(JobInputError):
        verify_work(_ctx(runtime, "j2", {"input": {"sha256": "../etc"}}, tmp_path / "b"))
    with pytest.raises(JobInputError):
        sign_work(_ctx(runtime, "j3", {"input": _stored(runtime, text), "source": "stolen"}, tmp_path / "c"))
    with pytest.raises(BlobNotFoundError):
        verify_work(_ctx(runtime, "j4", {"input": {"sha256": "0" * 64}}, tmp_path / "d"))


def test_generate_workflow_with_a_generator_and_without(tmp_path: Path) -> None:
    inst = make_instance(tmp_path, generator_entrypoint="pipeline_helpers:slow_generate", **FAST_JOBS)
    rt = Runtime(settings_of(inst))
    rt.migrate()  # signing stores the manifest: its table comes from the migrations
    ctx = _ctx(rt, "gen-1", {"prompt": "a red kite", "steps": 3, "width": 96, "height": 64}, tmp_path / "g")
    import os

    os.environ["VF_FAKE_STEP_S"] = "0"
    try:
        outcome = generate_work(ctx)
    finally:
        del os.environ["VF_FAKE_STEP_S"]
    assert [a.role for a in outcome.artifacts] == ["output", "manifest"]
    gen = outcome.result["generation"]
    assert gen["model"] == "fake-generator" and gen["steps"] == 3 and isinstance(gen["seed"], int)
    sampling = [pct for stage, pct in ctx.seen if stage == "sampling"]
    assert len(sampling) == 3 and sampling == sorted(sampling)

    for entrypoint, needle in [("generator.nowhere:generate_to_file", "not available"),
                               ("pipeline_helpers:missing_checkpoint", "no usable checkpoint")]:
        inst2 = make_instance(tmp_path / entrypoint.replace(":", "_"), generator_entrypoint=entrypoint)
        with pytest.raises(ComponentUnavailableError, match=needle):
            generate_work(_ctx(Runtime(settings_of(inst2)), "gen-2", {"prompt": "x"}, tmp_path / "h"))


# --- one delivery, without Celery ---------------------------------------------------------------


def test_execute_stores_a_clear_error_for_bad_input_and_does_not_retry(runtime: Runtime, tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    pipeline = Pipeline(runtime.settings)
    job = pipeline.submit("verify", {}, input_file=bad, send=False)
    result = execute(runtime, job.id)
    view = pipeline.get(job.id)
    assert result.status == "failed" and view.state == "failed" and view.error_kind == "bad_input"
    assert view.error and "\n" not in view.error and view.attempts == 1
    assert execute(runtime, job.id).status == "done"  # a second delivery changes nothing


def test_execute_retries_transient_errors_then_gives_up(runtime: Runtime, tmp_path: Path) -> None:
    clip = make_test_clip(tmp_path / "c.mp4", width=96, height=64, frames=4)
    pipeline = Pipeline(runtime.settings)
    job = pipeline.submit("verify", {}, input_file=clip, send=False)
    real = runtime.store

    class Flaky:
        def __getattr__(self, name: str):
            return getattr(real, name)

        def put_bytes(self, data: bytes):
            raise TransientError("storage is briefly away")

    runtime._store = Flaky()  # type: ignore[assignment]
    try:
        first = execute(runtime, job.id, final_attempt=False)
        assert first.status == "retry" and isinstance(first.error, TransientError)
        view = pipeline.get(job.id)
        assert view.state == "queued" and view.stage.startswith("retrying")
        last = execute(runtime, job.id, final_attempt=True)
        view = pipeline.get(job.id)
        assert last.status == "failed" and view.error_kind == "transient" and "briefly away" in view.error
    finally:
        runtime._store = real


def test_pipeline_reads_reports_and_artifacts_of_its_owner_only(runtime: Runtime, tmp_path: Path) -> None:
    clip = make_test_clip(tmp_path / "c.mp4", width=96, height=64, frames=4)
    pipeline = Pipeline(runtime.settings)
    job = pipeline.submit("verify", {}, input_file=io.BytesIO(clip.read_bytes()), filename="../../c.mp4",
                          owner="key-1", send=False)
    assert job.params["filename"] == "c.mp4" and job.artifact("input").filename == "c.mp4"
    assert execute(runtime, job.id).status == "succeeded"
    report = pipeline.report(job.id, owner="key-1")
    assert report["file"]["width"] == 96
    from pipeline.errors import JobNotFoundError

    with pytest.raises(JobNotFoundError):
        pipeline.get(job.id, owner="key-2")
    item = pipeline.get(job.id).artifact("report")
    with pytest.raises(JobNotFoundError):
        pipeline.open_artifact(item.id, owner="key-2")
    view, stream = pipeline.open_artifact(item.id, owner="key-1")
    with stream:
        assert json.loads(stream.read()) == report
    assert [j.id for j in pipeline.list_jobs(owner="key-1")] == [job.id] and pipeline.list_jobs(owner="x") == []
    assert set(jobs.JobView.of(runtime.sessions().get(Job, job.id)).to_dict()) >= {"state", "stage", "percent"}
    assert JobState.SUCCEEDED == pipeline.get(job.id).state


def _start_and_send(inst: str, n: int) -> str:
    """In a fresh process: build the Celery app on the embedded broker and publish one message."""
    from pipeline.celery_app import create_celery, send_job

    app = create_celery(settings_of(Path(inst)))
    send_job(app, f"job-{n}", "sign")
    return "ok"


def test_processes_starting_together_on_a_fresh_embedded_broker_all_succeed(tmp_path: Path) -> None:
    # kombu creates the SQL transport's tables and queue rows lazily, guarded only within one
    # process: a worker and a client starting together once raced on the queue's unique name.
    import multiprocessing as mp

    inst = make_instance(tmp_path)
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        assert pool.starmap(_start_and_send, [(str(inst), n) for n in range(8)]) == ["ok"] * 8
    from sqlalchemy import create_engine, text

    engine = create_engine(broker_url(settings_of(inst)).split("+", 1)[1])
    with engine.connect() as conn:
        queues = sorted(conn.execute(text("SELECT name FROM kombu_queue")).scalars())
        sent = conn.execute(text("SELECT count(*) FROM kombu_message")).scalar_one()
    engine.dispose()
    assert queues == ["default", "generate"] and sent == 8
