"""API keys. The plain key is shown once, when it is made; the database keeps its sha256 only,
so a stolen database does not hand out working keys."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from synthcohort.core.errors import InvalidInputError, NotFoundError
from synthcohort.store.db import ApiKey, Role

KEY_PREFIX = "sck_"  # makes a leaked key easy to recognise (secret scanners, logs)


def hash_key(plain: str) -> str:
    """sha256 hex of the plain key: what ``api_keys.key_hash`` holds."""
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def parse_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise InvalidInputError(f"unknown role {role!r}; one of {known}", field="role") from None


def create_api_key(session: Session, role: Role | str, name: str) -> tuple[ApiKey, str]:
    """Make and commit a key; returns the row and the plain key (never stored, shown once)."""
    role = parse_role(role)
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InvalidInputError("a key needs a name of 1 to 200 characters", field="name")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, role=role, key_hash=hash_key(plain), prefix=plain[:12])
    session.add(row)
    session.commit()
    return row, plain


def authenticate(session: Session, plain: str | None) -> ApiKey | None:
    """The live (not revoked) key whose hash matches, else None."""
    if not plain:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plain)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def revoke_api_key(session: Session, key_id: int) -> ApiKey:
    """Mark a key revoked (kept, so reviews and jobs still name who did them)."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFoundError(f"no API key with id {key_id}", field="id")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(timezone.utc)
        session.commit()
    return row


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def key_view(key: ApiKey) -> dict[str, object]:
    """What a caller may learn about their own key: never the key, its hash or its prefix."""
    return {"id": key.id, "name": key.name, "role": key.role.value}
