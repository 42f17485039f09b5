"""Database engines, sessions and migrations for the instance's tables (jobs, artifacts, API keys, users,
signed manifests, webhook deliveries: every table is created by a migration, none at run time).

SQLite (``<instance>/veriframe.db``) unless ``database_url`` (or ``DATABASE_URL``) names another
database; PostgreSQL URLs are driven by psycopg 3. The schema is applied by Alembic, either on
startup (``serve``, ``worker``) or by ``manage.py db upgrade``; concurrent upgrades from several
processes are serialised by a lock (an advisory lock on PostgreSQL, a file lock on SQLite).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant: the key of the PostgreSQL advisory lock held while migrating.
_PG_MIGRATION_LOCK = 0x76657269  # "veri"
SQLITE_BUSY_TIMEOUT_S = 30
# The newest migration in pipeline/migrations/versions (a test keeps the two in step).
SCHEMA_REVISION = "0004"


def create_db_engine(url: str) -> Engine:
    """An engine tuned for many short transactions from web processes and workers."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API objects
            # WAL lets the web process read while a worker writes; foreign keys are off by default.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        lock_path = Path(f"{engine.url.database}.migrate.lock")
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        yield


def _alembic_config():  # -> alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _stored_revision(engine: Engine) -> str | None:
    """The revision in alembic_version, read without importing Alembic (slow to import)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply migrations up to ``revision``; a no-op when already there. Returns the new revision."""
    if revision == "head" and _stored_revision(engine) == SCHEMA_REVISION:
        return SCHEMA_REVISION  # the common case at every start: no Alembic import, no lock
    from alembic import command

    with _migration_lock(engine):
        if revision == "head" and current_revision(engine) == head_revision():
            return head_revision()
        cfg = _alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
        now = current_revision(engine)
        log.info("database %s at revision %s", engine.url.render_as_string(hide_password=True), now)
        return now
