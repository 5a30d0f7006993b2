"""Models: training jobs (a ``models`` row + a ``train`` job, committed together) and views
with the training curve."""

from __future__ import annotations

import json
from pathlib import Path
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
from synthcohort.core.settings import get_settings
from synthcohort.generators.configs import estimate_training_bytes, parse_config
from synthcohort.generators.presets import resolve_preset
from synthcohort.generators.registry import get_generator
from synthcohort.store.db import ApiKey, DatasetRecord, Job, JobKind, JobStatus, ModelRecordRow


def check_generator(name: str) -> None:
    """422 naming ``generator`` unless a family of that name is registered."""

    get_generator(name)


def check_training_config(dataset: DatasetRecord, class_name: str, generator: str, config: dict[str, Any],
                          preset: str) -> None:
    """The config the worker would build (the preset merged under the request's fields), checked
    now: 422 naming ``config.<field>`` for a bad field, or ``config`` when the estimated memory of a
    training step exceeds ``SYNTHCOHORT_WORKER_MEMORY_BYTES``. Torch-free (generators.configs)."""
    meta = dataset.meta or {}
    image_size = [int(v) for v in meta.get("image_size") or ()]
    train_counts = (meta.get("counts") or dataset.counts or {}).get("train", {})
    _name, preset_fields = resolve_preset(
        preset, generator, class_train_images=int(train_counts.get(class_name, 0)),
        spatial_dims=int(meta.get("spatial_dims") or dataset.spatial_dims or 2),
        image_size=image_size or [0], user_config=config)
    cfg = parse_config(generator, {**preset_fields, **config})
    if not image_size:
        return
    need = estimate_training_bytes(generator, cfg, channels=int(meta.get("channels") or 1), image_size=image_size)
    limit = get_settings().worker_memory_bytes
    if need > limit:
        raise InvalidInputError(
            f"training {generator} at batch_size {cfg.batch_size} on {'×'.join(map(str, image_size))} images "
            f"needs about {need / 1024**3:.1f} GiB, above the worker's {limit / 1024**3:.1f} GiB "
            "(SYNTHCOHORT_WORKER_MEMORY_BYTES); lower batch_size or the widths", field="config")


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
    check_training_config(dataset, body.class_name, body.generator, body.config, body.preset)
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


def _read_json(path: Path) -> Any:
    """A JSON file of the model's folder, or None when it is absent or unreadable (mid-write)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def on_disk(model_id: str) -> dict[str, Any]:
    """What the model's folder says about it, each file read once: the training curve
    (``history.json`` beside the checkpoint, the full list of logged points, when the generators
    write one; else the summary in ``model.json``, first and last points; None before training has
    written either) and the code version that trained it (from ``model.json``). The checkpoint
    itself (which holds the full curve) is not unpickled in the API process."""
    folder = layout.model_dir(model_id)
    record = _read_json(folder / layout.MODEL_RECORD)
    record = record if isinstance(record, dict) else {}
    curve = _read_json(folder / "history.json")
    return {"history": curve if curve is not None else record.get("history"),
            "code_version": record.get("code_version")}


def model_view(row: ModelRecordRow, *, with_history: bool = False) -> dict[str, Any]:
    view = {
        "id": row.id, "dataset_id": row.dataset_id, "class_name": row.class_name, "generator": row.generator,
        "steps": row.steps, "seed": row.seed, "mask": row.mask_conditioned, "config": row.config or {},
        "status": row.status.value, "checkpoint_sha256": row.checkpoint_sha256, "job_id": row.job_id,
        "created_at": row.created_at,
    }
    if with_history:
        view.update(on_disk(row.id))
    return view


def list_models(session: Session, key: ApiKey, page: PageParams) -> dict[str, Any]:
    query = visible(select(ModelRecordRow), ModelRecordRow, key).order_by(
        ModelRecordRow.created_at.desc(), ModelRecordRow.id)
    return paginate(session, query, page, model_view)


def get_model(session: Session, key: ApiKey, model_id: str) -> dict[str, Any]:
    return model_view(get_visible(session, ModelRecordRow, model_id, key, field="model_id"), with_history=True)
