"""Errors a user can act on. The CLI prints them as one line; the API maps them to 4xx."""

from __future__ import annotations

from pathlib import Path


class SynthcohortError(Exception):
    """Base of every user-facing error: says what (file or field) and why."""

    http_status = 400

    def __init__(self, reason: str, *, path: str | Path | None = None, field: str | None = None,
                 member: str | None = None):
        self.reason = reason
        self.path = str(path) if path is not None else None
        self.field = field
        # the file inside an archive or .npz (``path``) that is at fault, printable as text
        self.member = printable(member) if member is not None else None
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = self.path or self.field
        if self.member is not None:
            where = f"{where}, member {self.member}" if where else f"member {self.member}"
        return f"{where}: {self.reason}" if where else self.reason

    def to_json(self) -> dict[str, str | None]:
        return {"error": type(self).__name__, "detail": self.reason, "path": self.path, "field": self.field,
                "member": self.member}


def printable(name: str) -> str:
    """``name`` as text any JSON encoder takes: lone surrogates (undecodable bytes of a tar
    name) and control characters become backslash escapes."""
    text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
