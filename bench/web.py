"""Benchmark the web tier: requests/s and latency of the JSON API under 50 concurrent clients.

The app is served as in production (docs/deploy.md): ``gunicorn 'web:create_app()'``, here with
two worker processes (``--workers``) on loopback, against a fresh instance per stack:

- **production**: a throw-away PostgreSQL database on the local server and a private
  ``redis-server`` (the broker, and so also the shared rate-limit buckets);
- **embedded**: the single-machine default, SQLite for the jobs and as the Celery broker.

Scenarios, each with ``--clients`` closed-loop clients (no think time) for ``--seconds`` s after a
``--warmup`` s warm-up that is not counted:

- **get**: ``GET /api/v1/verifications/{id}`` of a finished verify job (a signed clip, verified
  in-process through the real job runner before the server starts, so its report is complete);
- **post**: ``POST /api/v1/verifications`` of a ~``--clip-mb`` MB MP4 (multipart). Only the
  accept path is measured: the job is stored and queued, no worker runs. Every upload carries a
  few unique trailing bytes (an MP4 ``free`` box), so each one is a new artifact.

An error is any non-2xx answer or a connection error. The load comes from locust (headless,
``FastHttpUser``, used as a library) in a child process, on the same 2 cores as the server.

    nice -n 10 .venv/bin/python bench/web.py --out docs/benchmarks/web.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("VERIFRAME_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# High enough that no bucket ever empties during a run: the limiter still runs on every request
# (a Redis script call on the production stack), as it does in production.
NO_RATE_LIMITS = {"api_rate_per_minute": 100_000_000, "api_rate_burst": 10_000_000,
                  "ip_rate_per_minute": 100_000_000}
OWNER = "bench"
SERVICE_ENV = ("VERIFRAME_INSTANCE", "DATABASE_URL", "CELERY_BROKER_URL", "VERIFRAME_DATABASE_URL",
               "VERIFRAME_BROKER_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- services --------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A private redis-server (append-only, fsync every second as docs/deploy.md advises)."""
    port = free_port()
    directory.mkdir(parents=True)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--appendfsync", "everysec", "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), 10, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"vf_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql+psycopg", "postgresql") + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_instance(root: Path, **config: object) -> Path:
    from settings import init_instance

    inst = root / "instance"
    inst.mkdir(parents=True)
    lines = [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
             for k, v in config.items()]
    (inst / "config.toml").write_text("\n".join(lines) + "\n")
    init_instance(inst)
    return inst


def create_api_key(inst: Path, owner: str) -> str:
    """Apply the migrations and make a verify-scoped key as an operator would (``manage.py db
    upgrade``, ``manage.py apikeys create``); the key is the first line the latter prints."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    out = subprocess.run([sys.executable, str(ROOT / "manage.py"), "--instance", str(inst), "db", "upgrade"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"manage.py db upgrade failed:\n{out.stderr[-2000:]}")
    out = subprocess.run([sys.executable, str(ROOT / "manage.py"), "--instance", str(inst), "apikeys", "create",
                          "--name", "bench", "--scopes", "verify", "--owner", owner],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"manage.py apikeys create failed:\n{out.stderr[-2000:]}")
    return out.stdout.splitlines()[0].strip()


def finished_verification(inst: Path, tmp: Path, owner: str) -> tuple[str, int]:
    """Sign a small clip, then verify the signed copy, both through the real job runner in this
    process; returns the verify job's id and the size of its report."""
    from media.synthetic import make_test_clip
    from pipeline.runner import execute
    from pipeline.service import Pipeline
    from settings import load_settings

    class InlinePipeline(Pipeline):
        def send(self, job_id: str, kind: str) -> bool:
            execute(self.runtime, job_id)
            return True

    pipeline = InlinePipeline(load_settings(inst, env={}))
    try:
        clip = make_test_clip(tmp / "to-sign.mp4", width=320, height=180, frames=48, pattern="moving")
        signed = pipeline.submit_sign(clip, filename="to-sign.mp4", source="capture", author="bench", owner=owner)
        if signed.state != "succeeded":
            raise RuntimeError(f"signing job {signed.id} {signed.state}: {signed.error}")
        _, stream = pipeline.open_artifact(signed.artifact("output").id)
        with stream:
            view = pipeline.submit_verify(stream, filename="signed.mp4", owner=owner)
        if view.state != "succeeded":
            raise RuntimeError(f"verify job {view.id} {view.state}: {view.error}")
        report = pipeline.report(view.id)
        if (report.get("c2pa") or {}).get("state") not in ("valid", "trusted"):
            raise RuntimeError(f"the signed clip did not verify: {report.get('c2pa')}")
        return view.id, len(json.dumps(report))
    finally:
        pipeline.runtime.close()


