"""portal users, and when each API key was last used

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09

``users`` holds the portal's accounts: an email (stored lower-case, unique) and a werkzeug
password hash (scrypt), never the password. A user's jobs and API keys belong to the owner
``user:<id>``. ``web_api_keys.last_used_at`` lets a user see which keys are still in use.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Migrations spell plain column types: they must not change when the models do.
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    with op.batch_alter_table("web_api_keys") as batch:
        batch.add_column(sa.Column("last_used_at", UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_api_keys") as batch:
        batch.drop_column("last_used_at")
    op.drop_table("users")
