"""Errors only the HTTP layer raises. Like every :class:`SynthcohortError` they name the field
and the reason, and ``api.app`` turns them into ``{"error", "detail", "field"|"path"}``."""

from __future__ import annotations

from synthcohort.core.errors import SynthcohortError


class Unauthenticated(SynthcohortError):
    """No ``X-API-Key``, or one that is unknown or revoked."""

    http_status = 401


class Forbidden(SynthcohortError):
    """A valid key whose role may not do this."""

    http_status = 403


class Conflict(SynthcohortError):
    """The request clashes with the resource's state (or reuses an Idempotency-Key)."""

    http_status = 409


class ServiceUnavailable(SynthcohortError):
    """A dependency (the task broker, an optional component) cannot be reached now."""

    http_status = 503


class BadRequest(SynthcohortError):
    """A request the server cannot act on as sent (a missing header, a malformed body)."""

    http_status = 400