def count_verify_jobs(inst: Path) -> dict[str, int]:
    from sqlalchemy import func, select

    from pipeline.models import Job
    from pipeline.service import Pipeline
    from settings import load_settings

    pipeline = Pipeline(load_settings(inst, env={}))
    try:
        with pipeline.runtime.sessions() as session:
            rows = session.execute(select(Job.state, func.count()).where(Job.kind == "verify").group_by(Job.state))
            counts = {str(state): n for state, n in rows}
            counts["sent"] = session.scalar(select(func.count()).select_from(Job).where(
                Job.kind == "verify", Job.state == "queued", Job.sent_at.is_not(None)))
        return counts
    finally:
        pipeline.runtime.close()


def make_clip(path: Path, megabytes: float) -> Path:
    """A noise MP4 of about ``megabytes`` MB (noise barely compresses, so size follows frames)."""
    from media.synthetic import make_test_clip

    frames = 12
    while make_test_clip(path, width=320, height=180, frames=frames, pattern="noise").stat().st_size < megabytes * 1e6:
        frames += max(1, round(frames * (megabytes * 1e6 / path.stat().st_size - 1)))
    return path


# --- the server ------------------------------------------------------------------------------------


class Gunicorn:
    """``gunicorn 'web:create_app()'`` on loopback in its own process group."""

    def __init__(self, inst: Path, workers: int) -> None:
        self.port = free_port()
        self.log = inst / "gunicorn.log"
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
        env["VERIFRAME_INSTANCE"] = str(inst)
        self.cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}",
                    "--error-logfile", str(self.log), "web:create_app()"]
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        import urllib.request

        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            booted = self.log.exists() and self.log.read_text().count("Booting worker") >= self.workers
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=2) as resp:
                    return booted and resp.status == 200
            except OSError:
                return False

        wait_until(healthy, 60, "gunicorn")

    def pids(self) -> list[int]:
        import psutil

        master = psutil.Process(self.proc.pid)
        return [master.pid, *(c.pid for c in master.children(recursive=True))]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# --- the load: locust in a child process (gevent must not patch this one) -----------------------------


def multipart(clip: bytes, boundary: str) -> tuple[bytes, bytes]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    return head + clip, f"\r\n--{boundary}--\r\n".encode()


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (every core, all processes)."""
    import psutil

    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def run_client(spec_path: Path) -> None:
    """Run one scenario with locust and print its figures as JSON (the child process's job)."""
    import gevent
    import psutil
    from locust import FastHttpUser, constant, task
    from locust.env import Environment

    spec = json.loads(spec_path.read_text())
    auth = {"Authorization": f"Bearer {spec['key']}"}
    window = {"open": False}
    times: list[float] = []
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}
    totals = {"ok": 0, "all": 0}

    if spec["scenario"] == "get":
        path = f"/api/v1/verifications/{spec['job']}"

        class Client(FastHttpUser):
            wait_time = constant(0)

            @task
            def get(self) -> None:
                self.client.get(path, headers=auth, name="get")
    else:
        boundary = uuid.uuid4().hex
        before, after = multipart(Path(spec["clip"]).read_bytes(), boundary)
        headers = {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}

        class Client(FastHttpUser):
            wait_time = constant(0)

            @task
            def post(self) -> None:
                unique = struct.pack(">I4s", 24, b"free") + os.urandom(16)  # a valid, ignored MP4 box
                self.client.post("/api/v1/verifications", data=before + unique + after, headers=headers, name="post")

    Client.network_timeout = Client.connection_timeout = 120.0

    def on_request(response_time: float, response: Any, exception: BaseException | None, **_: Any) -> None:
        status = getattr(response, "status_code", 0) or 0
        ok = exception is None and 200 <= status < 300
        totals["all"] += 1
        totals["ok"] += ok
        if not window["open"]:
            return
        times.append(response_time)
        if not ok:
            kind = f"HTTP {status}" if status else type(exception).__name__
            errors[kind] = errors.get(kind, 0) + 1
            if kind not in samples:
                body = getattr(response, "text", None) if status else repr(exception)
                samples[kind] = (body or "")[:300]

    env = Environment(user_classes=[Client], host=spec["host"])
    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    server = [psutil.Process(pid) for pid in spec["server_pids"]]
    runner.start(spec["clients"], spawn_rate=spec["clients"])
    gevent.sleep(spec["warmup"])
    cpu0 = sum(sum(p.cpu_times()[:2]) for p in server)
    own0, busy0, t0 = sum(os.times()[:2]), busy_cpu_s(), time.perf_counter()
    window["open"] = True
    gevent.sleep(spec["seconds"])
    window["open"] = False
    elapsed = time.perf_counter() - t0
    cpu1 = sum(sum(p.cpu_times()[:2]) for p in server)
    own1, busy1 = sum(os.times()[:2]), busy_cpu_s()
    running = runner.user_count
    runner.quit()
    times.sort()

    def pct(q: float) -> float:
        return times[min(len(times) - 1, round(q * (len(times) - 1)))] if times else float("nan")

    print(json.dumps({
        "requests": len(times), "elapsed_s": elapsed, "rps": len(times) / elapsed, "p50_ms": pct(0.50),
        "p99_ms": pct(0.99), "max_ms": times[-1] if times else float("nan"),
        "mean_ms": statistics.fmean(times) if times else float("nan"), "errors": sum(errors.values()),
        "error_kinds": errors, "error_samples": samples, "clients_running": running,
        "server_cpu_s": cpu1 - cpu0, "client_cpu_s": own1 - own0,
        "other_cpu_s": (busy1 - busy0) - (cpu1 - cpu0) - (own1 - own0), "load_avg": os.getloadavg()[0],
        "accepted_total": totals["ok"], "sent_total": totals["all"],
    }))


