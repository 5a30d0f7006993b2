"""The FastAPI application: routers under /v1, JSON error bodies, the DB brought to head at start.

Every error leaves as ``{"error": <kind>, "detail": <reason>, "field"|"path": <where>}`` with a
4xx/5xx status: :class:`SynthcohortError` subclasses carry their own status (422 invalid input,
404 not found, 413 too large, 401/403/409/503 from :mod:`api.errors`), request validation is
422 naming the field, and anything unexpected is a 500 that says only where to look.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from synthcohort.api.routers import cohorts, datasets, jobs, me, models, ui
from synthcohort.api.schemas import Health
from synthcohort.api.services.health import HealthProbe
from synthcohort.core.errors import SynthcohortError
from synthcohort.core.settings import get_settings
from synthcohort.core.version import __version__
from synthcohort.store.db import session_factory
from synthcohort.store.migrate import upgrade_database

log = logging.getLogger(__name__)

DESCRIPTION = """Validated synthetic cohorts of rare classes in medical imaging.

Send an API key in `X-API-Key` (make one with `synthcohort keys create --role requester`) and
an `Idempotency-Key` on every POST: a retry with the same key returns the first answer and
never starts a second job. Long work (import, training, cohorts) runs as jobs: poll
`GET /v1/jobs/{id}`. Reviewers decide in the browser at `/ui/` (the page calls these endpoints).
"""


def _error_body(error: str, detail: str, *, field: str | None = None, path: str | None = None,
                member: str | None = None) -> dict:
    body: dict = {"error": error, "detail": detail}
    if field is not None:
        body["field"] = field
    if path is not None:
        body["path"] = path
    if member is not None:
        body["member"] = member
    return body


async def _synthcohort_error(_request: Request, exc: SynthcohortError) -> JSONResponse:
    return JSONResponse(_error_body(type(exc).__name__, exc.reason, field=exc.field, path=exc.path,
                                    member=exc.member),
                        status_code=exc.http_status)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # loc is ("body", <byte offset>): the field is the body
        at = (first.get("loc") or ("body", "?"))[-1]
        body = _error_body("ValidationError", f"body is not valid JSON (at byte {at}: "
                                              f"{(first.get('ctx') or {}).get('error', first['msg'])})", field="body")
        return JSONResponse(body, status_code=422)
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = ".".join(loc) or None
    detail = f"{field}: {first['msg']}" if field else str(first["msg"])
    body = _error_body("ValidationError", detail, field=field)
    body["errors"] = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    return JSONResponse(body, status_code=422)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    try:
        name = HTTPStatus(exc.status_code).phrase.replace(" ", "")
    except ValueError:
        name = "HTTPError"
    return JSONResponse(_error_body(name, str(exc.detail)), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(_error_body("InternalError", "unexpected server error; see the server log"),
                        status_code=500)


def create_app(database_url: str | None = None) -> FastAPI:
    """The API. ``database_url`` defaults to the settings' database; it is upgraded to the
    newest migration when the app starts (lifespan), before any request is served."""
    url = database_url or get_settings().sqlalchemy_url()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(upgrade_database, url)
        yield

    app = FastAPI(title="synthcohort", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url="/docs", openapi_url="/openapi.json")
    app.state.database_url = url
    app.state.session_factory = session_factory(url)
    app.add_exception_handler(SynthcohortError, _synthcohort_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    for router in (datasets.router, models.router, cohorts.router, jobs.router, me.router):
        app.include_router(router, prefix="/v1")
    app.include_router(ui.router)  # the review page: /ui/…, calling the /v1 endpoints above

    probe = HealthProbe(url)

    @app.get("/v1/health", response_model=Health, tags=["service"],
             summary="Schema revision, broker and workers (ok, or degraded when no worker beats)")
    def health() -> Health:
        return Health(**probe.answer())

    return app
