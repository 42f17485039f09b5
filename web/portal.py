"""Server-rendered portal pages: verify, sign, generate, jobs.

Every page works without JavaScript (forms post, a running job's page refreshes itself);
``static/app.js`` adds drag and drop, upload progress and live job progress on top.
Who the visitor is (``web.identity``): a logged-in user, whose jobs are also those made with
their API keys, or, when ``web_public_verify`` is on, an anonymous visitor who may verify and
whose jobs belong to their session alone. Signing and generating need an account
(``web.account``).
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)

from pipeline.models import JobState
from pipeline.representation import clean_report, link_pictures

from . import web_state
from .api import generation_request, manifest_of
from .errors import Problem
from .identity import csrf_token, current_user, login_required, login_url, protect_forms, visitor_owner
from .report_view import present
from .uploads import received

bp = Blueprint("portal", __name__, static_folder="static", static_url_path="/static")

# Roles of the pictures a verification report names (provenance.keyframes): keyframes and heatmaps.
PICTURE_ROLE = re.compile(r"(?:keyframe|heatmap)-[0-9]{1,2}")


bp.before_request(protect_forms)


@bp.app_context_processor
def inject() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "current_user": current_user,
            "signup_open": web_state().settings.signup_open}


def _created(job_id: str) -> Response:
    """After a submission: JSON for the script, a 303 to the job page for a plain form."""
    target = url_for("portal.job", job_id=job_id)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(id=job_id, url=target, status_url=url_for("portal.job_status", job_id=job_id))
    return redirect(target, code=303)


# --- pages ------------------------------------------------------------------------------------------


@bp.get("/")
def index():
    return redirect(url_for("portal.verify_page"))


@bp.get("/verify")
def verify_page():
    if not web_state().settings.web_public_verify and current_user() is None:
        return redirect(login_url())
    return render_template("verify.html")


@bp.post("/verify")
def verify_submit():
    owner = visitor_owner()
    with received(request.files.get("file"), web_state().settings) as upload:
        view = web_state().pipeline.submit_verify(upload.path, filename=upload.filename, owner=owner)
    return _created(view.id)


@bp.get("/sign")
@login_required
def sign_page():
    return render_template("sign.html")


@bp.post("/sign")
def sign_submit():
    from pipeline.work import SOURCES

    owner = visitor_owner(creator=True)
    source = request.form.get("source", "capture")
    if source not in SOURCES:
        raise Problem(400, "choose how the clip was made")
    title = (request.form.get("title") or "").strip()[:200] or None
    author = (request.form.get("author") or "").strip()[:200] or None
    with received(request.files.get("file"), web_state().settings) as upload:
        view = web_state().pipeline.submit_sign(upload.path, filename=upload.filename, source=source, title=title,
                                                author=author, watermark=True, owner=owner)
    return _created(view.id)


@bp.get("/generate")
@login_required
def generate_page():
    return render_template("generate.html")


def _form_generation() -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": request.form.get("prompt", "")}
    for name, kind in (("width", int), ("height", int), ("seconds", float), ("steps", int), ("cfg", float),
                       ("seed", int)):
        raw = (request.form.get(name) or "").strip()
        if raw:
            try:
                body[name] = kind(raw)
            except ValueError:
                raise Problem(400, f"'{name}' must be a number") from None
    if request.form.get("negative", "").strip():
        body["negative"] = request.form["negative"].strip()
    body["include_prompt"] = request.form.get("include_prompt") == "on"
    return generation_request(body)


@bp.post("/generate")
def generate_submit():
    owner = visitor_owner(creator=True)
    params = _form_generation()
    prompt, include_prompt = params.pop("prompt"), params.pop("include_prompt", False)
    view = web_state().pipeline.submit_generate(prompt, owner=owner, include_prompt=include_prompt, **params)
    return _created(view.id)


@bp.get("/jobs")
def jobs():
    try:
        owner = visitor_owner()
    except Problem:
        return redirect(login_url())
    page = max(0, request.args.get("page", 0, type=int) or 0)
    views = web_state().pipeline.list_jobs(owner=owner, limit=26, offset=page * 25)
    return render_template("jobs.html", jobs=views[:25], page=page, more=len(views) > 25)


def _job(job_id: str):
    return web_state().pipeline.get(job_id, owner=visitor_owner())


def _report(view: Any) -> dict[str, Any]:
    """A succeeded verification's report as the portal shows and exports it: cleaned, its pictures
    linked to this portal's picture URLs."""
    report = clean_report(web_state().pipeline.report_of(view))
    return link_pictures(report, view, lambda item: url_for("portal.job_picture", job_id=view.id, role=item.role))


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    view = _job(job_id)
    report = None
    if view.kind == "verify" and view.state == JobState.SUCCEEDED:
        report = present(_report(view))
    return render_template("job.html", job=view, report=report)


@bp.get("/jobs/<job_id>/status.json")
def job_status(job_id: str):
    view = _job(job_id)
    return jsonify(id=view.id, state=view.state, stage=view.stage, percent=round(view.percent, 1), done=view.done,
                   error=view.error)


@bp.get("/jobs/<job_id>/report.json")
def job_report(job_id: str):
    view = _job(job_id)
    if view.kind != "verify" or view.state != JobState.SUCCEEDED:
        abort(404)
    data = json.dumps(_report(view), indent=2, sort_keys=True, default=str)
    return send_file(io.BytesIO(data.encode()), mimetype="application/json", as_attachment=True,
                     download_name=f"veriframe-report-{view.id[:8]}.json", max_age=0)


def _send_artifact(job_id: str, role: str, *, attachment: bool, media_types: tuple[str, ...] | None = None,
                   fallback_name: str):
    """The visitor's own job's artifact `role` (404 when missing or not one of `media_types`)."""
    view = _job(job_id)
    item = view.artifact(role)
    if item is None or (media_types is not None and item.media_type not in media_types):
        abort(404)
    _, stream = web_state().pipeline.open_artifact(item.id, owner=view.owner)
    return send_file(stream, mimetype=item.media_type, as_attachment=attachment,
                     download_name=item.filename or fallback_name, etag=item.sha256, max_age=0, conditional=True)


@bp.get("/jobs/<job_id>/file/<any(output, input):role>")
def job_file(job_id: str, role: str):
    return _send_artifact(job_id, role, attachment=request.args.get("inline") != "1", fallback_name=f"{role}.bin")


@bp.get("/jobs/<job_id>/picture/<role>")
def job_picture(job_id: str, role: str):
    """A keyframe or heatmap of a verification, shown inline on its report page."""
    if not PICTURE_ROLE.fullmatch(role):
        abort(404)
    return _send_artifact(job_id, role, attachment=False, media_types=("image/jpeg", "image/png"),
                          fallback_name=role)


@bp.get("/jobs/<job_id>/manifest.c2pa")
def job_manifest(job_id: str):
    data = manifest_of(_job(job_id))
    if data is None:
        abort(404)
    return send_file(io.BytesIO(data), mimetype="application/c2pa", as_attachment=True,
                     download_name=f"{job_id}.c2pa", max_age=0)


@bp.post("/jobs/<job_id>/cancel")
def job_cancel(job_id: str):
    web_state().pipeline.cancel(job_id, owner=visitor_owner())
    return redirect(url_for("portal.job", job_id=job_id), code=303)
