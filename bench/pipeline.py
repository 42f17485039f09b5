"""Benchmark the job pipeline: verify throughput, queueing overhead, and a drain with none lost.

Every scenario uses a fresh instance, real worker processes (``manage.py worker``) and, for
Redis, a private ``redis-server`` on a free port (so no other worker on the machine can take the
messages). Measured:

- **throughput**: ``--jobs`` verify jobs of a ``--seconds`` s ``--height``p clip, submitted at
  once, with 1 and 2 worker processes, on Redis and on the embedded SQLite broker: jobs/s from
  the first claim to the last finish;
- **queueing overhead**: one job at a time on an idle worker, send to claim (``started_at -
  sent_at`` from the job table), median and p95;
- **drain**: ``--drain`` tiny verify jobs queued before the workers start; every one must finish
  exactly once (one claim, one report).

    nice -n 10 .venv/bin/python bench/pipeline.py --out docs/benchmarks/pipeline.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def make_instance(root: Path, **config: object):  # -> (Path, Pipeline)
    from pipeline.service import Pipeline
    from settings import init_instance, load_settings

    inst = root / "instance"
    inst.mkdir(parents=True)
    lines = [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
             for k, v in config.items()]
    (inst / "config.toml").write_text("\n".join(lines) + "\n")
    init_instance(inst)
    pipeline = Pipeline(load_settings(inst, env={}))
    pipeline.migrate()
    return inst, pipeline


def start_workers(inst: Path, processes: int) -> subprocess.Popen[bytes]:
    log = open(inst / "worker.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "--instance", str(inst), "worker", "--queues", "default",
         "--concurrency", str(processes), "--loglevel", "WARNING"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc


def stop_workers(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_all(pipeline, ids: list[str], timeout: float) -> None:  # noqa: ANN001
    from sqlalchemy import func, select

    from pipeline.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pipeline.runtime.sessions() as session:
            done = session.scalar(select(func.count()).select_from(Job).where(
                Job.id.in_(ids), Job.state.in_(["succeeded", "failed", "cancelled"])))
        if done == len(ids):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{len(ids) - done} of {len(ids)} jobs unfinished after {timeout} s")


def wait_ready(pipeline, inst: Path) -> None:  # noqa: ANN001
    """Warm the worker up with one job (imports, keyring, C2PA library) before measuring."""
    from media.synthetic import make_test_clip

    clip = make_test_clip(inst / "warm.mp4", width=64, height=48, frames=4)
    job = pipeline.submit_verify(clip)
    pipeline.wait(job.id, timeout=180, poll_s=0.1)


def throughput(tmp: Path, broker: str, processes: int, clip: Path, jobs: int) -> dict[str, float]:
    redis = Redis(tmp / "redis") if broker == "redis" else None
    config = {"verify_detector": False, "worker_concurrency": processes}
    if redis:
        config["broker_url"] = redis.url
    inst, pipeline = make_instance(tmp / f"{broker}-{processes}", **config)
    workers = start_workers(inst, processes)
    try:
        wait_ready(pipeline, inst)
        ids = [pipeline.submit_verify(clip).id for _ in range(jobs)]
        wait_all(pipeline, ids, timeout=60 * jobs)
        views = [pipeline.get(i) for i in ids]
    finally:
        stop_workers(workers)
        pipeline.runtime.close()
        if redis:
            redis.stop()
    failed = [v for v in views if v.state != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed: {failed[0].error}")
    first = min(v.started_at for v in views)
    last = max(v.finished_at for v in views)
    spans = [(v.finished_at - v.started_at).total_seconds() for v in views]
    return {"jobs_per_s": jobs / (last - first).total_seconds(), "job_s": statistics.median(spans)}


def queueing(tmp: Path, samples: int) -> dict[str, float]:
    from media.synthetic import make_test_clip

    redis = Redis(tmp / "redis-q")
    inst, pipeline = make_instance(tmp / "queueing", broker_url=redis.url, verify_detector=False)
    workers = start_workers(inst, 1)
    clip = make_test_clip(inst / "tiny.mp4", width=64, height=48, frames=4)
    try:
        wait_ready(pipeline, inst)
        delays, submits = [], []
        for _ in range(samples):
            t = time.perf_counter()
            job = pipeline.submit_verify(clip)
            submits.append(time.perf_counter() - t)
            view = pipeline.wait(job.id, timeout=60, poll_s=0.02)
            delays.append((view.started_at - view.sent_at).total_seconds())
    finally:
        stop_workers(workers)
        pipeline.runtime.close()
        redis.stop()
    delays.sort()
    return {"median_ms": 1000 * statistics.median(delays), "p95_ms": 1000 * delays[int(0.95 * (len(delays) - 1))],
            "submit_ms": 1000 * statistics.median(submits)}


def drain(tmp: Path, jobs: int, processes: int) -> dict[str, float]:
    from sqlalchemy import func, select

    from media.synthetic import make_test_clip
    from pipeline.models import Artifact, Job

    redis = Redis(tmp / "redis-d")
    inst, pipeline = make_instance(tmp / "drain", broker_url=redis.url, verify_detector=False)
    clip = make_test_clip(inst / "tiny.mp4", width=64, height=48, frames=4)
    t = time.perf_counter()
    ids = [pipeline.submit_verify(clip).id for _ in range(jobs)]
    enqueue_s = time.perf_counter() - t
    workers = start_workers(inst, processes)
    t = time.perf_counter()
    try:
        wait_all(pipeline, ids, timeout=10 * jobs)
        elapsed = time.perf_counter() - t
    finally:
        stop_workers(workers)
        redis.stop()
    with pipeline.runtime.sessions() as session:
        succeeded = session.scalar(select(func.count()).select_from(Job).where(Job.state == "succeeded"))
        twice = session.scalar(select(func.count()).select_from(Job).where(Job.attempts != 1))
        reports = session.scalar(select(func.count()).select_from(Artifact).where(Artifact.role == "report"))
    pipeline.runtime.close()
    return {"jobs": jobs, "succeeded": succeeded, "ran_twice": twice, "reports": reports,
            "enqueue_per_s": jobs / enqueue_s, "drain_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=12, help="verify jobs per throughput run")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--samples", type=int, default=30, help="queueing-overhead samples")
    parser.add_argument("--drain", type=int, default=1000, help="jobs in the drain test (0 to skip)")
    parser.add_argument("--brokers", default="redis,embedded")
    parser.add_argument("--out", type=Path, default=None, help="write a Markdown report here")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is needed")

    from media import probe
    from media.synthetic import make_test_clip

    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vf-bench-") as tmpdir:
        tmp = Path(tmpdir)
        width = round(args.height * 16 / 9 / 2) * 2
        clip = make_test_clip(tmp / "clip.mp4", width=width, height=args.height, frames=round(24 * args.seconds),
                              fps=24, pattern="moving")
        info = probe(clip)
        print(f"clip: {info.width}x{info.height}, {info.duration_s:.1f} s, {clip.stat().st_size / 1e6:.2f} MB",
              flush=True)
        rows = []
        for broker in args.brokers.split(","):
            for processes in (1, 2):
                r = throughput(tmp, broker, processes, clip, args.jobs)
                print(f"throughput {broker} x{processes}: {r}", flush=True)
                rows.append((broker, processes, r))
        q = queueing(tmp, args.samples)
        print(f"queueing (redis): {q}", flush=True)
        d = drain(tmp, args.drain, 2) if args.drain else None
        if d:
            print(f"drain: {d}", flush=True)

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    lines += [
        "# Pipeline benchmark",
        "",
        f"`bench/pipeline.py` on {os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, "
        f"{dt.date.today().isoformat()}. Real worker processes (`manage.py worker`, prefork), a private "
        "redis-server, SQLite job database; the detector is off (`verify_detector = false`) so the figures are "
        "the pipeline's and the provenance checks' own.",
        "",
        f"## Verify throughput ({info.width}x{info.height}, {info.duration_s:.0f} s clips, {args.jobs} jobs per run)",
        "",
        "| broker | worker processes | jobs/s | median job time (s) |",
        "|---|---|---|---|",
        *[f"| {b} | {p} | {r['jobs_per_s']:.2f} | {r['job_s']:.2f} |" for b, p, r in rows],
        "",
        "## Queueing overhead on Redis (idle worker, one job at a time)",
        "",
        f"send to claim: median {q['median_ms']:.1f} ms, p95 {q['p95_ms']:.1f} ms over {args.samples} jobs "
        f"(target: under 50 ms). Submitting (store the upload, insert the job, publish): "
        f"median {q['submit_ms']:.1f} ms.",
        "",
    ]
    if d:
        lines += [
            f"## Drain: {d['jobs']} tiny verify jobs queued, then 2 worker processes on Redis",
            "",
            f"{d['succeeded']} of {d['jobs']} succeeded, {d['ran_twice']} ran more than once, {d['reports']} reports; "
            f"enqueued at {d['enqueue_per_s']:.0f} jobs/s, drained in {d['drain_s']:.0f} s "
            f"({d['jobs'] / d['drain_s']:.1f} jobs/s).",
            "",
        ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
