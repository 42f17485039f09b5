"""Portal accounts: an email and a salted, slow password hash (werkzeug's scrypt), disable-able.

Only the hash is stored (``generate_password_hash``: scrypt with a random salt, its parameters
kept in the hash string so they can be raised later). Logging in costs one hash whether or not the
email exists, so the answer and its timing say nothing about which emails have accounts.
A user's jobs and API keys belong to the owner ``user:<id>`` (``User.owner``).

Changing a password (the user, knowing the current one, or an administrator) raises the user's
``session_version``; a portal session remembers the version it logged in with, so every other
session of that user ends at its next request (``web.identity.current_user``).

The table (``pipeline.models.User``) is created by migration 0003, like every other; 0004 adds
``session_version``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from pipeline.models import User as UserRow
from pipeline.models import new_id, utcnow

USER_OWNER_PREFIX = "user:"  # owner of a user's jobs and keys: "user:<id>"
PASSWORD_MIN = 8  # NIST SP 800-63B's floor for chosen passwords
PASSWORD_MAX = 1024  # long passphrases are welcome; unbounded input only costs hashing time
EMAIL_MAX = 254
# One "@", something on each side, a dot in the domain, no spaces: a typo check, not RFC 5322.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class AccountError(ValueError):
    """A sign-up or account change is not acceptable (bad email, short password, email taken)."""


@dataclasses.dataclass(frozen=True)
class User:
    """An account as the app sees it (never the password hash)."""

    id: str
    email: str
    created_at: dt.datetime
    disabled: bool
    session_version: int = 0  # raised by every password change (see the module's docstring)

    @classmethod
    def of(cls, row: UserRow) -> User:
        return cls(row.id, row.email, row.created_at, bool(row.disabled), row.session_version or 0)

    @property
    def owner(self) -> str:
        """The owner of this user's jobs and API keys."""
        return USER_OWNER_PREFIX + self.id

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "email": self.email, "created_at": self.created_at.isoformat(),
                "disabled": self.disabled}


def normalise_email(email: str) -> str:
    """The address as stored: trimmed and lower-case; AccountError when it is not an address."""
    cleaned = email.strip().lower()
    if len(cleaned) > EMAIL_MAX or not _EMAIL.fullmatch(cleaned):
        raise AccountError("enter a valid email address")
    return cleaned


def check_new_password(password: str) -> None:
    """AccountError unless ``password`` may be chosen (the rules of sign-up and of every change)."""
    if len(password) < PASSWORD_MIN:
        raise AccountError(f"choose a password of at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise AccountError(f"a password may have at most {PASSWORD_MAX} characters")


@functools.cache
def _decoy_hash() -> str:
    """A hash to check unknown emails against, so that they cost what a real account costs."""
    return generate_password_hash(new_id())


class UserStore:
    """Create, authenticate, find, list and disable users in the job database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def create(self, email: str, password: str) -> User:
        """A new, enabled account; AccountError for a bad email or password, or a taken email."""
        address = normalise_email(email)
        check_new_password(password)
        row = UserRow(id=new_id(), email=address, password_hash=generate_password_hash(password),
                      created_at=utcnow(), disabled=False)
        with self._session() as session:
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                raise AccountError("an account with that email already exists") from None
            return User.of(row)

    def authenticate(self, email: str, password: str) -> User | None:
        """The enabled user with this email and password, or None (the same for every failure)."""
        try:
            address = normalise_email(email)
        except AccountError:
            address = ""
        with self._session() as session:
            row = session.scalar(select(UserRow).where(UserRow.email == address)) if address else None
        if row is None:
            check_password_hash(_decoy_hash(), password)
            return None
        if not check_password_hash(row.password_hash, password) or row.disabled:
            return None
        return User.of(row)

    def get(self, user_id: str) -> User | None:
        with self._session() as session:
            row = session.get(UserRow, user_id)
            return User.of(row) if row is not None else None

    def list(self) -> list[User]:
        with self._session() as session:
            return [User.of(r) for r in session.scalars(select(UserRow).order_by(UserRow.created_at))]

    def set_disabled(self, email: str, disabled: bool = True) -> User:
        """Disable (or enable again) the account; LookupError when there is none with that email.

        A disabled user's sessions end at their next request; their API keys are left as they are
        (revoke them with ``manage.py apikeys revoke``)."""
        address = normalise_email(email)
        with self._session() as session:
            row = session.scalar(select(UserRow).where(UserRow.email == address))
            if row is None:
                raise LookupError(f"no user with email {email!r}")
            session.execute(update(UserRow).where(UserRow.id == row.id).values(disabled=disabled))
            session.commit()
            return User.of(session.get(UserRow, row.id, populate_existing=True))

    def change_password(self, user_id: str, current: str, new: str) -> User:
        """The user's own change: AccountError when ``current`` is not their password or ``new`` may
        not be chosen. Their other sessions end (the session version goes up)."""
        with self._session() as session:
            row = session.get(UserRow, user_id)
        if row is None or row.disabled or not check_password_hash(row.password_hash, current):
            raise AccountError("the current password is wrong")
        check_new_password(new)
        # Compare-and-set on the old hash: of two changes racing, only the first one counts.
        return self._store_password(user_id, new, expected_hash=row.password_hash)

    def set_password(self, email: str, new: str) -> User:
        """An administrator's reset: LookupError when there is no user with that email, AccountError
        when ``new`` may not be chosen. Every session of the user ends."""
        address = email.strip().lower()
        with self._session() as session:
            row = session.scalar(select(UserRow).where(UserRow.email == address))
        if row is None:
            raise LookupError(f"no user with email {email!r}")
        check_new_password(new)
        return self._store_password(row.id, new)

    def _store_password(self, user_id: str, new: str, *, expected_hash: str | None = None) -> User:
        query = update(UserRow).where(UserRow.id == user_id)
        if expected_hash is not None:
            query = query.where(UserRow.password_hash == expected_hash)
        with self._session() as session:
            changed = session.execute(query.values(password_hash=generate_password_hash(new),
                                                   session_version=UserRow.session_version + 1)).rowcount
            session.commit()
            if changed != 1:
                raise AccountError("the password was changed meanwhile: log in again")
            return User.of(session.get(UserRow, user_id, populate_existing=True))
