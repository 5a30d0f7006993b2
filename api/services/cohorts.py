"""Cohorts: creation (a ``cohorts`` row + a ``cohort`` job), status views with sample counts,
the validation report, per-sample listings with thumbnails, and the download of released
samples. Everything a worker writes is read here: the Cohort and Sample rows and the files
under ``<data root>/cohorts/<id>/``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from synthcohort.api.deps import PageParams
from synthcohort.api.errors import Conflict, Forbidden
from synthcohort.api.pixels import sample_file_array
from synthcohort.api.schemas import CohortCreate
from synthcohort.api.services.access import get_visible, imported_by, visible
from synthcohort.api.services.datasets import check_class, dataset_for
from synthcohort.api.services.jobs import (
    ensure_dispatched,
    find_replay,
    new_id,
    request_hash,
    submit,
)
from synthcohort.api.services.models import check_generator, check_training_config
from synthcohort.api.services.pagination import paginate
from synthcohort.api.thumbnails import render_thumbnail
from synthcohort.core import layout
from synthcohort.core.atomic import sha256_file
from synthcohort.core.errors import InvalidInputError, NotFoundError
from synthcohort.store.cohort_export import (
    MEDIA_TYPE,
    ReleasedSample,
    archive_filename,
    stream_archive,
)
from synthcohort.store.db import (
    ApiKey,
    Cohort,
    CohortStatus,
    DatasetRecord,
    Job,
    JobKind,
    JobStatus,
    ModelRecordRow,
    Role,
    Sample,
    SampleState,
    Verdict,
)
from synthcohort.validation.policy import validation_config


# ------------------------------------------------------------------ create
def create_cohort(session: Session, key: ApiKey, body: CohortCreate, idem: str) -> tuple[Cohort, bool]:
    request = body.model_dump(mode="json")  # validation: only the overrides that were set
    req_hash = request_hash("cohort", request)
    replay = find_replay(session, key, idem, req_hash)
    if replay is not None:
        ensure_dispatched(session, replay)
        return session.get(Cohort, replay.target_id), True
    if body.model_id is not None:
        model = get_visible(session, ModelRecordRow, body.model_id, key, field="model_id")
        if model.status != JobStatus.succeeded:
            raise Conflict(f"model {model.id} is {model.status.value}; sample it once training succeeded",
                           field="model_id")
        dataset_id, class_name, generator = model.dataset_id, model.class_name, model.generator
    else:
        assert body.dataset_id and body.class_name and body.generator
        dataset = dataset_for(session, body.dataset_id, key)
        check_class(dataset, body.class_name)
        check_generator(body.generator)
        check_training_config(dataset, body.class_name, body.generator, body.config, body.preset)
        dataset_id, class_name, generator = dataset.id, body.class_name, body.generator
    # Same rule the worker applies (only admins loosen gates), checked now: 422, no job.
    try:
        validation_config(request["validation"], admin=key.role == Role.admin)
    except InvalidInputError as exc:  # the config's own checks name its field; the request nests it
        field = exc.field if (exc.field or "").startswith("validation") else f"validation.{exc.field or ''}".rstrip(".")
        reason = exc.reason.removeprefix(f"{exc.field}: ") if exc.field else exc.reason
        raise InvalidInputError(f"{field}: {reason}", field=field) from None
    cohort_id, job_id = new_id("coh"), new_id("job")
    job = Job(id=job_id, kind=JobKind.cohort, status=JobStatus.queued, owner_id=key.id, idempotency_key=idem,
              request_hash=req_hash, target_id=cohort_id,
              request={**request, "cohort_id": cohort_id, "dataset_id": dataset_id,
                       "class_name": class_name, "generator": generator})
    cohort = Cohort(id=cohort_id, dataset_id=dataset_id, model_id=body.model_id, class_name=class_name,
                    generator=generator, count=body.count, seed=body.seed, format=body.format,
                    status=CohortStatus.queued, job_id=job_id, owner_id=key.id)
    job, replayed = submit(session, job, [cohort])
    return session.get(Cohort, job.target_id), replayed


# ------------------------------------------------------------------ read
def _state_counts(session: Session, cohort_ids: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {c: {s.value: 0 for s in SampleState} for c in cohort_ids}
    if cohort_ids:
        rows = session.execute(
            select(Sample.cohort_id, Sample.state, func.count()).where(Sample.cohort_id.in_(cohort_ids))
            .group_by(Sample.cohort_id, Sample.state)
        )
        for cid, state, n in rows:
            counts[cid][state.value] = int(n)
    return counts


def cohort_view(cohort: Cohort, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": cohort.id, "status": cohort.status.value, "verdict": cohort.verdict.value if cohort.verdict else None,
        "reasons": cohort.reasons or [], "count": cohort.count, "released": counts["released"],
        "held": counts["held"], "rejected": counts["rejected"], "job_id": cohort.job_id,
        "model_id": cohort.model_id, "dataset_id": cohort.dataset_id, "class_name": cohort.class_name,
        "generator": cohort.generator, "seed": cohort.seed, "format": cohort.format,
        "metrics": cohort.metrics or {}, "created_at": cohort.created_at,
    }


def get_cohort(session: Session, key: ApiKey, cohort_id: str) -> Cohort:
    return get_visible(session, Cohort, cohort_id, key, field="cohort_id")


def cohort_out(session: Session, cohort: Cohort) -> dict[str, Any]:
    return cohort_view(cohort, _state_counts(session, [cohort.id])[cohort.id])


def list_cohorts(session: Session, key: ApiKey, page: PageParams) -> dict[str, Any]:
    query = visible(select(Cohort), Cohort, key).order_by(Cohort.created_at.desc(), Cohort.id)
    result = paginate(session, query, page, lambda c: c)
    counts = _state_counts(session, [c.id for c in result["items"]])
    result["items"] = [cohort_view(c, counts[c.id]) for c in result["items"]]
    return result


def report_file(session: Session, key: ApiKey, cohort_id: str, name: str) -> Path:
    """``report.json`` / ``report.html`` of a validated cohort (409 while it is not).

    The HTML report shows real training images (the real/synthetic grids, each flagged sample
    beside its nearest training image), so a requester gets it only for a dataset they
    uploaded themselves; reviewers and admins always. The JSON report holds no pixels."""
    cohort = get_cohort(session, key, cohort_id)
    if name.endswith(".html"):
        check_sees_training_images(session, key, cohort, "report.html")
    return _report_path(cohort, name)


def _report_path(cohort: Cohort, name: str) -> Path:
    path = layout.cohort_report_dir(cohort.id) / name
    if not path.is_file():
        if cohort.status != CohortStatus.ready:
            raise Conflict(f"cohort {cohort.id} is {cohort.status.value}; the report comes with validation",
                           field="cohort_id")
        raise NotFoundError(f"cohort {cohort.id} has no {name}", field="cohort_id")
    return path


def check_sees_training_images(session: Session, key: ApiKey, cohort: Cohort, what: str) -> None:
    """403 for a requester on a dataset they did not upload: ``what`` shows real training
    images (or held samples, which may be near-copies of them)."""
    if key.role != Role.requester:
        return
    if not imported_by(session, cohort.dataset_id, key):
        raise Forbidden(f"{what} shows real training images of a dataset you did not upload; "
                        "read /report (JSON) or ask a reviewer", field="cohort_id")


# The real/synthetic grids and slices show training images and held samples, and a voxel-spread map
# of a few volumes shows their anatomy; the t-SNE shows points only.
_PICTURES_WITH_IMAGES = ("grid_real.png", "grid_synthetic.png", "ortho_real.png", "ortho_synthetic.png", "spread.png")


def report_picture(session: Session, key: ApiKey, cohort_id: str, name: str) -> Path:
    """A picture of the validation report (``name`` is one of ``schemas.ReportPicture``)."""
    cohort = get_cohort(session, key, cohort_id)
    if name in _PICTURES_WITH_IMAGES:
        check_sees_training_images(session, key, cohort, name)
    return _report_path(cohort, name)


def report_data(cohort_id: str) -> dict[str, Any]:
    """report.json of a cohort as a dict; {} when it is missing or unreadable (callers fall
    back to what the Sample rows hold)."""
    path = layout.cohort_report_dir(cohort_id) / layout.REPORT_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _may_see_image(key: ApiKey, sample: Sample) -> bool:
    """Held/rejected samples may be near-copies of real patients: only reviewers see them."""
    return sample.state == SampleState.released or key.role in (Role.reviewer, Role.admin)


def review_view(r: Any) -> dict[str, Any]:
    return {"id": r.id, "decision": r.decision, "reason_code": r.reason_code, "reason": r.reason,
            "reviewer_id": r.reviewer_id, "reviewer_name": r.reviewer_name, "created_at": r.created_at}


def sample_view(sample: Sample, key: ApiKey, nearest: dict[int, Any] | None = None) -> dict[str, Any]:
    nearest_train = (sample.scores or {}).get("nearest_train")
    if nearest_train is None and nearest:
        nearest_train = nearest.get(sample.index)
    thumb = f"/v1/cohorts/{sample.cohort_id}/samples/{sample.index}/thumbnail.png"
    return {
        "index": sample.index, "file": sample.file, "sha256": sample.sha256, "state": sample.state.value,
        "flags": sample.flags or [],
        "nearest_train": nearest_train, "reviews": [review_view(r) for r in sample.reviews],
        "thumbnail_url": thumb if _may_see_image(key, sample) else None,
    }


def report_nearest(cohort_id: str) -> dict[int, Any]:
    """index → nearest_train from report.json, for samples whose row lacks it."""
    try:
        samples = report_data(cohort_id).get("samples", [])
        return {int(s["index"]): s.get("nearest_train") for s in samples if "index" in s}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def list_samples(session: Session, key: ApiKey, cohort_id: str, state: SampleState | None,
                 page: PageParams) -> dict[str, Any]:
    cohort = get_cohort(session, key, cohort_id)
    query = select(Sample).where(Sample.cohort_id == cohort.id).options(selectinload(Sample.reviews))
    if state is not None:
        query = query.where(Sample.state == state)
    result = paginate(session, query.order_by(Sample.index), page, lambda s: s)
    nearest = None
    if any((s.scores or {}).get("nearest_train") is None for s in result["items"]):
        nearest = report_nearest(cohort.id)
    result["items"] = [sample_view(s, key, nearest) for s in result["items"]]
    return result


def get_sample(session: Session, key: ApiKey, cohort_id: str, index: int) -> Sample:
    cohort = get_cohort(session, key, cohort_id)
    sample = session.scalar(select(Sample).where(Sample.cohort_id == cohort.id, Sample.index == index))
    if sample is None:
        raise NotFoundError(f"cohort {cohort.id} has no sample {index}", field="index")
    return sample


def sample_detail(session: Session, key: ApiKey, cohort_id: str, index: int) -> dict[str, Any]:
    sample = get_sample(session, key, cohort_id, index)
    return sample_view(sample, key, None if (sample.scores or {}).get("nearest_train") else report_nearest(cohort_id))


def _sample_path(sample: Sample, name: str) -> Path:
    """A file of the cohort's sample dir; a manifest entry pointing outside it is refused."""
    samples_dir = (layout.cohort_samples_dir(sample.cohort_id)).resolve()
    path = (samples_dir / name).resolve()
    if not path.is_relative_to(samples_dir):
        raise InvalidInputError("sample file lies outside the cohort", path=name)
    return path


