"""Commands of ``manage.py`` for the pipeline: ``worker``, ``jobs ...``, ``db ...``.

They are Click commands registered on manage.py's group, plus :func:`submit_and_follow`, the
helper that ``sign``/``verify``/``generate`` use for ``--async``/``--no-wait``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)


def _settings(ctx: click.Context):  # -> Settings
    from settings import init_instance, load_settings

    obj = ctx.find_root().ensure_object(dict)
    if "settings" not in obj:
        settings = load_settings(obj.get("instance"))
        init_instance(settings.instance)
        obj["settings"] = settings
    return obj["settings"]


def _pipeline(ctx: click.Context, *, migrate: bool = True):  # -> Pipeline
    from .service import Pipeline

    obj = ctx.find_root().ensure_object(dict)
    if "pipeline" not in obj:
        pipeline = Pipeline(_settings(ctx))
        if migrate:
            pipeline.migrate()
        obj["pipeline"] = pipeline
    return obj["pipeline"]


def _job_line(job: Any) -> str:
    when = job.created_at.strftime("%Y-%m-%d %H:%M:%S")
    tail = f"  {job.error}" if job.error else ""
    return f"{job.id}  {job.kind:<8} {job.state:<9} {job.percent:5.1f}%  {job.stage:<22} {when}{tail}"


def follow(pipeline: Any, job_id: str, *, timeout: float | None = None, quiet: bool = False) -> Any:
    """Wait for a job with a progress bar on stderr; returns the final JobView."""
    from tqdm import tqdm

    bar = None if quiet else tqdm(total=100, unit="%", file=sys.stderr, leave=False,
                                  bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}")

    def on_progress(view: Any) -> None:
        if bar is not None:
            bar.set_description_str(f"{view.kind} {view.state}: {view.stage}"[:48])
            bar.n = round(view.percent, 1)
            bar.refresh()

    try:
        return pipeline.wait(job_id, timeout=timeout, on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()


def submit_and_follow(
    ctx: click.Context,
    submit: Callable[[Any], Any],
    *,
    wait: bool,
    as_json: bool = False,
    download: Path | None = None,
    timeout: float | None = None,
) -> Any:
    """Submit through ``submit(pipeline)``; with ``wait``, follow to the end and report it.

    Without ``wait`` it prints the job id and returns. A failed or cancelled job raises a
    ClickException (exit 2) carrying the stored error; ``download`` saves the output artifact.
    """
    pipeline = _pipeline(ctx)
    job = submit(pipeline)
    if not wait:
        click.echo(json.dumps(job.to_dict(), indent=2) if as_json else job.id)
        return job
    job = follow(pipeline, job.id, timeout=timeout, quiet=as_json)
    if job.state != "succeeded":
        raise click.ClickException(f"job {job.id} {job.state}: {job.error or job.stage}")
    if download is not None:
        from storage import copy_blob

        item = job.artifact("output")
        if item is None:
            raise click.ClickException(f"job {job.id} has no output to download")
        copy_blob(pipeline.runtime.store, item.sha256, download)
    if as_json:
        body = job.to_dict()
        if job.kind == "verify":
            body["report"] = pipeline.report(job.id)
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(f"job {job.id} succeeded" + (f"; wrote {download}" if download else ""))
    return job


# --- worker -------------------------------------------------------------------------------------


@click.command("worker")
@click.option("-Q", "--queues", default="default,generate", show_default=True,
              help="Comma-separated queues to consume: default (verify, sign), generate.")
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=None,
              help="Processes (prefork pool); default from the worker_concurrency setting.")
@click.option("-P", "--pool", type=click.Choice(["prefork", "solo", "threads"]), default=None,
              help="Execution pool (default prefork: the only one that enforces time limits).")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.option("-n", "--hostname", default=None, help="Worker node name (default veriframe-<queues>@<host>).")
@click.option("--parent-pid", type=int, default=None, hidden=True)
@click.pass_context
def worker(ctx: click.Context, queues: str, concurrency: int | None, pool: str | None, loglevel: str,
           hostname: str | None, parent_pid: int | None) -> None:
    """Run a Celery worker on this machine (any number of machines may run them)."""
    from .celery_app import QUEUES
    from .worker import run_worker

    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if unknown or not names:
        raise click.BadParameter(f"unknown queue(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(QUEUES)}",
                                 param_hint="--queues")
    run_worker(_settings(ctx), queues=names, concurrency=concurrency, pool=pool, loglevel=loglevel,
               hostname=hostname, parent_pid=parent_pid)


class EmbeddedWorker:
    """The one worker process ``serve`` runs beside the web app, restarted if it dies.

    It consumes both queues with a one-process prefork pool; it also stops by itself when serve
    disappears without stopping it (see ``--parent-pid``).
    """

    def __init__(self, settings: Any) -> None:
        manage = Path(__file__).resolve().parents[1] / "manage.py"
        self.cmd = [sys.executable, str(manage), "--instance", str(settings.instance), "worker",
                    "--queues", "default,generate", "--pool", "prefork", "--parent-pid", str(os.getpid())]
        self.proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="embedded-worker", daemon=True)

    def start(self) -> EmbeddedWorker:
        self.proc = subprocess.Popen(self.cmd)
        self._supervisor.start()
        return self

    def _supervise(self) -> None:
        while not self._stopping.wait(1.0):
            if self.proc is not None and self.proc.poll() is not None and not self._stopping.is_set():
                log.warning("embedded worker exited with %s; restarting it", self.proc.returncode)
                self.proc = subprocess.Popen(self.cmd)

    def stop(self, timeout_s: float = 20.0) -> None:
        """Warm shutdown (SIGTERM: finish the running task), then a cold one if it takes too long.

        A job cut short is not lost: the worker re-sends it when it starts again.
        """
        self._stopping.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def serve_with_worker(settings: Any, run_web: Callable[[], None], *, worker: bool = True) -> None:
    """Migrate, start the embedded worker, run the web app until stopped, then stop the worker."""
    from .service import Pipeline

    Pipeline(settings).migrate()
    embedded = EmbeddedWorker(settings).start() if worker else None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops serve like Ctrl-C, so the worker is stopped too

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        run_web()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if embedded is not None:
            embedded.stop()


# --- db -----------------------------------------------------------------------------------------


@click.group("db")
def db_group() -> None:
    """The job database (SQLite by default, PostgreSQL via DATABASE_URL)."""


@db_group.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply the Alembic migrations up to the newest schema (idempotent)."""
    pipeline = _pipeline(ctx, migrate=False)
    revision = pipeline.migrate()
    click.echo(f"{pipeline.runtime.engine.url.render_as_string(hide_password=True)}: at revision {revision}")


