"""Alembic migrations: the first revision creates exactly the tables of ``store/db.py``
(autogenerate finds no difference) on SQLite and PostgreSQL; ``upgrade_database`` is
idempotent and safe when several processes start at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables at all (PostgreSQL: this session's database, emptied)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    from synthcohort.store.db import engine_for

    url = request.getfixturevalue("postgres_url")
    with engine_for(url).begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    return url


def test_migrations_create_exactly_the_models_tables(empty_db: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from synthcohort.store.db import Base, engine_for
    from synthcohort.store.migrate import (
        current_revision,
        head_revision,
        upgrade_database,
    )

    assert current_revision(empty_db) is None
    upgrade_database(empty_db)
    assert current_revision(empty_db) == head_revision()
    engine = engine_for(empty_db)
    assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    upgrade_database(empty_db)  # idempotent: at head, nothing to do, no error
    assert current_revision(empty_db) == head_revision()


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    from alembic import command

    from synthcohort.store.db import engine_for
    from synthcohort.store.migrate import alembic_config, upgrade_database

    url = f"sqlite:///{tmp_path / 'down.db'}"
    upgrade_database(url)
    command.downgrade(alembic_config(url), "base")
    assert set(inspect(engine_for(url)).get_table_names()) == {"alembic_version"}
    upgrade_database(url)
    assert "cohorts" in inspect(engine_for(url)).get_table_names()


BARRIER = """
import sys, time
from pathlib import Path
from synthcohort.store.migrate import current_revision, upgrade_database
url, barrier, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
(barrier / f"ready-{sys.argv[4]}").touch()
deadline = time.monotonic() + 120
while len(list(barrier.glob("ready-*"))) < n and time.monotonic() < deadline:
    time.sleep(0.005)
upgrade_database(url)
print(current_revision(url))
"""


def test_concurrent_upgrades_from_several_processes(empty_db: str, tmp_path: Path) -> None:
    """Like an API and two workers starting together on an empty database: the processes
    import first, meet at a barrier, then all upgrade at the same instant (without the
    migration lock one of them fails with "table already exists")."""
    from synthcohort.store.migrate import head_revision

    n = 3
    procs = [subprocess.Popen([sys.executable, "-c", BARRIER, empty_db, str(tmp_path), str(n), str(i)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == head_revision()
