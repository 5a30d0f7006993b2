"""Who sees what. A requester sees only their own models, cohorts and jobs; a reviewer also
every cohort; an admin everything. What a caller may not see is answered as not found (404),
so ids of other people's work do not leak."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from synthcohort.core.errors import NotFoundError
from synthcohort.store.db import ApiKey, Cohort, Job, ModelRecordRow, Role

Owned = TypeVar("Owned", Cohort, Job, ModelRecordRow)

_NAMES = {Cohort: "cohort", Job: "job", ModelRecordRow: "model"}


def sees_all(key: ApiKey, model: type) -> bool:
    return key.role == Role.admin or (key.role == Role.reviewer and model is Cohort)


def visible(query: Select, model: type[Owned], key: ApiKey) -> Select:
    """Restrict a select over ``model`` to what ``key`` may see."""
    return query if sees_all(key, model) else query.where(model.owner_id == key.id)


def get_visible(session: Session, model: type[Owned], ident: str, key: ApiKey, *, field: str = "id") -> Owned:
    """The row, or 404 when it does not exist or the caller may not see it."""
    row = session.get(model, ident)
    if row is None or not (sees_all(key, model) or row.owner_id == key.id):
        raise NotFoundError(f"no {_NAMES[model]} {ident!r}", field=field)
    return row
