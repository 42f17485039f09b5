"""users' session version

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-16

``users.session_version`` is copied into a portal session when the user logs in and compared on
every request; changing or resetting the password raises it, so every other session of that user
ends. Existing rows start at 0, which is what sessions made before this revision stand for, so
nobody is logged out by the upgrade itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_version")
