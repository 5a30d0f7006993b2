"""Safe extraction of uploaded ``.zip`` / ``.tar`` / ``.tar.gz`` archives.

An archive is untrusted: a member may try to escape the target folder (absolute path, ``..``),
point elsewhere (symlink, hard link), be a device or FIFO, or expand to far more bytes than its
header says (a "zip bomb"). Every member is checked before anything is written, and bytes are
counted while streaming, so header sizes are not trusted either. Errors name the member.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from synthcohort.core.errors import InvalidInputError, TooLargeError
from synthcohort.core.settings import get_settings

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_CHUNK = 1 << 20


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _safe_member_path(archive: Path, name: str) -> PurePosixPath:
    """The relative path a member may be written to, or an error naming it."""
    clean = name.replace("\\", "/")
    p = PurePosixPath(clean)
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise InvalidInputError(f"archive member {name!r} has an absolute path", path=archive)
    if ".." in p.parts:
        raise InvalidInputError(f"archive member {name!r} points outside the archive ('..')", path=archive)
    parts = [s for s in p.parts if s not in ("", ".")]
    if not parts:
        raise InvalidInputError(f"archive member {name!r} has an empty name", path=archive)
    return PurePosixPath(*parts)


class _Budget:
    """Counts extracted bytes against the per-file and total limits."""

    def __init__(self, archive: Path):
        s = get_settings()
        self.archive = archive
        self.max_file = s.max_file_bytes
        self.max_total = s.max_upload_bytes
        self.total = 0

    def check_declared(self, name: str, size: int) -> None:
        if size > self.max_file:
            raise TooLargeError(
                f"archive member {name!r} is {size} bytes, over the limit of {self.max_file} (max_file_bytes)",
                path=self.archive,
            )

    def copy(self, name: str, src, dst: Path) -> None:
        written = 0
        with open(dst, "wb") as out:
            while block := src.read(_CHUNK):
                written += len(block)
                self.total += len(block)
                if written > self.max_file:
                    raise TooLargeError(
                        f"archive member {name!r} expands past {self.max_file} bytes (max_file_bytes)",
                        path=self.archive,
                    )
                if self.total > self.max_total:
                    raise TooLargeError(
                        f"archive expands past {self.max_total} bytes at member {name!r} (max_upload_bytes)",
                        path=self.archive,
                    )
                out.write(block)


def extract_archive(archive: Path, target: Path) -> Path:
    """Extract ``archive`` into the existing empty folder ``target``; returns ``target``.

    On any error the partly extracted files are removed and the error names the member.
    """
    archive = Path(archive)
    size = archive.stat().st_size
    limit = get_settings().max_upload_bytes
    if size > limit:
        raise TooLargeError(f"archive is {size} bytes, over the limit of {limit} (max_upload_bytes)", path=archive)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, target)
        else:
            _extract_tar(archive, target)
    except BaseException:
        for child in list(target.iterdir()):
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        raise
    return target


def _extract_zip(archive: Path, target: Path) -> None:
    budget = _Budget(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInputError(f"is not a readable zip archive ({exc})", path=archive) from exc
    with zf:
        infos = zf.infolist()
        declared = 0
        for info in infos:  # check everything before writing anything
            _safe_member_path(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise InvalidInputError(f"archive member {info.filename!r} is a symbolic link", path=archive)
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no Unix type recorded
                raise InvalidInputError(f"archive member {info.filename!r} is not a regular file", path=archive)
            budget.check_declared(info.filename, info.file_size)
            declared += info.file_size
        if declared > budget.max_total:
            raise TooLargeError(
                f"archive declares {declared} bytes, over the limit of {budget.max_total} (max_upload_bytes)",
                path=archive,
            )
        for info in infos:
            rel = _safe_member_path(archive, info.filename)
            dst = target.joinpath(*rel.parts)
            if info.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src:
                    budget.copy(info.filename, src, dst)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InvalidInputError(f"archive member {info.filename!r} cannot be read ({exc})", path=archive) from exc


def _extract_tar(archive: Path, target: Path) -> None:
    budget = _Budget(archive)
    try:
        tf = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInputError(f"is not a readable tar archive ({exc})", path=archive) from exc
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidInputError(f"tar archive is corrupt or truncated ({exc})", path=archive) from exc
        declared = 0
        for m in members:
            _safe_member_path(archive, m.name)
            if m.issym() or m.islnk():
                kind = "symbolic" if m.issym() else "hard"
                raise InvalidInputError(f"archive member {m.name!r} is a {kind} link", path=archive)
            if not (m.isfile() or m.isdir()):
                raise InvalidInputError(f"archive member {m.name!r} is a device, FIFO or special file", path=archive)
            if m.isfile():
                budget.check_declared(m.name, m.size)
                declared += m.size
        if declared > budget.max_total:
            raise TooLargeError(
                f"archive declares {declared} bytes, over the limit of {budget.max_total} (max_upload_bytes)",
                path=archive,
            )
        for m in members:
            rel = _safe_member_path(archive, m.name)
            dst = target.joinpath(*rel.parts)
            if m.isdir():
                dst.mkdir(parents=True, exist_ok=True)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                src = tf.extractfile(m)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise InvalidInputError(f"archive member {m.name!r} has no data", path=archive)
                with src:
                    budget.copy(m.name, src, dst)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise InvalidInputError(f"archive member {m.name!r} cannot be read ({exc})", path=archive) from exc
