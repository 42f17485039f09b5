"""Shared pieces of the web tests: an instance, a pipeline whose jobs run when the test says, keys,
portal users, clips.

Jobs run through the real runner (``pipeline.runner.execute``: claim, workflow, finish) in the
test's process instead of a Celery worker, so the web layer is tested against real jobs, real
storage and real reports without the seconds a worker takes to start. Webhooks likewise: the ids
of the ones due are recorded, and a test delivers them with ``pipeline.webhooks.deliver``.
"""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path
from typing import Any

from pipeline_helpers import FAST_JOBS, make_instance, settings_of

from pipeline.runner import execute
from pipeline.service import Pipeline


class InlinePipeline(Pipeline):
    """A Pipeline whose ``send`` records the job, and runs it at once when ``inline`` is set; due
    webhooks are recorded in ``webhooks`` (what the Celery task would be sent)."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.sent: list[str] = []
        self.webhooks: list[str] = []
        self.inline = False

    def send(self, job_id: str, kind: str) -> bool:
        self.sent.append(job_id)
        if self.inline:
            self.run(job_id)
        return True

    def run(self, job_id: str) -> str:
        """Run the job as a worker's task does: execute it, then announce its end."""
        status = execute(self.runtime, job_id).status
        self.announce(job_id)
        return status

    def send_webhook(self, delivery_id: str) -> None:
        self.webhooks.append(delivery_id)


@dataclasses.dataclass
class WebEnv:
    root: Path
    settings: Any
    pipeline: InlinePipeline
    clip: Path
    keys: dict[str, str] = dataclasses.field(default_factory=dict)
    webhook_secrets: dict[str, str] = dataclasses.field(default_factory=dict)
    accounts: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

    def app(self, **overrides: Any):
        from web import create_app

        settings = dataclasses.replace(self.settings, **overrides) if overrides else self.settings
        app = create_app({"TESTING": True, "VERIFRAME_SETTINGS": settings, "SECRET_KEY": "test-secret"},
                         pipeline=self.pipeline)
        return app

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def account(self, who: str) -> tuple[str, str]:
        """The email and password of portal user ``who`` (created on first use)."""
        if who not in self.accounts:
            from web.users import UserStore

            email, password = f"{who}@example.com", f"{who}-correct-horse"
            UserStore(self.pipeline.runtime.engine).create(email, password)
            self.accounts[who] = (email, password)
        return self.accounts[who]

    def upload(self, name: str = "clip.mp4", data: bytes | None = None) -> dict[str, Any]:
        return {"file": (io.BytesIO(self.clip.read_bytes() if data is None else data), name)}


def make_env(root: Path) -> WebEnv:
    from media.synthetic import make_test_clip
    from web.apikeys import KeyStore

    inst = make_instance(root, **{**FAST_JOBS, "generator_entrypoint": "pipeline_helpers:missing_checkpoint",
                                  "api_rate_burst": 10_000, "ip_rate_per_minute": 10_000,
                                  "webhook_allow_http_loopback": True, "webhook_retry_base_s": 0.05,
                                  "webhook_timeout_s": 5.0})
    settings = settings_of(inst)
    pipeline = InlinePipeline(settings)
    pipeline.migrate()
    clip = make_test_clip(root / "clip.mp4", width=160, height=96, frames=8, pattern="noise")
    env = WebEnv(root, settings, pipeline, clip)
    store = KeyStore(pipeline.runtime.engine)
    for who, scopes in [("alice", "verify,generate,sign"), ("bob", "verify,generate,sign"), ("viewer", "verify"),
                        ("lister", "verify")]:
        new = store.create(who, scopes, owner=who)
        env.keys[who], env.webhook_secrets[who] = new.key, new.webhook_secret
    return env


def token(client, page: str = "/verify") -> str:
    """The CSRF token of a portal page's forms (for this client's session)."""
    html = client.get(page).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def log_in(client, env: WebEnv, who: str = "alice") -> None:
    """Log ``client`` in as portal user ``who`` through the log-in form."""
    email, password = env.account(who)
    response = client.post("/login", data={"csrf_token": token(client, "/login"), "email": email,
                                           "password": password})
    assert response.status_code == 303
