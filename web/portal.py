"""Server-rendered portal pages."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("portal", __name__)


@bp.get("/")
def index():
    return render_template("index.html")
