"""Python client of the synthcohort REST API (``/v1``), over httpx.

Why it exists: a radiology ML engineer wants three lines (request a cohort, wait, download)
with the safety the API promises kept on the client side too:

- every POST carries an ``Idempotency-Key``; the client makes one per call and sends the same
  one again when it retries after a dropped connection or a 502/503/504, so a retry never
  starts a second job;
- an HTTP error becomes an :class:`ApiError` (a :class:`SynthcohortError`) with the status and
  the server's JSON body (``error``, ``detail``, ``field``/``path``);
- :meth:`Client.download` streams the archive to a temporary file, extracts it with the
  archive safety checks of :mod:`store.archives`, verifies ``SHA256SUMS`` and only then renames
  the folder into place, so a cohort folder on disk is always complete and verified.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from synthcohort.core.atomic import sha256_file
from synthcohort.core.errors import (
    InvalidInputError,
    NotFoundError,
    SynthcohortError,
    TooLargeError,
)
from synthcohort.core.progress import Progress, ProgressCallback
from synthcohort.core.settings import get_settings
from synthcohort.store.archives import extract_archive
from synthcohort.store.cohort_export import ARCHIVE_SUFFIX

RETRY_STATUSES = (502, 503, 504)
FINISHED = ("succeeded", "failed", "cancelled")
SUMS_FILE = "SHA256SUMS"


class ApiError(SynthcohortError):
    """An error answer of the API (or no answer at all: ``status`` None)."""

    def __init__(self, reason: str, *, status: int | None, body: dict[str, Any] | None = None,
                 path: str | None = None, field: str | None = None):
        self.status = status
        self.body = body or {}
        self.error = self.body.get("error")
        super().__init__(reason, path=path, field=field)
        if status is not None:
            self.http_status = status


class Unauthorized(ApiError):
    http_status = 401


class Forbidden(ApiError):
    http_status = 403


class ApiNotFound(ApiError, NotFoundError):
    http_status = 404


class ApiConflict(ApiError):
    http_status = 409


class ApiTooLarge(ApiError, TooLargeError):
    http_status = 413


class ApiInvalidInput(ApiError, InvalidInputError):
    http_status = 422


class ApiUnavailable(ApiError):
    """The API could not be reached, or answered 5xx after the retries."""

    http_status = 503


class JobFailed(SynthcohortError):
    """A job ended ``failed`` or ``cancelled``; ``job`` is its last state from the API."""

    def __init__(self, reason: str, job: dict[str, Any]):
        self.job = job
        super().__init__(reason, field="job_id")


class JobTimeout(SynthcohortError):
    """:meth:`Client.wait` gave up; the job may still finish later."""

    http_status = 504

    def __init__(self, reason: str, job: dict[str, Any]):
        self.job = job
        super().__init__(reason, field="job_id")


class ChecksumError(InvalidInputError):
    """A downloaded file does not match ``SHA256SUMS`` (or is missing from it)."""


_STATUS_ERRORS: dict[int, type[ApiError]] = {
    401: Unauthorized, 403: Forbidden, 404: ApiNotFound, 409: ApiConflict, 413: ApiTooLarge,
    422: ApiInvalidInput,
}


def _error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        if not isinstance(body, dict):
            body = {"detail": str(body)}
    except ValueError:
        body = {"detail": response.text[:500] or response.reason_phrase}
    detail = str(body.get("detail") or body.get("error") or response.reason_phrase)
    cls = _STATUS_ERRORS.get(response.status_code)
    if cls is None:
        cls = ApiUnavailable if response.status_code >= 500 else ApiError
    return cls(f"HTTP {response.status_code} on {response.request.method} {response.request.url.path}: {detail}",
               status=response.status_code, body=body, path=body.get("path"), field=body.get("field"))


class Client:
    """A session with the API. ``base_url``/``api_key`` default to the settings' ``api_url`` and
    ``api_key`` (``SYNTHCOHORT_API_URL``, ``SYNTHCOHORT_API_KEY``)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 30.0, *,
                 retries: int = 3, backoff_s: float = 0.5):
        settings = get_settings()
        self.base_url = (base_url or settings.api_url).rstrip("/")
        self.api_key = api_key if api_key is not None else settings.api_key
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        headers = {"User-Agent": "synthcohort-client"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        self._http = httpx.Client(base_url=f"{self.base_url}/v1", headers=headers, timeout=timeout)

    # -- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, idempotency_key: str | None = None, retries: int | None = None,
                 **kwargs: Any) -> httpx.Response:
        """Send with retries on transport errors and 502/503/504. A POST always carries an
        Idempotency-Key, the same on every retry."""
        headers = dict(kwargs.pop("headers", None) or {})
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt < retries:
                    time.sleep(self.backoff_s * 2**attempt)
                    continue
                raise ApiUnavailable(f"cannot reach the API at {self.base_url} ({type(exc).__name__}: {exc})",
                                     status=None) from exc
            if response.status_code in RETRY_STATUSES and attempt < retries:
                time.sleep(self.backoff_s * 2**attempt)
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def _post(self, path: str, body: dict[str, Any], idempotency_key: str | None) -> Any:
        return self._request("POST", path, json=body, idempotency_key=idempotency_key).json()

    def _all(self, path: str, page_size: int = 200, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated listing."""
        items: list[dict[str, Any]] = []
        while True:
            page = self._get(path, offset=len(items), limit=page_size, **params)
            items.extend(page["items"])
            if not page["items"] or len(items) >= page["total"]:
                return items

    # -- datasets ------------------------------------------------------------------------------

    def upload_dataset(self, path: str | Path, *, idempotency_key: str | None = None, **options: Any) -> dict[str, Any]:
        """Upload an ``.npz`` or an archive; options: name, format, modality, size ([H, W] or
        "64x64"), classes (list or "a,b"), class_name, normalise, seed. Returns ``{"job_id", "status"}``."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError("no such file to upload", path=path)
        form: dict[str, str] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key == "size" and isinstance(value, (list, tuple)):
                value = "x".join(str(int(v)) for v in value)
            elif key == "classes" and isinstance(value, (list, tuple)):
                value = ",".join(map(str, value))
            form[key] = str(value)
        key = idempotency_key or uuid.uuid4().hex
        for attempt in range(self.retries + 1):  # the file is reopened for each try, the key kept
            with open(path, "rb") as f:
                try:
                    return self._request("POST", "/datasets", idempotency_key=key, retries=0, data=form,
                                         files={"file": (path.name, f, "application/octet-stream")}).json()
                except ApiUnavailable as exc:
                    if attempt >= self.retries or exc.status not in (None, *RETRY_STATUSES):
                        raise
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def register_dataset(self, server_path: str, *, idempotency_key: str | None = None, **options: Any) -> dict[str, Any]:
        """Import a path on the server (admin keys only); returns ``{"job_id", "status"}``."""
        body = {"path": str(server_path), **{k: v for k, v in options.items() if v is not None}}
        return self._post("/datasets", body, idempotency_key)

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._get(f"/datasets/{dataset_id}")

    def datasets(self) -> list[dict[str, Any]]:
        return self._all("/datasets")

    # -- models --------------------------------------------------------------------------------

    def train(self, dataset_id: str, class_name: str, generator: str, steps: int, seed: int = 0, *,
              mask: bool = False, config: dict[str, Any] | None = None,
              idempotency_key: str | None = None) -> dict[str, Any]:
        """Start training; returns ``{"model_id", "job_id", "status"}``."""
        body = {"dataset_id": dataset_id, "class_name": class_name, "generator": generator, "steps": int(steps),
                "seed": int(seed), "mask": bool(mask), "config": config or {}}
        return self._post("/models", body, idempotency_key)

    def model(self, model_id: str) -> dict[str, Any]:
        return self._get(f"/models/{model_id}")

    def models(self) -> list[dict[str, Any]]:
        return self._all("/models")

    # -- cohorts -------------------------------------------------------------------------------

    def request_cohort(self, model_id: str | None = None, dataset_id: str | None = None,
                       class_name: str | None = None, generator: str | None = None, *, count: int = 100,
                       seed: int = 0, format: str = "png", train_steps: int | None = None,
                       config: dict[str, Any] | None = None, validation: dict[str, Any] | None = None,
                       idempotency_key: str | None = None) -> dict[str, Any]:
        """Ask for a validated cohort from ``model_id``, or train one first from dataset_id +
        class_name + generator + train_steps. ``validation``: overrides of the validation config
        (what a non-admin key may change is ``validation.policy``'s). Returns the cohort object
        (with ``job_id``)."""
        body: dict[str, Any] = {"count": int(count), "seed": int(seed), "format": format}
        if model_id is not None:
            body["model_id"] = model_id
        for key, value in (("dataset_id", dataset_id), ("class_name", class_name), ("generator", generator),
                           ("train_steps", train_steps), ("config", config), ("validation", validation)):
            if value is not None:
                body[key] = value
        return self._post("/cohorts", body, idempotency_key)

    def cohort(self, cohort_id: str) -> dict[str, Any]:
        return self._get(f"/cohorts/{cohort_id}")

    def cohorts(self) -> list[dict[str, Any]]:
        return self._all("/cohorts")

    def report(self, cohort_id: str) -> dict[str, Any]:
        """The validation report (``verdict``, ``metrics``, per-sample ``flags``...)."""
        return self._get(f"/cohorts/{cohort_id}/report")

    def samples(self, cohort_id: str, state: str | None = None) -> list[dict[str, Any]]:
        return self._all(f"/cohorts/{cohort_id}/samples", state=state)

    def flagged(self, cohort_id: str) -> list[dict[str, Any]]:
        """Samples waiting for a reviewer (state ``held``)."""
        return self.samples(cohort_id, state="held")

    def review(self, cohort_id: str, index: int, decision: str, reason: str = "", *,
               reason_code: str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        """Approve (→ released) or reject a held sample, or reset a decided one (→ held again);
        needs a reviewer or admin key. ``reason_code`` (reject only): near_copy, artefact,
        implausible_anatomy, wrong_class or other (then say why in ``reason``)."""
        if decision not in ("approve", "reject", "reset"):
            raise InvalidInputError(f"{decision!r} is not approve, reject or reset", field="decision")
        body: dict[str, Any] = {"decision": decision, "reason": reason}
        if reason_code is not None:
            body["reason_code"] = reason_code
        return self._post(f"/cohorts/{cohort_id}/samples/{int(index)}/review", body, idempotency_key)

    def reviews(self, cohort_id: str) -> list[dict[str, Any]]:
        """The cohort's audit trail: every decision (who, when, why), newest first."""
        return self._all(f"/cohorts/{cohort_id}/reviews")

    # -- jobs ----------------------------------------------------------------------------------

    def job(self, job_id: str) -> dict[str, Any]:
        return self._get(f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/jobs/{job_id}/cancel").json()

    def wait(self, job_id: str, timeout: float = 3600.0, poll: float = 2.0,
             progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Poll until the job succeeds (returns it); raise :class:`JobFailed` when it fails or
        is cancelled, :class:`JobTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + float(timeout)
        while True:
            job = self.job(job_id)
            if progress is not None:
                progress(Progress(stage=job.get("stage") or job["status"], step=int(round(job.get("percent") or 0)),
                                  total=100, metrics=dict(job.get("metrics") or {}), eta_s=job.get("eta_s")))
            status = job["status"]
            if status == "succeeded":
                return job
            if status in ("failed", "cancelled"):
                why = job.get("error") or "no error recorded"
                raise JobFailed(f"job {job_id} {status} at stage {job.get('stage')!r}: {why}", job)
            if time.monotonic() >= deadline:
                raise JobTimeout(f"job {job_id} still {status} ({job.get('percent', 0):.0f}%) after {timeout:g} s", job)
            time.sleep(max(0.0, min(float(poll), deadline - time.monotonic())))

    # -- download ------------------------------------------------------------------------------

    def download(self, cohort_id: str, dest_dir: str | Path, format: str = "png", archive: str = "zip") -> Path:
        """Download the released samples into ``dest_dir / "<cohort_id>-<format>"`` and return it.

        The archive is streamed to a temporary file, extracted beside the target, checked
        against ``SHA256SUMS`` (every file listed and matching, none unlisted), and renamed into
        place (replacing an older download of the same cohort and format). A mismatch raises
        :class:`ChecksumError` and leaves nothing behind.
        """

        dest_dir = Path(dest_dir).expanduser()
        dest_dir.mkdir(parents=True, exist_ok=True)
        final = dest_dir / f"{cohort_id}-{format}"
        tag = uuid.uuid4().hex[:12]
        suffix = ARCHIVE_SUFFIX.get(archive)
        if suffix is None:
            raise InvalidInputError(f"{archive!r} is not zip, tar or tar.gz", field="archive")
        part = dest_dir / f".{final.name}.{tag}.part{suffix}"
        staging = dest_dir / f".{final.name}.{tag}.tmp"
        try:
            with open(part, "wb") as out:
                for block in self._stream(f"/cohorts/{cohort_id}/download", {"format": format, "archive": archive}):
                    out.write(block)
            staging.mkdir()
            extract_archive(part, staging)
            verify_sha256sums(staging)
            _replace_dir(staging, final)
        finally:
            part.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def _stream(self, path: str, params: dict[str, Any]) -> Iterator[bytes]:
        """GET a streamed body (retried only before the first byte arrives)."""
        started = False
        for attempt in range(self.retries + 1):
            try:
                with self._http.stream("GET", path, params=params) as response:
                    if response.status_code in RETRY_STATUSES and attempt < self.retries:
                        time.sleep(self.backoff_s * 2**attempt)
                        continue
                    if response.status_code >= 400:
                        response.read()
                        raise _error_from(response)
                    for block in response.iter_bytes():
                        started = True
                        yield block
                    return
            except httpx.TransportError as exc:
                if attempt < self.retries and not started:
                    time.sleep(self.backoff_s * 2**attempt)
                    continue
                raise ApiUnavailable(f"download from {self.base_url} failed ({type(exc).__name__}: {exc})",
                                     status=None) from exc


def verify_sha256sums(folder: str | Path) -> int:
    """Check every file under ``folder`` against its ``SHA256SUMS`` (sha256sum format): each
    listed file exists and matches, and no file is unlisted. Returns the number checked."""

    folder = Path(folder)
    sums = folder / SUMS_FILE
    if not sums.is_file():
        raise ChecksumError("the archive has no SHA256SUMS", path=folder)
    expected: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition(" ")
        name = name[1:] if name[:1] in (" ", "*") else name
        if not sep or len(digest) != 64 or not name:
            raise ChecksumError(f"line {n} is not '<sha256>  <file>'", path=sums)
        expected[name] = digest.lower()
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {SUMS_FILE}
    unlisted = sorted(present - set(expected))
    if unlisted:
        raise ChecksumError(f"{len(unlisted)} file(s) not in SHA256SUMS, first {unlisted[0]!r}", path=folder)
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise ChecksumError("listed in SHA256SUMS but missing", path=path)
        if sha256_file(path) != digest:
            raise ChecksumError("sha256 does not match SHA256SUMS (corrupt or altered download)", path=path)
    return len(expected)


def _replace_dir(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final``; an existing ``final`` is moved aside first, then removed."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.old")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