def load(scenario: str, server: Gunicorn, args: argparse.Namespace, tmp: Path, **spec: Any) -> dict[str, Any]:
    spec_path = tmp / f"{scenario}.json"
    spec_path.write_text(json.dumps({"scenario": scenario, "host": server.url, "clients": args.clients,
                                     "seconds": args.seconds, "warmup": args.warmup, "server_pids": server.pids(),
                                     **spec}))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--client", str(spec_path)],
                         capture_output=True, text=True, timeout=args.warmup + args.seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"load client failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- one stack ---------------------------------------------------------------------------------------


def run_stack(stack: str, args: argparse.Namespace, tmp: Path, clip: Path) -> dict[str, Any]:
    tmp = tmp / stack
    with contextlib.ExitStack() as stack_services:
        config: dict[str, object] = {**NO_RATE_LIMITS, "verify_detector": False}
        if stack == "production":
            config["broker_url"] = stack_services.enter_context(redis_server(tmp / "redis"))
            config["database_url"] = stack_services.enter_context(postgres_database())
        inst = make_instance(tmp, **config)
        key = create_api_key(inst, OWNER)
        job_id, report_bytes = finished_verification(inst, tmp, OWNER)
        server = Gunicorn(inst, args.workers)
        try:
            server.wait_ready()
            results = {"get": load("get", server, args, tmp, key=key, job=job_id)}
            print(f"{stack} get: {results['get']}", flush=True)
            results["post"] = load("post", server, args, tmp, key=key, clip=str(clip))
            print(f"{stack} post: {results['post']}", flush=True)
        finally:
            server.stop()
        results["jobs"] = count_verify_jobs(inst)
        results["report_bytes"] = report_bytes
        results["server_errors"] = [ln for ln in server.log.read_text(errors="replace").splitlines()
                                    if "[ERROR]" in ln or "[CRITICAL]" in ln or "Traceback" in ln][:20]
        print(f"{stack} jobs: {results['jobs']}, gunicorn log errors: {results['server_errors']}", flush=True)
    return results


# --- the report ------------------------------------------------------------------------------------------


