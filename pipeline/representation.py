"""A job as the JSON API shows it, built in one place for ``GET /<kind>/{id}`` and for webhooks.

The web app answers with it and the worker sends it in a webhook, so it is built here, without
Flask: the links are paths under :data:`API_ROOT` (where ``web.create_app`` mounts the API).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from storage import ArtifactStore

from .jobs import ArtifactView, JobView
from .models import JobState

API_ROOT = "/api/v1"
KIND_COLLECTION = {"verify": "verifications", "sign": "signatures", "generate": "generations"}


def clean_report(report: dict[str, Any]) -> dict[str, Any]:
    """The stored report without server-side details (the worker's scratch path)."""
    report = dict(report)
    if isinstance(report.get("c2pa"), dict):
        report["c2pa"] = {k: v for k, v in report["c2pa"].items() if k != "path"}
    return report


def link_pictures(report: dict[str, Any], view: JobView, href: Callable[[ArtifactView], str]) -> dict[str, Any]:
    """The report with the pictures its ``keyframes`` items name (``image``, ``heatmap``) resolved to
    the job's artifacts, as ``image_artifact`` / ``heatmap_artifact`` ({id, href}; None when the job
    has no such artifact). ``href`` says where an artifact is downloaded (the API or the portal)."""
    section = report.get("keyframes")
    if not isinstance(section, dict) or not isinstance(section.get("items"), list):
        return report
    by_role = {a.role: a for a in view.artifacts}

    def link(name: Any) -> dict[str, str] | None:
        item = by_role.get(name) if isinstance(name, str) else None
        return {"id": item.id, "href": href(item)} if item is not None else None

    items = [{**item, "image_artifact": link(item.get("image")), "heatmap_artifact": link(item.get("heatmap"))}
             for item in section["items"] if isinstance(item, dict)]
    return {**report, "keyframes": {**section, "items": items}}


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
        body["report"] = link_pictures(clean_report(report), view, lambda item: f"{root}/artifacts/{item.id}")
    return body
