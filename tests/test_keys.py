"""API keys: stored as sha256 only, shown once; ``synthcohort keys create`` prints just the key."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select


def _session():
    from synthcohort.store.db import session_factory
    from synthcohort.store.migrate import upgrade_database

    upgrade_database()
    return session_factory()()


def test_key_is_stored_hashed_and_authenticates_until_revoked() -> None:
    from synthcohort.api.keys import authenticate, create_api_key, revoke_api_key
    from synthcohort.store.db import ApiKey, Role

    with _session() as s:
        row, plain = create_api_key(s, "reviewer", "dr. who")
        stored = s.scalar(select(ApiKey).where(ApiKey.id == row.id))
        assert stored.key_hash == hashlib.sha256(plain.encode()).hexdigest()
        assert plain not in (stored.key_hash, stored.prefix, stored.name) and plain.startswith(stored.prefix)
        assert stored.role == Role.reviewer
        assert authenticate(s, plain).id == row.id
        assert authenticate(s, plain + "x") is None and authenticate(s, None) is None
        _, other = create_api_key(s, Role.requester, "x")
        assert other != plain
        revoke_api_key(s, row.id)
        assert authenticate(s, plain) is None


def test_bad_role_or_name_is_an_error_naming_the_field() -> None:
    from synthcohort.api.keys import create_api_key
    from synthcohort.core.errors import InvalidInputError

    with _session() as s:
        with pytest.raises(InvalidInputError) as e:
            create_api_key(s, "boss", "x")
        assert e.value.field == "role"
        with pytest.raises(InvalidInputError) as e:
            create_api_key(s, "admin", "  ")
        assert e.value.field == "name"


def test_cli_keys_create_prints_only_the_key(capsys) -> None:
    from synthcohort.api.keys import authenticate
    from synthcohort.cli import main
    from synthcohort.store.db import Role

    assert main(["keys", "create", "--role", "reviewer", "--name", "radiology-1"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    plain = out.strip()
    with _session() as s:
        key = authenticate(s, plain)
        assert key is not None and key.role == Role.reviewer and key.name == "radiology-1"
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "radiology-1" in listing and plain not in listing
    with pytest.raises(SystemExit) as e:
        main(["keys", "create", "--role", "boss"])
    assert e.value.code == 2
