"""Bring the metadata database to the newest Alembic revision.

The API and every worker call :func:`upgrade_database` when they start, so two processes may
run it at the same moment. Alembic itself does not lock: two processes that both find an
empty database would both CREATE TABLE and one would fail. The upgrade therefore runs under
a lock — an exclusive ``flock`` on a file beside a SQLite database, a session-level advisory
lock on PostgreSQL — and the second process finds the database already at head.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from synthcohort.core.settings import get_settings
from synthcohort.store.db import engine_for

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit number, the same in every process: the key of the PostgreSQL advisory lock.
PG_LOCK_KEY = 0x5C0_4027


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config built in code (no alembic.ini), so it works from an installed package."""
    url = url or get_settings().sqlalchemy_url()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision id in ``store/migrations/versions``."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "store/migrations/versions holds no revision"
    return head


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine_for(url or get_settings().sqlalchemy_url()).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_database(url: str | None = None) -> None:
    """Alembic ``upgrade head`` on ``url`` (default the settings' database); idempotent and
    safe to call from several processes at once."""
    url = url or get_settings().sqlalchemy_url()
    engine = engine_for(url)
    with _migration_lock(url), engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
            conn.commit()  # the lock belongs to the session and outlives this transaction
            try:
                _upgrade(conn, url)
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                conn.commit()
        else:
            _upgrade(conn, url)


def _upgrade(conn: Connection, url: str) -> None:
    if MigrationContext.configure(conn).get_current_revision() == head_revision():
        conn.rollback()
        return
    conn.rollback()  # alembic opens and commits its own transaction
    cfg = alembic_config(url)
    cfg.attributes["connection"] = conn
    log.info("upgrading %s to %s", make_url(url).render_as_string(hide_password=True), head_revision())
    command.upgrade(cfg, "head")
    conn.commit()


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """Exclusive file lock beside a SQLite database file; nothing for other databases."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        yield
        return
    lock_path = Path(u.database).expanduser().resolve().with_name(Path(u.database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
