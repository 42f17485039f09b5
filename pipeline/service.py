"""The pipeline as the web app and the CLI use it: submit jobs, read them, cancel them.

    pipeline = Pipeline(settings)               # or Pipeline().init_app(flask_app)
    job = pipeline.submit_verify(path, owner=key_id)
    job = pipeline.wait(job.id, on_progress=...)
    report = pipeline.report(job.id)

Inputs are stored in artifact storage before the job row is written, and the task is sent only
after the row is committed, so a worker on any machine finds everything it needs. A job whose
send failed stays ``queued`` and is sent again by the workers' orphan sweep. A submission may
ask for a webhook (``webhook=Subscription(url, key_id)``), recorded with the job and sent when
it ends (pipeline.webhooks).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

from settings import Settings, load_settings

from . import credentials, jobs, webhooks
from .errors import JobInputError, JobNotFoundError
from .models import Artifact, JobKind
from .representation import read_report
from .runtime import Runtime
from .work import GENERATE_PARAMS, SOURCES, safe_filename

log = logging.getLogger(__name__)

EXTENSION_KEY = "veriframe.pipeline"


class Pipeline:
    """Submit and follow jobs. One per process; cheap to create, connects on first use."""

    def __init__(self, settings: Settings | None = None, *, celery: Any = None) -> None:
        self._settings = settings
        self._runtime: Runtime | None = None
        self._celery = celery

    # -- wiring ----------------------------------------------------------------------------------

    def init_app(self, app: Any) -> Pipeline:
        """Attach to a Flask app (settings from ``app.config["VERIFRAME_SETTINGS"]``)."""
        if self._settings is None:
            self._settings = app.config.get("VERIFRAME_SETTINGS")
        app.extensions[EXTENSION_KEY] = self
        return self

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            if self._celery is not None and getattr(self._celery, "veriframe_runtime", None) is not None:
                self._runtime = self._celery.veriframe_runtime
            else:
                self._runtime = Runtime(self.settings)
        return self._runtime

    @property
    def celery(self) -> Any:
        if self._celery is None:
            from .celery_app import create_celery

            self._celery = create_celery(self.settings)
            self._celery.veriframe_runtime = self.runtime
        return self._celery

    def migrate(self) -> str | None:
        return self.runtime.migrate()

    # -- submission ------------------------------------------------------------------------------

    def _store_input(self, src: Path | str | IO[bytes]) -> jobs.NewArtifact:
        store = self.runtime.store
        if isinstance(src, str | os.PathLike):
            path = Path(src)
            if not path.is_file():
                raise JobInputError(f"{path}: no such file")
            ref = store.put_file(path)
        else:
            with tempfile.NamedTemporaryFile(prefix="veriframe-upload-", suffix=".part") as tmp:
                shutil.copyfileobj(src, tmp, 1024 * 1024)
                tmp.flush()
                ref = store.put_file(Path(tmp.name))
        if ref.size == 0:
            raise JobInputError("the uploaded file is empty")
        return jobs.NewArtifact("input", ref.sha256, ref.size, "application/octet-stream", "")

    def submit(
        self,
        kind: JobKind | str,
        params: dict[str, Any],
        *,
        owner: str = "",
        idempotency_key: str | None = None,
        input_file: Path | str | BinaryIO | None = None,
        filename: str = "",
        send: bool = True,
        webhook: webhooks.Subscription | None = None,
    ) -> jobs.JobView:
        """Create a job (or return the one this ``idempotency_key`` already made) and enqueue it.

        ``webhook``: POST the job to this URL when it ends (recorded in the job's transaction)."""
        kind = JobKind(kind)
        params = dict(params)
        inputs: list[jobs.NewArtifact] = []
        if input_file is not None:
            item = self._store_input(input_file)
            name = safe_filename(filename or str(getattr(input_file, "name", "") or ""))
            item = jobs.NewArtifact(item.role, item.sha256, item.size, item.media_type, name)
            inputs.append(item)
            params["input"] = {"sha256": item.sha256, "size": item.size}
            params.setdefault("filename", name)
        json.dumps(params)  # parameters must be JSON: fail here, not in the worker
        with self.runtime.sessions() as session:
            job, created = jobs.create_job(session, kind, params, owner=owner, idempotency_key=idempotency_key,
                                           inputs=inputs)
            if created and webhook is not None:
                webhooks.subscribe(session, job.id, webhook)
            session.commit()
            job_id = job.id
        if created and send:
            self.send(job_id, kind.value)
        return self.get(job_id)

    def send(self, job_id: str, kind: str) -> bool:
        """Publish the job's task; False when the broker is unreachable.

        The job is committed already, so it is not lost: it stays queued with no ``sent_at`` and
        the workers' orphan sweep sends it once the broker is back.
        """
        from .celery_app import send_job

        try:
            send_job(self.celery, job_id, kind)
        except Exception as exc:  # kombu raises many types for an unreachable broker
            log.warning("job %s: broker unreachable, the orphan sweep will send it: %s", job_id, exc)
            return False
        with self.runtime.sessions() as session:
            jobs.mark_sent(session, job_id)
            session.commit()
        return True

    def announce(self, job_id: str) -> list[str]:
        """Send the webhook of a job that has ended, if it asked for one (never raises)."""
        return webhooks.announce(self.runtime.sessions, job_id, self.send_webhook)

    def send_webhook(self, delivery_id: str) -> None:
        """Publish one attempt at a due webhook (the workers' sweep re-sends it if this fails)."""
        from .celery_app import send_webhook

        send_webhook(self.celery, delivery_id)

    def submit_verify(self, src: Path | str | BinaryIO, *, filename: str = "", owner: str = "",
                      idempotency_key: str | None = None,
                      webhook: webhooks.Subscription | None = None) -> jobs.JobView:
        return self.submit(JobKind.VERIFY, {}, owner=owner, idempotency_key=idempotency_key, input_file=src,
                           filename=filename, webhook=webhook)

    def submit_sign(
        self, src: Path | str | BinaryIO, *, filename: str = "", source: str = "capture", title: str | None = None,
        author: str | None = None, watermark: bool = True, owner: str = "", idempotency_key: str | None = None,
        webhook: webhooks.Subscription | None = None,
    ) -> jobs.JobView:
        if source not in SOURCES:
            raise JobInputError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        params: dict[str, Any] = {"source": source, "watermark": watermark}
        params.update({k: v for k, v in (("title", title), ("author", author)) if v})
        return self.submit(JobKind.SIGN, params, owner=owner, idempotency_key=idempotency_key, input_file=src,
                           filename=filename, webhook=webhook)

    def submit_generate(self, prompt: str, *, owner: str = "", idempotency_key: str | None = None,
                        include_prompt: bool = False, title: str | None = None,
                        webhook: webhooks.Subscription | None = None, **options: Any) -> jobs.JobView:
        """Options: width, height, seconds, fps, steps, cfg, seed, negative, config, checkpoint."""
        if not prompt or not prompt.strip():
            raise JobInputError("the prompt is empty")
        unknown = set(options) - set(GENERATE_PARAMS)
        if unknown:
            raise JobInputError(f"unknown generation options: {', '.join(sorted(unknown))}")
        params: dict[str, Any] = {"prompt": prompt, "include_prompt": include_prompt}
        params.update({k: v for k, v in options.items() if v is not None})
        if title:
            params["title"] = title
        return self.submit(JobKind.GENERATE, params, owner=owner, idempotency_key=idempotency_key, webhook=webhook)

    # -- reading ---------------------------------------------------------------------------------

    def get(self, job_id: str, *, owner: str | None = None) -> jobs.JobView:
        """The job; JobNotFoundError if it does not exist or ``owner`` is not its owner."""
        with self.runtime.sessions() as session:
            return jobs.get_job(session, job_id, owner=owner)

    def list_jobs(self, *, owner: str | None = None, kind: str | None = None, state: str | None = None,
             limit: int = 50, offset: int = 0) -> list[jobs.JobView]:
        with self.runtime.sessions() as session:
            return jobs.list_jobs(session, owner=owner, kind=kind, state=state, limit=limit, offset=offset)

    def transfer_jobs(self, from_owner: str, to_owner: str) -> int:
        """Give all of ``from_owner``'s jobs and their artifacts to ``to_owner``, atomically (for a
        portal visitor who logs in: their anonymous jobs become their account's)."""
        with self.runtime.sessions() as session:
            moved = jobs.transfer_jobs(session, from_owner, to_owner)
            session.commit()
        if moved:
            log.info("%d job(s) of %s now belong to %s", moved, from_owner, to_owner)
        return moved

    def cancel(self, job_id: str, *, owner: str | None = None) -> jobs.JobView:
        with self.runtime.sessions() as session:
            view = jobs.cancel_job(session, job_id, owner=owner)
        if view.done:
            self.announce(job_id)
        return view

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_s: float = 0.25,
        on_progress: Callable[[jobs.JobView], None] | None = None,
    ) -> jobs.JobView:
        """Poll until the job ends (TimeoutError after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            view = self.get(job_id)
            if on_progress is not None:
                on_progress(view)
            if view.done:
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {view.state} after {timeout:g} s")
            time.sleep(poll_s)

    def artifact(self, artifact_id: str, *, owner: str | None = None) -> jobs.ArtifactView:
        with self.runtime.sessions() as session:
            row = session.get(Artifact, artifact_id)
            if row is None or (owner is not None and row.owner != owner):
                raise JobNotFoundError(f"no artifact {artifact_id}")
            return jobs.ArtifactView.of(row)

    def open_artifact(self, artifact_id: str, *, owner: str | None = None) -> tuple[jobs.ArtifactView, BinaryIO]:
        """The artifact and a stream of its bytes (close it)."""
        view = self.artifact(artifact_id, owner=owner)
        return view, self.runtime.store.open(view.sha256)

    def report(self, job_id: str, *, owner: str | None = None) -> dict[str, Any]:
        """The stored JSON report of a succeeded verify job."""
        return self.report_of(self.get(job_id, owner=owner))

    def report_of(self, view: jobs.JobView) -> dict[str, Any]:
        """The stored JSON report of a job already read (saves loading the job row again)."""
        report = read_report(self.runtime.store, view)
        if report is None:
            raise JobNotFoundError(f"job {view.id} has no report ({view.state})")
        return report

    def manifest_bytes(self, *, payload: str | None = None, asset_sha256: str | None = None) -> bytes | None:
        """A manifest store veriframe signed, by watermark payload or by signed file hash."""
        return credentials.find_manifest(self.settings, payload=payload, asset_sha256=asset_sha256)
