"""Per-process handles on the pipeline's services: database engine, sessions, artifact store.

Built lazily from :class:`settings.Settings` and rebuilt after a fork (a prefork worker child
must not share its parent's database connections).
"""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from settings import Settings
from storage import ArtifactStore, open_store

from . import db


class Runtime:
    """The settings plus the services they describe, created on first use in each process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid = -1
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._store: ArtifactStore | None = None

    def __repr__(self) -> str:
        return f"Runtime(instance={str(self.settings.instance)!r})"

    @property
    def database_url(self) -> str:
        return self.settings.sqlalchemy_url

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    if self._engine is not None:
                        self._engine.dispose(close=False)  # the parent's connections stay the parent's
                    self._engine = self._sessions = self._store = None
                    self._pid = os.getpid()

    @property
    def engine(self) -> Engine:
        self._check_process()
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = db.create_db_engine(self.database_url)
        return self._engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        engine = self.engine
        with self._lock:
            if self._sessions is None:
                self._sessions = db.session_factory(engine)
            return self._sessions

    @property
    def store(self) -> ArtifactStore:
        self._check_process()
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.settings)
        return self._store

    def migrate(self) -> str | None:
        """Bring the job tables to the newest schema (idempotent, safe from several processes)."""
        return db.upgrade(self.engine)

    def close(self) -> None:
        if self._engine is not None and self._pid == os.getpid():
            self._engine.dispose()
        self._engine = self._sessions = self._store = None
        self._pid = -1
