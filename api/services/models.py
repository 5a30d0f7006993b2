"""Models: training jobs (a ``models`` row + a ``train`` job, committed together) and views
with the training curve."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from synthcohort.api.deps import PageParams
from synthcohort.api.schemas import ModelCreate
from synthcohort.api.services.access import get_visible, visible
from synthcohort.api.services.datasets import check_class, dataset_for
from synthcohort.api.services.jobs import (
    ensure_dispatched,
    find_replay,
    new_id,
    request_hash,
    submit,
)
from synthcohort.api.services.pagination import paginate
from synthcohort.core import layout
from synthcohort.core.errors import InvalidInputError
from synthcohort.generators.registry import get_generator
from synthcohort.store.db import ApiKey, Job, JobKind, JobStatus, ModelRecordRow


def check_generator(name: str) -> None:
    """422 naming ``generator`` unless a family of that name is registered."""

    get_generator(name)


def create_model(session: Session, key: ApiKey, body: ModelCreate, idem: str) -> tuple[ModelRecordRow, Job, bool]:
    """Validate against the dataset (class, masks) and the registry, then commit model + job."""
    req_hash = request_hash("train", body.model_dump(mode="json"))
    replay = find_replay(session, key, idem, req_hash)
    if replay is not None:
        ensure_dispatched(session, replay)
        return session.get(ModelRecordRow, replay.target_id), replay, True
    dataset = dataset_for(session, body.dataset_id, key)
    check_class(dataset, body.class_name)
    check_generator(body.generator)
    if body.mask and not (dataset.meta or {}).get("has_masks"):
        raise InvalidInputError(f"dataset {dataset.id} has no masks to condition on", field="mask")
    # the one definition of a model id; imported here because the API process never loads torch
    from synthcohort.generators.training import new_model_id

    model_id, job_id = new_model_id(), new_id("job")
    job = Job(id=job_id, kind=JobKind.train, status=JobStatus.queued, owner_id=key.id, idempotency_key=idem,
              request_hash=req_hash, request={**body.model_dump(mode="json"), "model_id": model_id},
              target_id=model_id)
    model = ModelRecordRow(
        id=model_id, dataset_id=dataset.id, class_name=body.class_name, generator=body.generator,
        steps=body.steps, seed=body.seed, mask_conditioned=body.mask, config=body.config,
        status=JobStatus.queued, job_id=job_id, owner_id=key.id,
    )
    job, replayed = submit(session, job, [model])
    if replayed:
        return session.get(ModelRecordRow, job.target_id), job, True
    return model, job, False


def history(model_id: str) -> list[Any] | dict[str, Any] | None:
    """The training curve: ``history.json`` beside the checkpoint (the full list of logged
    points) when the generators write one, else the summary in ``model.json`` (first and last
    points); None before training has written either. The checkpoint itself (which holds the
    full curve) is not unpickled in the API process."""
    folder = layout.model_dir(model_id)
    for name, pick in (("history.json", lambda d: d),
                       (layout.MODEL_RECORD, lambda d: d.get("history") if isinstance(d, dict) else None)):
        path = folder / name
        if path.is_file():
            try:
                found = pick(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
            if found is not None:
                return found
    return None


def model_view(row: ModelRecordRow, *, with_history: bool = False) -> dict[str, Any]:
    view = {
        "id": row.id, "dataset_id": row.dataset_id, "class_name": row.class_name, "generator": row.generator,
        "steps": row.steps, "seed": row.seed, "mask": row.mask_conditioned, "config": row.config or {},
        "status": row.status.value, "checkpoint_sha256": row.checkpoint_sha256, "job_id": row.job_id,
        "created_at": row.created_at,
    }
    if with_history:
        view["history"] = history(row.id)
        view["code_version"] = code_version_of(row.id)
    return view


def code_version_of(model_id: str) -> dict[str, Any] | str | None:
    """The code that trained the model, from its ``model.json`` (None before training starts)."""
    path = layout.model_dir(model_id) / layout.MODEL_RECORD
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("code_version")
    except (OSError, ValueError, AttributeError):
        return None


def list_models(session: Session, key: ApiKey, page: PageParams) -> dict[str, Any]:
    query = visible(select(ModelRecordRow), ModelRecordRow, key).order_by(
        ModelRecordRow.created_at.desc(), ModelRecordRow.id)
    return paginate(session, query, page, model_view)


def get_model(session: Session, key: ApiKey, model_id: str) -> dict[str, Any]:
    return model_view(get_visible(session, ModelRecordRow, model_id, key, field="model_id"), with_history=True)
