"""/v1/cohorts: generate a validated cohort (a job), follow it, read its report, review its
flagged samples and download the released ones."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse, StreamingResponse

from synthcohort.api.deps import Caller, DbSession, IdempotencyKey, Page, Reviewer
from synthcohort.api.routers import mark_replay
from synthcohort.api.schemas import (
    ArchiveKind,
    AuditEntry,
    CohortCreate,
    CohortOut,
    ImageArray,
    NearestOut,
    ReportPicture,
    ReviewCreate,
    SampleFormat,
    SampleOut,
)
from synthcohort.api.schemas import Page as PageOf
from synthcohort.api.services import cohorts as service
from synthcohort.api.services.neighbours import nearest
from synthcohort.api.services.reviews import list_reviews, review_sample
from synthcohort.store.db import SampleState

router = APIRouter(prefix="/cohorts", tags=["cohorts"])


@router.post("", status_code=202, response_model=CohortOut, summary="Generate and validate a cohort (a job)")
def create_cohort(body: CohortCreate, response: Response, key: Caller, idem: IdempotencyKey,
                  session: DbSession) -> dict:
    cohort, replayed = service.create_cohort(session, key, body, idem)
    mark_replay(response, replayed)
    return service.cohort_out(session, cohort)


@router.get("", response_model=PageOf[CohortOut], summary="Cohorts the caller may see, newest first")
def list_cohorts(key: Caller, session: DbSession, page: Page) -> dict:
    return service.list_cohorts(session, key, page)


@router.get("/{cohort_id}", response_model=CohortOut, summary="Status, verdict and sample counts")
def get_cohort(cohort_id: str, key: Caller, session: DbSession) -> dict:
    return service.cohort_out(session, service.get_cohort(session, key, cohort_id))


@router.get("/{cohort_id}/report", summary="The validation report (JSON)",
            response_class=FileResponse, responses={200: {"content": {"application/json": {}}}})
def get_report(cohort_id: str, key: Caller, session: DbSession) -> FileResponse:
    return FileResponse(service.report_file(session, key, cohort_id, "report.json"), media_type="application/json")


@router.get("/{cohort_id}/report.html", summary="The validation report (self-contained HTML)",
            response_class=FileResponse, responses={200: {"content": {"text/html": {}}}})
def get_report_html(cohort_id: str, key: Caller, session: DbSession) -> FileResponse:
    return FileResponse(service.report_file(session, key, cohort_id, "report.html"), media_type="text/html")


@router.get("/{cohort_id}/report/{picture}", summary="A picture of the validation report (PNG)",
            response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
def get_report_picture(cohort_id: str, picture: ReportPicture, key: Caller, session: DbSession) -> FileResponse:
    return FileResponse(service.report_picture(session, key, cohort_id, picture), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{cohort_id}/samples", response_model=PageOf[SampleOut], summary="Samples with state, flags, reviews")
def list_samples(cohort_id: str, key: Caller, session: DbSession, page: Page,
                 state: Annotated[SampleState | None, Query(description="released | held | rejected")] = None) -> dict:
    return service.list_samples(session, key, cohort_id, state, page)


@router.get("/{cohort_id}/samples/{index}", response_model=SampleOut,
            summary="One sample: file checksum, state, flags, nearest training image, reviews")
def get_sample(cohort_id: str, index: int, key: Caller, session: DbSession) -> dict:
    return service.sample_detail(session, key, cohort_id, index)


@router.get("/{cohort_id}/samples/{index}/thumbnail.png", summary="PNG preview (3D: middle slice)",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def get_thumbnail(cohort_id: str, index: int, key: Caller, session: DbSession) -> Response:
    return Response(service.thumbnail(session, key, cohort_id, index), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{cohort_id}/samples/{index}/pixels", response_model=ImageArray,
            summary="The sample's intensities (and mask) for window/level and slices")
def get_pixels(cohort_id: str, index: int, key: Caller, session: DbSession) -> dict:
    return service.pixels(session, key, cohort_id, index)


@router.get("/{cohort_id}/samples/{index}/nearest", response_model=NearestOut,
            summary="The training images nearest to a sample, with scores and thresholds (reviewer or admin)")
def get_nearest(cohort_id: str, index: int, key: Reviewer, session: DbSession) -> dict:
    return nearest(session, key, cohort_id, index)


@router.get("/{cohort_id}/reviews", response_model=PageOf[AuditEntry],
            summary="The audit trail: every review decision, newest first")
def get_reviews(cohort_id: str, key: Caller, session: DbSession, page: Page) -> dict:
    return list_reviews(session, key, cohort_id, page)


@router.post("/{cohort_id}/samples/{index}/review", response_model=SampleOut,
             summary="Approve, reject (with a reason code) or reset a flagged sample (reviewer or admin)")
def review(cohort_id: str, index: int, body: ReviewCreate, key: Reviewer, idem: IdempotencyKey,
           session: DbSession) -> dict:
    return review_sample(session, key, cohort_id, index, body, idem)


@router.get("/{cohort_id}/download", summary="Archive of the released samples only",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}, "application/x-tar": {}}}})
def download(cohort_id: str, key: Caller, session: DbSession,
             format: Annotated[SampleFormat | None, Query(description="default: the cohort's format")] = None,
             archive: Annotated[ArchiveKind, Query()] = "zip") -> StreamingResponse:
    stream, filename, media_type = service.download(session, key, cohort_id, format, archive)
    return StreamingResponse(stream, media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})
