"""api keys, manifests and webhook deliveries

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

``web_api_keys`` and ``manifests`` used to be created at run time (``metadata.create_all``) by
the web app and the manifest store. This revision takes them over: on an instance that already
has them they are kept as they are (rows included) and only gain what is new, the keys'
``webhook_secret``; elsewhere they are created here. ``webhook_deliveries`` is new.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Migrations spell plain column types: they must not change when the models do.
UTC = sa.DateTime(timezone=True)


def _create_api_keys() -> None:
    op.create_table(
        "web_api_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.Column("webhook_secret", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_web_api_keys_key_hash")),
    )


def _create_manifests() -> None:
    # The shape provenance.manifest_store has always had (its create_all made it so far).
    op.create_table(
        "manifests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("payload_hex", sa.String(16), nullable=True),
        sa.Column("asset_sha256", sa.String(64), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manifests")),
        sa.UniqueConstraint("label", name=op.f("uq_manifests_label")),
    )
    op.create_index("ix_manifests_payload_hex", "manifests", ["payload_hex"])
    op.create_index("ix_manifests_asset_sha256", "manifests", ["asset_sha256"])


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "web_api_keys" not in tables:
        _create_api_keys()
    elif "webhook_secret" not in {c["name"] for c in inspector.get_columns("web_api_keys")}:
        op.add_column("web_api_keys", sa.Column("webhook_secret", sa.String(64), nullable=True))
    if "manifests" not in tables:
        _create_manifests()

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("event", sa.String(32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("delivered_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_webhook_deliveries_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("job_id", name=op.f("uq_webhook_deliveries_job_id")),
    )
    op.create_index("ix_webhook_deliveries_state_next_attempt_at", "webhook_deliveries", ["state", "next_attempt_at"])


def downgrade() -> None:
    # The two adopted tables stay: before this revision they belonged to create_all, which finds
    # them again. Only what this revision added goes.
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("web_api_keys") as batch:
        batch.drop_column("webhook_secret")
