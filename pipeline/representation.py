"""A job as the JSON API shows it, built in one place for ``GET /<kind>/{id}`` and for webhooks.

The web app answers with it and the worker sends it in a webhook, so it is built here, without
Flask: the links are paths under :data:`API_ROOT` (where ``web.create_app`` mounts the API).
"""

from __future__ import annotations

import json
from typing import Any

from storage import ArtifactStore

from .jobs import JobView
from .models import JobState

API_ROOT = "/api/v1"
KIND_COLLECTION = {"verify": "verifications", "sign": "signatures", "generate": "generations"}


def clean_report(report: dict[str, Any]) -> dict[str, Any]:
    """The stored report without server-side details (the worker's scratch path)."""
    report = dict(report)
    if isinstance(report.get("c2pa"), dict):
        report["c2pa"] = {k: v for k, v in report["c2pa"].items() if k != "path"}
    return report


def read_report(store: ArtifactStore, view: JobView) -> dict[str, Any] | None:
    """The stored JSON report of a job (verify jobs that succeeded have one), or None."""
    item = view.artifact("report")
    if item is None:
        return None
    with store.open(item.sha256) as fh:
        return json.loads(fh.read())


def job_url(view: JobView, root: str = API_ROOT) -> str:
    return f"{root}/{KIND_COLLECTION[view.kind]}/{view.id}"


def job_document(view: JobView, report: dict[str, Any] | None = None, *, root: str = API_ROOT) -> dict[str, Any]:
    """The job's JSON representation; ``report`` (a succeeded verify job's) is added cleaned."""
    body = view.to_dict()
    body.pop("owner", None)
    for item in body["artifacts"]:
        item.pop("owner", None)
        item["href"] = f"{root}/artifacts/{item['id']}"
    links = {"self": job_url(view, root), "cancel": f"{root}/jobs/{view.id}"}
    if view.kind in ("sign", "generate") and view.artifact("manifest") or view.kind == "verify" and view.done:
        links["manifest"] = f"{root}/manifests/{view.id}"
    output = view.artifact("output")
    if output is not None:
        links["download"] = f"{root}/artifacts/{output.id}"
    body["links"] = links
    if report is not None and view.kind == "verify" and view.state == JobState.SUCCEEDED:
        body["report"] = clean_report(report)
    return body
