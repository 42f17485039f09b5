"""Shared pieces of the pipeline tests: instances, real services, worker processes, a fake generator.

Real services only: a private redis-server per test (so restarting it disturbs nobody), a
throw-away PostgreSQL database on the machine's server, real worker processes started through
``manage.py worker``. Each is skipped with a reason when the service is not there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PG_ADMIN_URL = os.environ.get("VERIFRAME_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RABBIT_URL = os.environ.get("VERIFRAME_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")

# Short timings so crash recovery is observable within a test; production defaults are longer.
# The detector (torch, ~10 s to import per process) is switched off where it is not the subject.
FAST_JOBS = {"job_heartbeat_s": 0.3, "job_stale_after_s": 3.0, "job_max_retries": 2, "verify_detector": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def make_instance(root: Path, **config: Any) -> Path:
    """An instance directory with ``config`` in its config.toml (and keys, signing identity)."""
    from settings import init_instance

    inst = root / "instance"
    inst.mkdir(parents=True, exist_ok=True)
    lines = []
    for key, value in config.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value!r}")
    (inst / "config.toml").write_text("\n".join(lines) + "\n")
    init_instance(inst)
    return inst


def settings_of(inst: Path):  # -> Settings
    from settings import load_settings

    return load_settings(inst, env={})


def upgrade_instance(settings: Any) -> str | None:
    """Bring an instance's database to the newest schema, as ``serve``, workers and ``db upgrade`` do."""
    from pipeline.db import create_db_engine, upgrade

    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        return upgrade(engine)
    finally:
        engine.dispose()


# --- PostgreSQL ---------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local server, dropped afterwards; yields its URL."""
    pytest.importorskip("psycopg")
    from sqlalchemy import create_engine, text

    if not port_open(5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"vf_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql+psycopg", "postgresql") + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- Redis --------------------------------------------------------------------------------------


class RedisServer:
    """A private redis-server with an append-only file, so a restart keeps queued messages."""

    def __init__(self, directory: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 10, "redis-server to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes the append-only file and exits
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


# --- worker processes ---------------------------------------------------------------------------


class WorkerProcess:
    """``manage.py worker`` in its own process group, so SIGKILL takes the whole worker down."""

    def __init__(self, inst: Path, *, queues: str = "default,generate", pool: str | None = None,
                 concurrency: int = 1, log: Path | None = None) -> None:
        self.cmd = [sys.executable, str(ROOT / "manage.py"), "--instance", str(inst), "worker",
                    "--queues", queues, "--concurrency", str(concurrency), "--loglevel", "INFO"]
        if pool:
            self.cmd += ["--pool", pool]
        self.log = log or inst / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
        for key in ("VERIFRAME_INSTANCE", "DATABASE_URL", "CELERY_BROKER_URL", "VERIFRAME_BROKER_URL",
                    "VERIFRAME_DATABASE_URL"):
            env.pop(key, None)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["nice", "-n", "10", *self.cmd], stdout=out, stderr=subprocess.STDOUT,
                                         env=env, cwd=str(ROOT), start_new_session=True)
        return self

    def ready(self) -> bool:
        return self.log.exists() and " ready." in self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> WorkerProcess:
        wait_for(lambda: self.ready() or (self.proc and self.proc.poll() is not None), timeout, "worker to start")
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL the worker and every process it started."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# --- a stand-in generator -----------------------------------------------------------------------


def slow_generate(prompt: str, out_path: Path, *, width: int = 96, height: int = 64, steps: int = 8,
                  seed: int | None = None, progress: Callable[[int, int], None] | None = None,
                  **_: Any) -> dict[str, Any]:
    """A generator with the real one's contract: one progress call per 'sampling step'.

    Steps take ``VF_FAKE_STEP_S`` seconds (default 0.25); every call is logged to ``VF_FAKE_LOG``
    so tests can count how often a job's generation ran.
    """
    from media.synthetic import make_test_clip

    if os.environ.get("VF_FAKE_LOG"):
        with open(os.environ["VF_FAKE_LOG"], "a") as fh:
            fh.write(f"{os.getpid()} {prompt}\n")
    step_s = float(os.environ.get("VF_FAKE_STEP_S", "0.25"))
    for step in range(1, steps + 1):
        time.sleep(step_s)
        if progress is not None:
            progress(step, steps)
    make_test_clip(out_path, width=width, height=height, frames=8, pattern="noise")
    return {"model": "fake-generator", "checkpoint_sha256": "0" * 64}


def stuck_generate(prompt: str, out_path: Path, **_: Any) -> None:
    """A generation stuck in one long call: it never reports progress, so only the pool can stop it."""
    time.sleep(float(os.environ.get("VF_FAKE_STUCK_S", "120")))
    raise AssertionError("a stuck generation was not stopped by its time limit")


def missing_checkpoint(prompt: str, out_path: Path, **_: Any) -> None:
    """A generator installed without a trained checkpoint."""
    from generator.errors import NoCheckpointError

    raise NoCheckpointError("no trained generator checkpoint in checkpoints/ (train one first)")


def no_weights(prompt: str, out_path: Path, **_: Any) -> None:
    """A generator whose weights file is missing (cheap: does not import torch)."""
    raise FileNotFoundError("checkpoints/generator/model.safetensors")