@db_group.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the schema revision of the database and the newest one this code knows."""
    from .db import current_revision, head_revision

    pipeline = _pipeline(ctx, migrate=False)
    click.echo(f"current {current_revision(pipeline.runtime.engine) or 'none'}, head {head_revision()}")


# --- jobs ---------------------------------------------------------------------------------------


@click.group("jobs")
def jobs_group() -> None:
    """List, inspect, cancel and submit pipeline jobs."""


@jobs_group.command("list")
@click.option("--state", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]), default=None)
@click.option("--kind", type=click.Choice(["verify", "sign", "generate"]), default=None)
@click.option("--owner", default=None, help="Only this owner's jobs (an API key id).")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one array).")
@click.pass_context
def jobs_list(ctx: click.Context, state: str | None, kind: str | None, owner: str | None, limit: int,
              as_json: bool) -> None:
    """Jobs, newest first."""
    found = _pipeline(ctx).list_jobs(owner=owner, kind=kind, state=state, limit=limit)
    if as_json:
        click.echo(json.dumps([j.to_dict() for j in found], indent=2))
    else:
        for job in found:
            click.echo(_job_line(job))


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--report", is_flag=True, help="Include the stored verification report.")
@click.pass_context
def jobs_show(ctx: click.Context, job_id: str, report: bool) -> None:
    """One job as JSON: state, stage, percent, parameters, error, result and artifacts."""
    from .errors import JobNotFoundError

    pipeline = _pipeline(ctx)
    try:
        body = pipeline.get(job_id).to_dict()
        if report:
            body["report"] = pipeline.report(job_id)
    except JobNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(body, indent=2))


@jobs_group.command("cancel")
@click.argument("job_ids", nargs=-1, required=True)
@click.pass_context
def jobs_cancel(ctx: click.Context, job_ids: tuple[str, ...]) -> None:
    """Cancel queued or running jobs (a running job stops at its next progress step)."""
    from .errors import JobNotFoundError

    pipeline = _pipeline(ctx)
    for job_id in job_ids:
        try:
            job = pipeline.cancel(job_id)
        except JobNotFoundError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{job.id} {job.state}")


def _wait_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--timeout", type=float, default=None, help="Give up waiting after this many seconds.")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print the job (and report) as JSON.")(fn)
    fn = click.option("--no-wait", is_flag=True, help="Print the job id and return at once.")(fn)
    return click.option("--idempotency-key", default=None, help="Submitting twice with one key makes one job.")(fn)


@jobs_group.command("verify")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_wait_options
@click.pass_context
def jobs_verify(ctx: click.Context, src: Path, no_wait: bool, as_json: bool, timeout: float | None,
                idempotency_key: str | None) -> None:
    """Queue a verification of SRC (C2PA, watermark, detector) and follow it."""
    submit_and_follow(ctx, lambda p: p.submit_verify(src, idempotency_key=idempotency_key),
                      wait=not no_wait, as_json=as_json, timeout=timeout)


@jobs_group.command("sign")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--source", type=click.Choice(["capture", "edit", "generated"]), default="capture", show_default=True)
@click.option("--title", default=None)
@click.option("--author", default=None)
@click.option("--no-watermark", is_flag=True, help="Sign without embedding the watermark first.")
@_wait_options
@click.pass_context
def jobs_sign(ctx: click.Context, src: Path, dst: Path | None, source: str, title: str | None, author: str | None,
              no_watermark: bool, no_wait: bool, as_json: bool, timeout: float | None,
              idempotency_key: str | None) -> None:
    """Queue watermarking and signing of SRC; with DST, save the result there."""
    submit_and_follow(
        ctx,
        lambda p: p.submit_sign(src, source=source, title=title, author=author, watermark=not no_watermark,
                                idempotency_key=idempotency_key),
        wait=not no_wait, as_json=as_json, download=dst, timeout=timeout,
    )


def generation_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The sampling options shared by `generate` and `jobs generate` (None: the model's default)."""
    options = [
        click.option("--width", type=click.IntRange(16, 4096), default=None, help="Width (default: the model's)."),
        click.option("--height", type=click.IntRange(16, 4096), default=None, help="Height (default: the model's)."),
        click.option("--seconds", type=click.FloatRange(0.04, 600), default=None, help="Length in seconds."),
        click.option("--fps", type=click.FloatRange(1, 120), default=None, help="Frame rate."),
        click.option("--steps", type=click.IntRange(1, 1000), default=None, help="Sampling steps."),
        click.option("--cfg", type=float, default=None, help="Classifier-free guidance scale."),
        click.option("--seed", type=int, default=None, help="Seed (same seed, same machine: same video)."),
        click.option("--negative", default=None, help="Negative prompt."),
        click.option("--include-prompt", is_flag=True, help="Record the prompt text in the Content Credentials."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@jobs_group.command("generate")
@click.argument("prompt")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@generation_options
@_wait_options
@click.pass_context
def jobs_generate(ctx: click.Context, prompt: str, output: Path | None, include_prompt: bool, no_wait: bool,
                  as_json: bool, timeout: float | None, idempotency_key: str | None, **options: Any) -> None:
    """Queue a generation (-> watermark -> sign -> store) and follow it; -o saves the clip."""
    submit_and_follow(
        ctx,
        lambda p: p.submit_generate(prompt, include_prompt=include_prompt, idempotency_key=idempotency_key,
                                    **options),
        wait=not no_wait, as_json=as_json, download=output, timeout=timeout,
    )


@jobs_group.command("requeue")
@click.option("--queued-older-than", type=click.FloatRange(0), default=None, metavar="SECONDS",
              help="Also re-send queued jobs sent this long ago and not started (after a broker outage).")
@click.pass_context
def jobs_requeue(ctx: click.Context, queued_older_than: float | None) -> None:
    """Re-send jobs whose worker died or whose message never reached the broker."""
    from .celery_app import send_job
    from .jobs import reclaim_orphans

    pipeline = _pipeline(ctx)
    found = reclaim_orphans(pipeline.runtime.sessions, stale_after=pipeline.settings.job_stale_after_s,
                            resend_after=queued_older_than)
    for job_id, kind in found:
        send_job(pipeline.celery, job_id, kind)
        click.echo(f"{job_id} {kind} requeued")
    if not found:
        click.echo("no orphaned jobs")


COMMANDS = (worker, jobs_group, db_group)
