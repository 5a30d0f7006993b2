"""Errors a user can act on. The CLI prints them as one line; the API maps them to 4xx."""

from __future__ import annotations

from pathlib import Path


class SynthcohortError(Exception):
    """Base of every user-facing error: says what (file or field) and why."""

    http_status = 400

    def __init__(self, reason: str, *, path: str | Path | None = None, field: str | None = None):
        self.reason = reason
        self.path = str(path) if path is not None else None
        self.field = field
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = self.path or self.field
        return f"{where}: {self.reason}" if where else self.reason

    def to_json(self) -> dict[str, str | None]:
        return {"error": type(self).__name__, "detail": self.reason, "path": self.path, "field": self.field}


class InvalidInputError(SynthcohortError):
    """A file or request field that cannot be used (corrupt, wrong shape, unknown label...)."""

    http_status = 422


class NotFoundError(SynthcohortError):
    http_status = 404


class HoldoutAccessError(SynthcohortError):
    """Something other than the validation stage asked for the real hold-out (test) split."""

    http_status = 403


class TooLargeError(SynthcohortError):
    http_status = 413
