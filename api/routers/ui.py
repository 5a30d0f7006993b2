"""/ui: the review page in the browser (sign-in, cohorts, one cohort's review, jobs). Not part
of the REST API (left out of /openapi.json): every address serves the same shell, whose script
calls the /v1 endpoints with the caller's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse

from synthcohort.api import ui_files

router = APIRouter(prefix="/ui", include_in_schema=False)

CohortId = Annotated[str, PathParam(pattern=r"^coh-[0-9A-Za-z_-]{1,36}$", description="a cohort id")]


@router.get("")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/")
def cohorts_page() -> FileResponse:
    return ui_files.shell()


@router.get("/cohorts/{cohort_id}")
def cohort_page(cohort_id: CohortId) -> FileResponse:
    return ui_files.shell()


@router.get("/jobs")
def jobs_page() -> FileResponse:
    return ui_files.shell()


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    return ui_files.asset(name)
