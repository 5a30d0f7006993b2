"""/v1/jobs: progress of imports, training and cohorts; cancellation."""

from __future__ import annotations

from fastapi import APIRouter

from synthcohort.api.deps import Caller, DbSession, Page
from synthcohort.api.schemas import JobOut
from synthcohort.api.schemas import Page as PageOf
from synthcohort.api.services import jobs as service
from synthcohort.api.services.pagination import paginate

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", response_model=PageOf[JobOut], summary="Jobs the caller may see, newest first")
def list_jobs(key: Caller, session: DbSession, page: Page) -> dict:
    return paginate(session, service.list_query(key), page, service.job_view)


@router.get("/{job_id}", response_model=JobOut, summary="Status, stage, progress and error of a job")
def get_job(job_id: str, key: Caller, session: DbSession) -> dict:
    return service.job_view(service.get_job(session, key, job_id))


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut, summary="Ask a job to stop")
def cancel_job(job_id: str, key: Caller, session: DbSession) -> dict:
    return service.job_view(service.cancel_job(session, key, job_id))
