"""Who sees what. A requester sees only their own models, cohorts and jobs, and the dataset
versions they imported (a grant) or an admin shared; a reviewer also every cohort; an admin
everything. What a caller may not see is answered as not found (404), so ids of other people's
work and data do not leak."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select, exists, or_, select
from sqlalchemy.orm import Session

from synthcohort.core.errors import NotFoundError
from synthcohort.store.db import ApiKey, Cohort, DatasetGrant, DatasetRecord, Job, ModelRecordRow, Role

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


def _granted(key: ApiKey):
    return exists().where(DatasetGrant.dataset_id == DatasetRecord.id, DatasetGrant.key_id == key.id)


def _reviewed(dataset_id):
    return exists().where(Cohort.dataset_id == dataset_id)


def visible_datasets(query: Select, key: ApiKey) -> Select:
    """Restrict a select over datasets to the caller's: imported by them, or shared; a reviewer
    also sees (not uses) the dataset of any cohort, as every cohort is theirs to review."""
    if key.role == Role.admin:
        return query
    rules = [DatasetRecord.shared.is_(True), DatasetRecord.owner_id == key.id, _granted(key)]
    if key.role == Role.reviewer:
        rules.append(_reviewed(DatasetRecord.id))
    return query.where(or_(*rules))


def imported_by(session: Session, dataset_id: str, key: ApiKey) -> bool:
    """Whether ``key`` imported this dataset version (its first importer, the recorded owner, or
    a later one with a grant), so it may see its real images."""
    row = session.get(DatasetRecord, dataset_id)
    if row is not None and row.owner_id == key.id:
        return True
    return session.scalar(select(exists().where(DatasetGrant.dataset_id == dataset_id,
                                                DatasetGrant.key_id == key.id))) or False


def may_see_dataset(session: Session, row: DatasetRecord, key: ApiKey, *, use: bool = False) -> bool:
    """Whether ``key`` may see the dataset (``use``: train or sample on it, which a reviewer's
    view of a cohort's dataset does not grant)."""
    if key.role == Role.admin or row.shared or imported_by(session, row.id, key):
        return True
    return not use and key.role == Role.reviewer and bool(session.scalar(select(_reviewed(row.id))))