STACKS = {
    "production": "PostgreSQL (local server, fresh database) + private redis-server",
    "embedded": "SQLite jobs + SQLite broker (the single-machine default)",
}
SCENARIOS = {"get": "GET /api/v1/verifications/{id}", "post": "POST /api/v1/verifications"}


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], clip_bytes: int, command: str) -> str:
    from importlib.metadata import version

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    rows, cpu_rows = [], []
    for stack, res in results.items():
        for name, label in SCENARIOS.items():
            r = res[name]
            detail = f"`{label}`" + (f" ({clip_bytes / 1e6:.1f} MB)" if name == "post" else "")
            errors = str(r["errors"]) + (f" ({', '.join(f'{k}: {v}' for k, v in r['error_kinds'].items())})"
                                         if r["errors"] else "")
            rows.append(f"| {stack} | {detail} | {args.clients} | {r['requests']} | {r['rps']:.1f} | "
                        f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {errors} |")
            cpu_rows.append(f"| {stack} | {name} | {1000 * r['server_cpu_s'] / max(r['requests'], 1):.1f} | "
                            f"{100 * r['server_cpu_s'] / r['elapsed_s']:.0f}% | "
                            f"{100 * r['client_cpu_s'] / r['elapsed_s']:.0f}% | "
                            f"{100 * r['other_cpu_s'] / r['elapsed_s']:.0f}% | {r['load_avg']:.1f} |")
    lines = [
        "# Web benchmark",
        "",
        f"`bench/web.py` on {os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, "
        f"{dt.date.today().isoformat()}, commit {commit}{' with uncommitted changes' if dirty else ''}. "
        f"`gunicorn 'web:create_app()'` (gunicorn {version('gunicorn')}, "
        f"{args.workers} sync workers, Flask {version('flask')}) on loopback; load from locust {version('locust')} "
        f"(headless, `FastHttpUser` used as a library, one process) with {args.clients} closed-loop clients, "
        f"{args.seconds:g} s per scenario after a {args.warmup:g} s warm-up that is not counted. "
        "Rate limits configured far above the load (the limiter still runs on every request). "
        "An error is any non-2xx answer or connection error.",
        "",
        *[f"- **{s}**: {STACKS[s]}" for s in results],
        "",
        "| stack | scenario | clients | requests | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Where the time went (CPU over the measured window; 100% is one core of the 2):",
        "",
        "| stack | scenario | gunicorn CPU ms per request | gunicorn CPU | load generator CPU | rest of the machine "
        "| load average (1 min) |",
        "|---|---|---|---|---|---|---|",
        *cpu_rows,
        "",
    ]
    for stack, res in results.items():
        jobs = res["jobs"]
        post = res["post"]
        lines.append(f"- {stack}: the finished verify job's report is {res['report_bytes']} bytes of JSON; "
                     f"{post['accepted_total']} uploads were accepted over warm-up and window, and the job table "
                     f"holds {jobs.get('queued', 0)} queued verify jobs ({jobs['sent']} of them published to the "
                     f"broker) beside the one finished job; gunicorn logged "
                     f"{len(res['server_errors'])} errors.")
        for name in SCENARIOS:
            r = res[name]
            if r["clients_running"] != args.clients:
                lines.append(f"  - {name}: only {r['clients_running']} of {args.clients} clients were running.")
            for kind, sample in r["error_samples"].items():
                lines.append(f"  - {name}, first {kind}: `{sample.strip()[:200]}`")
    lines += ["", f"Reproduce: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per scenario")
    parser.add_argument("--warmup", type=float, default=5.0, help="uncounted load before each measurement")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--clip-mb", type=float, default=2.0, help="size of the uploaded clip")
    parser.add_argument("--stacks", default="production,embedded", help=f"comma-separated: {', '.join(STACKS)}")
    parser.add_argument("--out", type=Path, default=None, help="write a Markdown report here")
    parser.add_argument("--client", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client is not None:
        run_client(args.client)
        return
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    if unknown := set(stacks) - set(STACKS):
        parser.error(f"unknown stacks: {', '.join(sorted(unknown))}")
    if "production" in stacks and (shutil.which("redis-server") is None or not port_open(5432)):
        sys.exit("the production stack needs redis-server and PostgreSQL on 127.0.0.1:5432 (or --stacks embedded)")

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vf-bench-web-") as tmpdir:
        tmp = Path(tmpdir)
        clip = make_clip(tmp / "upload.mp4", args.clip_mb)
        clip_bytes = clip.stat().st_size
        print(f"upload: {clip_bytes / 1e6:.2f} MB", flush=True)
        for stack in stacks:
            results[stack] = run_stack(stack, args, tmp, clip)
    niceness = os.nice(0)
    command = (f"nice -n {niceness} " if niceness else "") + " ".join([".venv/bin/python bench/web.py", *sys.argv[1:]])
    text = report(args, results, clip_bytes, command)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
