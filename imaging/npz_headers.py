"""What an ``.npz`` would expand to, read from the ``.npy`` headers inside the zip before any
array is decompressed: ``np.load`` inflates a member without a bound, so 62 KB of zeros can
become gigabytes. Every member's shape × dtype is checked against ``max_file_bytes`` and the
sum against ``max_upload_bytes``; pickled (object) arrays are refused too."""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from synthcohort.core.errors import InvalidInputError, TooLargeError
from synthcohort.core.settings import get_settings


@dataclass(frozen=True)
class NpyHeader:
    """One member of an npz: its name, shape, dtype and expanded size in bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def read_headers(path: Path) -> list[NpyHeader]:
    """The header of every member; an unreadable zip or header is an error naming the member."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise InvalidInputError(f"is not a readable .npz: corrupt or truncated ({exc})", path=path) from exc
    headers = []
    with zf:
        if not zf.namelist():
            raise InvalidInputError("the .npz holds no arrays", path=path)
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise InvalidInputError(f"member {name!r} of the .npz is not an .npy array", path=path, member=name)
            try:
                with zf.open(info) as f:
                    version = npy_format.read_magic(f)
                    read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                    shape, _fortran, dtype = read(f, max_header_size=10_000)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError,
                    zlib.error) as exc:
                raise InvalidInputError(f"member {name!r} has no readable .npy header: corrupt or truncated "
                                        f"({exc})", path=path, member=name) from exc
            if dtype.hasobject:
                raise InvalidInputError(f"array {name!r} holds Python objects (pickle); not accepted", path=path,
                                        member=name)
            headers.append(NpyHeader(name, tuple(shape), dtype, math.prod(shape) * dtype.itemsize))
    return headers


def check_npz(path: Path, *, max_member_bytes: int | None = None, max_total_bytes: int | None = None) -> None:
    """Refuse (413, naming the member) an npz whose arrays would expand past the limits."""
    s = get_settings()
    max_member = s.max_file_bytes if max_member_bytes is None else max_member_bytes
    max_total = s.max_upload_bytes if max_total_bytes is None else max_total_bytes
    total = 0
    for h in read_headers(path):
        if h.nbytes > max_member:
            raise TooLargeError(f"array {h.name!r} {h.shape} of {h.dtype} expands to {h.nbytes} bytes, over the "
                                f"limit of {max_member} (max_file_bytes)", path=path, member=h.name)
        total += h.nbytes
        if total > max_total:
            raise TooLargeError(f"the .npz's arrays expand past {max_total} bytes at {h.name!r} (max_upload_bytes)",
                                path=path, member=h.name)
