"""One router per resource, mounted under /v1 by :func:`api.app.create_app`."""

from __future__ import annotations

from fastapi import Response

REPLAY_HEADER = "Idempotent-Replayed"


def mark_replay(response: Response, replayed: bool) -> None:
    """Tell the client this answer repeats an earlier request with the same Idempotency-Key."""
    if replayed:
        response.headers[REPLAY_HEADER] = "true"
