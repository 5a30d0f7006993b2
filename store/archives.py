"""Safe extraction of uploaded ``.zip`` / ``.tar`` / ``.tar.gz`` archives.

An archive is untrusted: a member may try to escape the target folder (absolute path, ``..``),
point elsewhere (symlink, hard link), be a device or FIFO, or expand to far more bytes than its
header says (a "zip bomb"). Every member is checked before anything is written, and bytes are
counted while streaming, so header sizes are not trusted either. Errors name the member.
"""

from __future__ import annotations

import lzma
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from synthcohort.core.errors import InvalidInputError, TooLargeError
from synthcohort.core.settings import get_settings

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_CHUNK = 1 << 20
MAX_NAME_BYTES = 255  # one path component (NAME_MAX of common file systems)
MAX_PATH_BYTES = 1024  # a member's whole relative path; well under PATH_MAX with the target in front
# What reading a damaged or exotic member may raise: decompressors, encryption, unknown methods.
_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, RuntimeError, NotImplementedError,
                ValueError, zlib.error, lzma.LZMAError)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _refuse(archive: Path, name: str, reason: str) -> InvalidInputError:
    return InvalidInputError(f"archive member {name!r} {reason}", path=archive, member=name)


def _safe_member_path(archive: Path, name: str) -> PurePosixPath:
    """The relative path a member may be written to, or an error naming it."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise _refuse(archive, name, "has a control character (NUL, newline...) in its name")
    clean = name.replace("\\", "/")
    p = PurePosixPath(clean)
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise _refuse(archive, name, "has an absolute path")
    if ".." in p.parts:
        raise _refuse(archive, name, "points outside the archive ('..')")
    parts = [s for s in p.parts if s not in ("", ".")]
    if not parts:
        raise _refuse(archive, name, "has an empty name")
    sizes = [len(part.encode("utf-8", "surrogateescape")) for part in parts]
    if max(sizes) > MAX_NAME_BYTES:
        raise _refuse(archive, name, f"has a folder or file name longer than {MAX_NAME_BYTES} bytes")
    if sum(sizes) + len(sizes) > MAX_PATH_BYTES:
        raise _refuse(archive, name, f"has a path longer than {MAX_PATH_BYTES} bytes")
    return PurePosixPath(*parts)


class _Layout:
    """The tree the members make, checked before writing: a name twice, or a file where
    another member needs a folder (``x`` and then ``x/y.png``), is refused naming the member."""

    def __init__(self, archive: Path):
        self.archive = archive
        self.files: set[PurePosixPath] = set()
        self.dirs: set[PurePosixPath] = set()

    def add(self, name: str, rel: PurePosixPath, is_dir: bool) -> None:
        if rel in self.files:
            raise _refuse(self.archive, name, "appears twice in the archive" if not is_dir
                          else "is a folder and also a file of the archive")
        if not is_dir and rel in self.dirs:
            raise _refuse(self.archive, name, "is a file and also a folder of other members")
        parents = [q for q in rel.parents if q != PurePosixPath(".")]
        for parent in parents:
            if parent in self.files:
                raise _refuse(self.archive, name, f"lies inside {str(parent)!r}, which is a file of the archive")
        (self.dirs if is_dir else self.files).add(rel)
        self.dirs.update(parents)


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
                path=self.archive, member=name,
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
                        path=self.archive, member=name,
                    )
                if self.total > self.max_total:
                    raise TooLargeError(
                        f"archive expands past {self.max_total} bytes at member {name!r} (max_upload_bytes)",
                        path=self.archive, member=name,
                    )
                out.write(block)


def _write_member(archive: Path, target: Path, name: str, rel: PurePosixPath, is_dir: bool, copy) -> None:
    """Make the member's folder or file; any file-system or decoder error names the member."""
    dst = target.joinpath(*rel.parts)
    try:
        if is_dir:
            dst.mkdir(parents=True, exist_ok=True)
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        copy(dst)
    except _READ_ERRORS as exc:
        raise _refuse(archive, name, f"cannot be extracted ({type(exc).__name__}: {exc})".replace(str(target), "")
                      ) from exc


def _empty(target: Path) -> None:
    """Remove what a failed extraction wrote, without raising a second error over the first."""
    for child in list(target.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


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
        _empty(target)
        raise
    return target


def _extract_zip(archive: Path, target: Path) -> None:
    budget = _Budget(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except _READ_ERRORS as exc:
        raise InvalidInputError(f"is not a readable zip archive ({exc})", path=archive) from exc
    with zf:
        infos = zf.infolist()
        declared = 0
        tree = _Layout(archive)
        members = []
        for info in infos:  # check everything before writing anything
            rel = _safe_member_path(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _refuse(archive, info.filename, "is a symbolic link")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no Unix type recorded
                raise _refuse(archive, info.filename, "is not a regular file")
            if info.flag_bits & 0x1:
                raise _refuse(archive, info.filename, "is encrypted")
            is_dir = info.is_dir() or stat.S_ISDIR(mode)
            tree.add(info.filename, rel, is_dir)
            if not is_dir:
                budget.check_declared(info.filename, info.file_size)
                declared += info.file_size
            members.append((info, rel, is_dir))
        if declared > budget.max_total:
            raise TooLargeError(
                f"archive declares {declared} bytes, over the limit of {budget.max_total} (max_upload_bytes)",
                path=archive,
            )
        for info, rel, is_dir in members:
            def copy(dst: Path, info: zipfile.ZipInfo = info) -> None:
                with zf.open(info) as src:
                    budget.copy(info.filename, src, dst)

            _write_member(archive, target, info.filename, rel, is_dir, copy)


def _extract_tar(archive: Path, target: Path) -> None:
    budget = _Budget(archive)
    try:
        tf = tarfile.open(archive, mode="r:*")
    except _READ_ERRORS as exc:
        raise InvalidInputError(f"is not a readable tar archive ({exc})", path=archive) from exc
    with tf:
        try:
            members = tf.getmembers()
        except _READ_ERRORS as exc:
            raise InvalidInputError(f"tar archive is corrupt or truncated ({exc})", path=archive) from exc
        declared = 0
        tree = _Layout(archive)
        for m in members:
            rel = _safe_member_path(archive, m.name)
            if m.issym() or m.islnk():
                kind = "symbolic" if m.issym() else "hard"
                raise _refuse(archive, m.name, f"is a {kind} link")
            if not (m.isfile() or m.isdir()):
                raise _refuse(archive, m.name, "is a device, FIFO or special file")
            tree.add(m.name, rel, m.isdir())
            if m.isfile():
                budget.check_declared(m.name, m.size)
                declared += m.size
        if declared > budget.max_total:
            raise TooLargeError(
                f"archive declares {declared} bytes, over the limit of {budget.max_total} (max_upload_bytes)",
                path=archive,
            )
        for m in members:
            def copy(dst: Path, m: tarfile.TarInfo = m) -> None:
                src = tf.extractfile(m)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise OSError("no data")
                with src:
                    budget.copy(m.name, src, dst)

            _write_member(archive, target, m.name, _safe_member_path(archive, m.name), m.isdir(), copy)
