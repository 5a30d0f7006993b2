"""/v1/me: the caller's own key (name and role), so a page can say who is signed in and
offer only the controls that role may use; the server still checks every request."""

from __future__ import annotations

from fastapi import APIRouter

from synthcohort.api.deps import Caller
from synthcohort.api.keys import key_view
from synthcohort.api.schemas import MeOut

router = APIRouter(prefix="/me", tags=["keys"])


@router.get("", response_model=MeOut, summary="The caller's key: name and role")
def get_me(key: Caller) -> dict:
    return key_view(key)
