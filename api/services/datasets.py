"""Datasets: import jobs (upload or server path), and the ``datasets`` table kept in step with
the dataset store (a version imported with the CLI appears in the API without a re-import)."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from synthcohort.api.deps import PageParams
from synthcohort.api.errors import Forbidden
from synthcohort.api.schemas import DatasetPathRequest, DatasetShare
from synthcohort.api.services.access import may_see_dataset, visible_datasets
from synthcohort.api.services.jobs import (
    ensure_dispatched,
    find_replay,
    new_id,
    request_hash,
    submit,
)
from synthcohort.api.services.pagination import paginate
from synthcohort.api.uploads import ReceivedUpload, check_upload, upload_suffix
from synthcohort.core.errors import InvalidInputError, NotFoundError
from synthcohort.imaging.normalisation import parse_normalisation
from synthcohort.imaging.resizing import check_size, parse_size
from synthcohort.store.datasets import DatasetStore
from synthcohort.store.db import ApiKey, DatasetRecord, Job, JobKind, JobStatus, Role, utcnow
from synthcohort.store.ingest import FORMATS, normalise_modality

UPLOAD_FIELDS = ("name", "format", "modality", "size", "normalise", "classes", "class_name", "seed")


def record_from_meta(meta: Any, owner_id: int | None = None) -> DatasetRecord:
    """A ``datasets`` row from a store ``DatasetMeta``."""
    return DatasetRecord(
        id=meta.id, name=meta.name, modality=meta.modality, spatial_dims=meta.spatial_dims,
        classes=list(meta.classes), counts=meta.counts, meta=meta.model_dump(mode="json"), owner_id=owner_id,
    )


def sync_from_store(session: Session) -> None:
    """Add rows for store versions the table lacks (imported by the CLI, or a worker racing us)."""

    known = set(session.scalars(select(DatasetRecord.id)))
    for meta in DatasetStore().list():
        if meta.id in known:
            continue
        session.add(record_from_meta(meta))
        try:
            session.commit()
        except IntegrityError:  # a worker recorded it a moment ago
            session.rollback()


def dataset_for(session: Session, dataset_id: str, key: ApiKey, *, use: bool = True) -> DatasetRecord:
    """The dataset row for a request field; 404 naming ``dataset_id`` when unknown or when the
    caller neither imported it nor was it shared (other people's data does not leak)."""
    row = session.get(DatasetRecord, dataset_id)
    if row is None:
        sync_from_store(session)
        row = session.get(DatasetRecord, dataset_id)
    if row is None or not may_see_dataset(session, row, key, use=use):
        raise NotFoundError(f"no dataset {dataset_id!r}", field="dataset_id")
    return row


def check_class(dataset: DatasetRecord, class_name: str) -> None:
    if class_name not in dataset.classes:
        raise InvalidInputError(
            f"unknown class {class_name!r} in {dataset.id}; known: {', '.join(dataset.classes)}",
            field="class_name",
        )


def public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The store's metadata without server paths: a path in ``source`` keeps only its file
    name (the upload's own name), so no response tells where the server keeps files."""
    source = {k: (PurePath(v).name if isinstance(v, str) and ("/" in v or "\\" in v) else v)
              for k, v in (meta.get("source") or {}).items()}
    return {**meta, "source": source}


def dataset_view(row: DatasetRecord) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "modality": row.modality, "spatial_dims": row.spatial_dims,
            "classes": row.classes, "counts": row.counts, "meta": public_meta(row.meta or {}),
            "shared": bool(row.shared), "created_at": row.created_at}


def list_datasets(session: Session, key: ApiKey, page: PageParams) -> dict[str, Any]:
    sync_from_store(session)
    query = visible_datasets(select(DatasetRecord), key).order_by(DatasetRecord.created_at, DatasetRecord.id)
    return paginate(session, query, page, dataset_view)


def get_dataset(session: Session, key: ApiKey, dataset_id: str) -> dict[str, Any]:
    return dataset_view(dataset_for(session, dataset_id, key, use=False))


def share_dataset(session: Session, key: ApiKey, dataset_id: str, body: DatasetShare) -> dict[str, Any]:
    """Admin only (403 else): share with every key, or unshare; who and when is recorded."""
    if key.role != Role.admin:
        raise Forbidden("only an admin key may share a dataset", field="shared")
    row = dataset_for(session, dataset_id, key)
    row.shared = body.shared
    row.shared_by, row.shared_at = (key.id, utcnow()) if body.shared else (None, None)
    session.commit()
    return dataset_view(row)


# ------------------------------------------------------------------ import jobs
def _check_options(options: dict[str, Any]) -> None:
    """Catch bad import options now (422), not minutes later in a failed job."""

    if options["format"] not in FORMATS:
        raise InvalidInputError(f"unknown format {options['format']!r}; one of {', '.join(FORMATS)}", field="format")
    normalise_modality(options.get("modality"))
    if options.get("normalise"):
        parse_normalisation(options["normalise"])
    if options.get("size"):
        check_size(tuple(options["size"]))


def upload_options(fields: dict[str, str], filename: str) -> dict[str, Any]:
    """Validated import options from the multipart form fields."""
    unknown = sorted(set(fields) - set(UPLOAD_FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown form field(s) {', '.join(unknown)}; known: {', '.join(UPLOAD_FIELDS)}",
                                field=unknown[0])
    raw: dict[str, Any] = {k: v for k, v in fields.items() if v != ""}
    if "size" in raw:

        raw["size"] = list(parse_size(raw["size"]))
    if "classes" in raw:
        raw["classes"] = [c.strip() for c in raw["classes"].split(",")]
    raw.setdefault("name", _stem(filename))
    try:
        body = DatasetPathRequest(path=filename, **raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInputError(err["msg"], field=".".join(str(p) for p in err["loc"])) from None
    options = body.model_dump(exclude={"path"})
    _check_options(options)
    return options


def _stem(filename: str) -> str:
    return filename[: -len(upload_suffix(filename))] or "upload"


def create_upload_import(session: Session, key: ApiKey, upload: ReceivedUpload, idem: str) -> tuple[Job, bool]:
    """An import job for an uploaded file. The file is vetted first (422/413 leave nothing);
    a replay of an earlier upload discards the copy that just arrived."""
    assert upload.path is not None and upload.filename is not None
    try:
        options = upload_options(upload.fields, upload.filename)
        req_hash = request_hash("import", {**options, "file_sha256": upload.sha256})
        replay = find_replay(session, key, idem, req_hash)
        if replay is not None:
            upload.discard()
            ensure_dispatched(session, replay)
            return replay, True
        check_upload(upload)
    except BaseException:
        upload.discard()
        raise
    request = {**options, "path": str(upload.path), "upload": True, "filename": upload.filename,
               "file_sha256": upload.sha256}
    job = Job(id=new_id("job"), kind=JobKind.import_dataset, status=JobStatus.queued, owner_id=key.id,
              idempotency_key=idem, request_hash=req_hash, request=request)
    try:
        job, replayed = submit(session, job)
    except BaseException:
        if session.get(Job, job.id) is None:
            upload.discard()
        raise
    if replayed:
        upload.discard()
    return job, replayed


def create_path_import(session: Session, key: ApiKey, body: DatasetPathRequest, idem: str) -> tuple[Job, bool]:
    """An import job for a path on the server (admin only: it reads the server's disk)."""
    if key.role != Role.admin:
        raise Forbidden("only an admin key may import a server path; upload the file instead", field="path")
    options = body.model_dump()
    req_hash = request_hash("import", options)
    replay = find_replay(session, key, idem, req_hash)
    if replay is not None:
        ensure_dispatched(session, replay)
        return replay, True
    path = Path(body.path).expanduser()
    if not path.exists():
        raise InvalidInputError("does not exist on the server", path=body.path)
    _check_options(options)
    request = {**options, "path": str(path.resolve()), "upload": False}
    job = Job(id=new_id("job"), kind=JobKind.import_dataset, status=JobStatus.queued, owner_id=key.id,
              idempotency_key=idem, request_hash=req_hash, request=request)
    return submit(session, job)
