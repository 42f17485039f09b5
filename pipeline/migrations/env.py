"""Alembic environment for the job tables (run through pipeline.db.upgrade or `manage.py db`).

The caller hands over an open connection in ``config.attributes["connection"]``; there is no
alembic.ini, so the database URL never has to be written to a file.
"""

from __future__ import annotations

from alembic import context

from pipeline.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through pipeline.db.upgrade() or `manage.py db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
