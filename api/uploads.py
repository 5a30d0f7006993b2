"""Receiving uploads: the multipart body is parsed as it streams in and the file part written
straight to ``<data root>/uploads/<id>/`` while its bytes are counted, so an oversized upload
is refused (413) as soon as it passes ``max_upload_bytes`` — never spooled whole to /tmp or
memory first, as Starlette's form parser would — and its partial file is removed.

:func:`check_upload` then vets the file synchronously, before any job exists: an archive is
extracted with the very checks the import uses (:func:`store.archives.extract_archive`:
path traversal, links, special files, zip bombs) into a scratch folder that is thrown away; an
``.npz`` must hold readable ``.npy`` members without pickled objects.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from synthcohort.api.errors import BadRequest
from synthcohort.core import layout
from synthcohort.core.errors import InvalidInputError, SynthcohortError, TooLargeError
from synthcohort.core.settings import get_settings
from synthcohort.imaging.header_checks import check_dicom_header, check_nifti_header
from synthcohort.imaging.npz_headers import check_npz
from synthcohort.imaging.readers import is_dicom, is_nifti
from synthcohort.store.archives import ARCHIVE_SUFFIXES, extract_archive

UPLOAD_SUFFIXES = (*ARCHIVE_SUFFIXES, ".npz")
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
FORM_OVERHEAD_BYTES = 256 * 1024  # headers and small form fields around the file part


def uploads_dir() -> Path:
    return layout.uploads_dir()


@dataclass
class ReceivedUpload:
    """What came in: form fields, and the file on disk (``path``) with its client-side name."""

    folder: Path
    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    size: int = 0
    sha256: str = ""

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def upload_suffix(filename: str) -> str:
    """The recognised suffix of an uploaded file name (``.tar.gz`` counts as one)."""
    lower = filename.lower()
    for suffix in sorted(UPLOAD_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return suffix
    raise InvalidInputError(
        f"{filename!r} is not an accepted upload; send a MedMNIST .npz or an archive "
        f"({', '.join(ARCHIVE_SUFFIXES)})", field="file",
    )


def stored_name(client_name: str) -> str:
    """The client's file name reduced to safe characters, suffix kept. The import records the
    archive's name in the dataset's source (part of its content id), so an upload and a CLI
    import of the same file give the same dataset id."""
    suffix = upload_suffix(client_name)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", client_name[: -len(suffix)]).lstrip(".")
    return f"{stem or 'upload'}{suffix}"


class _FormSink:
    """python-multipart callbacks: fields into a dict, the file part into a counted file."""

    def __init__(self, upload: ReceivedUpload, max_bytes: int):
        self.upload = upload
        self.max_bytes = max_bytes
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[str, bytes] = {}
        self.name: str | None = None
        self.buffer: bytearray | None = None
        self.out = None
        self.digest = hashlib.sha256()

    def on_part_begin(self) -> None:
        self.headers, self.name, self.buffer, self.out = {}, None, None, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise BadRequest("a multipart part has no name", field="file")
        self.name = name.decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise BadRequest(f"more than {MAX_FIELDS} form fields", field=self.name)
            self.buffer = bytearray()
            return
        if self.name != "file":
            raise InvalidInputError(f"unexpected file part {self.name!r}; send the data as 'file'", field=self.name)
        if self.upload.path is not None:
            raise InvalidInputError("send one file per upload", field="file")
        client_name = PurePath(filename.decode("utf-8", "replace").replace("\\", "/")).name or "upload"
        self.upload.filename = client_name
        self.upload.path = self.upload.folder / stored_name(client_name)
        self.out = open(self.upload.path, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.out is not None:
            self.upload.size += len(chunk)
            if self.upload.size > self.max_bytes:
                raise TooLargeError(
                    f"upload exceeds the limit of {self.max_bytes} bytes (max_upload_bytes)", field="file"
                )
            self.digest.update(chunk)
            self.out.write(chunk)
        elif self.buffer is not None:
            self.buffer += chunk
            if len(self.buffer) > MAX_FIELD_BYTES:
                raise BadRequest(f"form field is longer than {MAX_FIELD_BYTES} bytes", field=self.name)

    def on_part_end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
            self.upload.sha256 = self.digest.hexdigest()
        elif self.buffer is not None and self.name is not None:
            self.upload.fields[self.name] = self.buffer.decode("utf-8", "replace")
            self.buffer = None

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


async def receive_multipart(request: Request, *, max_bytes: int | None = None) -> ReceivedUpload:
    """Stream a multipart/form-data body to disk; 413 past ``max_bytes`` (default the setting)."""
    max_bytes = get_settings().max_upload_bytes if max_bytes is None else max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + FORM_OVERHEAD_BYTES:
        raise TooLargeError(f"upload of {declared} bytes exceeds the limit of {max_bytes} bytes "
                            "(max_upload_bytes)", field="file")
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary", field="Content-Type")
    folder = uploads_dir() / secrets.token_hex(12)
    folder.mkdir(parents=True)
    upload = ReceivedUpload(folder=folder)
    sink = _FormSink(upload, max_bytes)
    parser = MultipartParser(boundary, {
        "on_part_begin": sink.on_part_begin, "on_header_field": sink.on_header_field,
        "on_header_value": sink.on_header_value, "on_header_end": sink.on_header_end,
        "on_headers_finished": sink.on_headers_finished, "on_part_data": sink.on_part_data,
        "on_part_end": sink.on_part_end,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if upload.path is None:
            raise InvalidInputError("no file part named 'file' in the upload", field="file")
        if upload.size == 0:
            raise InvalidInputError("the uploaded file is empty", field="file")
    except SynthcohortError:
        sink.close()
        upload.discard()
        raise
    except Exception as exc:  # malformed multipart framing
        sink.close()
        upload.discard()
        raise BadRequest(f"malformed multipart body ({type(exc).__name__}: {exc})", field="file") from exc
    return upload


def check_upload(upload: ReceivedUpload) -> None:
    """Vet the received file before a job is made; errors name the client's file name and the
    member at fault, never the server's path."""
    assert upload.path is not None
    try:
        if upload.path.name.endswith(".npz"):
            _check_npz(upload.path)
        else:
            _check_archive(upload.path, upload.folder / "check")
    except SynthcohortError as exc:
        reason = exc.reason.replace(str(upload.folder / "check") + "/", "").replace(str(upload.path), "the upload")
        raise type(exc)(reason, path=upload.filename, field=exc.field or "file", member=exc.member) from None


def _check_archive(archive: Path, scratch: Path) -> None:
    """Extract with the import's own checks, then read each NIfTI/DICOM header (cheap)."""
    scratch.mkdir()
    try:
        extract_archive(archive, scratch)
        files = [p for p in scratch.rglob("*") if p.is_file()]
        if not files:
            raise InvalidInputError("the archive holds no files", path=archive)
        for f in files:
            try:
                if is_nifti(f):
                    check_nifti_header(f)
                elif is_dicom(f):
                    check_dicom_header(f)
            except SynthcohortError as exc:
                raise type(exc)(exc.reason, path=archive, member=f.relative_to(scratch).as_posix()) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_npz(path: Path) -> None:
    """Each member must be an ``.npy`` without pickled objects whose header's shape × dtype
    fits the limits; checked before anything is decompressed."""
    check_npz(path)
