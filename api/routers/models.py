"""/v1/models: train a generator on one class of a dataset (a job); list and show models."""

from __future__ import annotations

from fastapi import APIRouter, Response

from synthcohort.api.deps import Caller, DbSession, IdempotencyKey, Page
from synthcohort.api.routers import mark_replay
from synthcohort.api.schemas import ModelAccepted, ModelCreate, ModelOut
from synthcohort.api.schemas import Page as PageOf
from synthcohort.api.services import models as service

router = APIRouter(prefix="/models", tags=["models"])


@router.post("", status_code=202, response_model=ModelAccepted, summary="Train a model (a job)")
def create_model(body: ModelCreate, response: Response, key: Caller, idem: IdempotencyKey,
                 session: DbSession) -> ModelAccepted:
    model, job, replayed = service.create_model(session, key, body, idem)
    mark_replay(response, replayed)
    return ModelAccepted(model_id=model.id, job_id=job.id, status=job.status.value)


@router.get("", response_model=PageOf[ModelOut], summary="Models the caller may see")
def list_models(key: Caller, session: DbSession, page: Page) -> dict:
    return service.list_models(session, key, page)


@router.get("/{model_id}", response_model=ModelOut, summary="One model, with its training curve")
def get_model(model_id: str, key: Caller, session: DbSession) -> dict:
    return service.get_model(session, key, model_id)
