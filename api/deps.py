"""FastAPI dependencies: a DB session per request, the caller's API key and role, the
Idempotency-Key header, and pagination parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from synthcohort.api.errors import BadRequest, Forbidden, Unauthenticated
from synthcohort.api.keys import authenticate
from synthcohort.store.db import ApiKey, Role

# Declared as a security scheme so /docs shows an "Authorize" box for X-API-Key.
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from `synthcohort keys create`.")


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, from the factory the app was created with."""
    with request.app.state.session_factory() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


def current_key(session: DbSession, plain: Annotated[str | None, Depends(api_key_header)]) -> ApiKey:
    """The caller's key; 401 without one or with an unknown/revoked one."""
    if not plain:
        raise Unauthenticated("this endpoint needs an API key in the X-API-Key header", field="X-API-Key")
    key = authenticate(session, plain)
    if key is None:
        raise Unauthenticated("unknown or revoked API key", field="X-API-Key")
    return key


Caller = Annotated[ApiKey, Depends(current_key)]


def require_role(*roles: Role) -> Callable[[ApiKey], ApiKey]:
    """A dependency passing only keys with one of ``roles`` (403 otherwise)."""

    def check(key: Caller) -> ApiKey:
        if key.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise Forbidden(f"needs the {allowed} role; this key is {key.role.value}", field="X-API-Key")
        return key

    return check


Reviewer = Annotated[ApiKey, Depends(require_role(Role.reviewer, Role.admin))]


def idempotency_key(
    key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="Any unique string; a retry with the same key "
               "returns the first response and never starts a second job."),
    ] = None,
) -> str:
    """Required on every POST that creates something (400 without it)."""
    if key is None or not key.strip():
        raise BadRequest("POST requests need an Idempotency-Key header (any unique string)",
                                field="Idempotency-Key")
    if len(key) > 200:
        raise BadRequest("Idempotency-Key is longer than 200 characters", field="Idempotency-Key")
    return key.strip()


IdempotencyKey = Annotated[str, Depends(idempotency_key)]


MAX_OFFSET = 2**31 - 1  # past it the database's integer cannot take the OFFSET (an OverflowError, a 500)


@dataclass(frozen=True)
class PageParams:
    offset: int
    limit: int


def page_params(
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 50,
) -> PageParams:
    return PageParams(offset, limit)


Page = Annotated[PageParams, Depends(page_params)]
