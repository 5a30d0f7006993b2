"""/v1/datasets: import (upload or server path) as a job; list and show dataset versions."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from synthcohort.api.deps import Caller, DbSession, IdempotencyKey, Page
from synthcohort.api.errors import BadRequest
from synthcohort.api.routers import mark_replay
from synthcohort.api.schemas import DatasetOut, DatasetPathRequest, DatasetShare, JobAccepted
from synthcohort.api.schemas import Page as PageOf
from synthcohort.api.services import datasets as service
from synthcohort.api.uploads import receive_multipart

router = APIRouter(prefix="/datasets", tags=["datasets"])

_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "A MedMNIST .npz or an archive (.zip, .tar[.gz])."},
        "name": {"type": "string"}, "format": {"type": "string", "default": "auto"},
        "modality": {"type": "string"}, "size": {"type": "string", "description": "e.g. 64x64 or 32x48x32"},
        "classes": {"type": "string", "description": "Comma-separated label names in label order."},
        "class_name": {"type": "string"}, "normalise": {"type": "string"}, "seed": {"type": "integer"},
    },
}
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
            "application/json": {"schema": DatasetPathRequest.model_json_schema()},
        },
    }
}


@router.post("", status_code=202, response_model=JobAccepted, openapi_extra=_REQUEST_BODY,
             summary="Import a dataset (upload, or a server path for admins) as a job")
async def create_dataset(request: Request, response: Response, key: Caller, idem: IdempotencyKey,
                         session: DbSession) -> JobAccepted:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        upload = await receive_multipart(request)
        job, replayed = await run_in_threadpool(service.create_upload_import, session, key, upload, idem)
    elif content_type.startswith("application/json"):
        try:
            body = DatasetPathRequest.model_validate(await request.json())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None
        except ValueError as exc:
            raise BadRequest(f"body is not valid JSON ({exc})", field="body") from None
        job, replayed = await run_in_threadpool(service.create_path_import, session, key, body, idem)
    else:
        raise BadRequest("send multipart/form-data (upload) or application/json (server path)",
                         field="Content-Type")
    mark_replay(response, replayed)
    return JobAccepted(job_id=job.id, status=job.status.value)


@router.get("", response_model=PageOf[DatasetOut], summary="List the dataset versions you imported or that were shared")
def list_datasets(key: Caller, session: DbSession, page: Page) -> dict:
    return service.list_datasets(session, key, page)


@router.get("/{dataset_id}", response_model=DatasetOut, summary="One dataset version (yours or shared)")
def get_dataset(dataset_id: str, key: Caller, session: DbSession) -> dict:
    return service.get_dataset(session, key, dataset_id)


@router.patch("/{dataset_id}", response_model=DatasetOut, summary="Share a dataset version with every key (admin)")
def share_dataset(dataset_id: str, body: DatasetShare, key: Caller, session: DbSession) -> dict:
    return service.share_dataset(session, key, dataset_id, body)