def _viewable_sample(session: Session, key: ApiKey, cohort_id: str, index: int) -> Sample:
    sample = get_sample(session, key, cohort_id, index)
    if not _may_see_image(key, sample):
        raise Forbidden(f"sample {index} is {sample.state.value}; only reviewers may view it", field="index")
    return sample


def thumbnail(session: Session, key: ApiKey, cohort_id: str, index: int) -> bytes:
    sample = _viewable_sample(session, key, cohort_id, index)
    return render_thumbnail(_sample_path(sample, sample.file))


def pixels(session: Session, key: ApiKey, cohort_id: str, index: int) -> dict[str, Any]:
    """The sample (and its mask) as ``ImageArray`` fields, for window/level and slicing."""
    sample = _viewable_sample(session, key, cohort_id, index)
    mask = _sample_path(sample, sample.mask_file) if sample.mask_file else None
    return sample_file_array(_sample_path(sample, sample.file), mask)


# ------------------------------------------------------------------ download
def download(session: Session, key: ApiKey, cohort_id: str, fmt: str | None, archive: str
             ) -> tuple[Iterator[bytes], str, str]:
    """(byte iterator, file name, media type) of an archive of the released samples only."""
    cohort = get_cohort(session, key, cohort_id)
    if cohort.status != CohortStatus.ready or cohort.verdict is None:
        raise Conflict(f"cohort {cohort.id} is {cohort.status.value}; download once validated", field="cohort_id")
    if cohort.verdict == Verdict.failed:
        raise Conflict(f"cohort {cohort.id} failed validation; nothing is released", field="cohort_id")
    samples = list(session.scalars(
        select(Sample).where(Sample.cohort_id == cohort.id, Sample.state == SampleState.released)
        .options(selectinload(Sample.reviews)).order_by(Sample.index)
    ))
    if not samples:
        raise Conflict(f"cohort {cohort.id} has no released samples (yet)", field="cohort_id")
    model = session.get(ModelRecordRow, cohort.model_id) if cohort.model_id else None
    released = [
        ReleasedSample(index=s.index, file=s.file, mask_file=s.mask_file or None, class_name=cohort.class_name,
                       seed=cohort.seed, model_id=cohort.model_id or "",
                       checkpoint_sha256=(model.checkpoint_sha256 or "") if model else "", scores=s.scores or {})
        for s in samples
    ]
    fmt = fmt or cohort.format
    dataset = session.get(DatasetRecord, cohort.dataset_id)
    stream = stream_archive(layout.cohort_samples_dir(cohort.id), released, fmt=fmt, archive=archive,
                            provenance=provenance(cohort, model, dataset, samples))
    return stream, archive_filename(cohort.id, archive).replace(cohort.id, f"{cohort.id}-{fmt}", 1), MEDIA_TYPE[archive]


def provenance(cohort: Cohort, model: ModelRecordRow | None, dataset: DatasetRecord | None,
               released: list[Sample]) -> dict[str, Any]:
    """What the archive says about its origin: dataset, model, validation, and who released
    which flagged sample (the audit trail travels with the data)."""
    report = layout.cohort_report_dir(cohort.id) / layout.REPORT_JSON
    meta = (dataset.meta or {}) if dataset is not None else {}
    return {
        "cohort_id": cohort.id, "dataset_id": cohort.dataset_id, "model_id": cohort.model_id,
        "generator": cohort.generator, "class_name": cohort.class_name, "seed": cohort.seed,
        "count": cohort.count, "verdict": cohort.verdict.value if cohort.verdict else None,
        "reasons": cohort.reasons or [], "metrics": cohort.metrics or {},
        "model": ({"steps": model.steps, "seed": model.seed, "config": model.config or {},
                   "checkpoint_sha256": model.checkpoint_sha256} if model else None),
        "report_sha256": sha256_file(report) if report.is_file() else None,
        "created_at": cohort.created_at.isoformat() if cohort.created_at else None,
        "classes": meta.get("classes"), "modality": meta.get("modality"), "spacing": meta.get("spacing"),
        "normalisation": meta.get("normalisation"),
        "released": len(released),
        "reviews": [
            {"index": s.index, "decision": r.decision, "reason_code": r.reason_code, "reason": r.reason,
             "reviewer_name": r.reviewer_name,
             "reviewer_id": r.reviewer_id, "created_at": r.created_at.isoformat()}
            for s in released for r in s.reviews
        ],
    }
