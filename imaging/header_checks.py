"""Cheap content checks of NIfTI and DICOM files from their headers, without reading the
voxels: run on an upload before a job exists (so a bad file is a 4xx at once, not a failed
job minutes later) and by the readers before they allocate (a 30000³ header would otherwise
end in a MemoryError)."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import nibabel as nib
import pydicom
from pydicom.errors import InvalidDicomError

from synthcohort.core.errors import InvalidInputError, TooLargeError
from synthcohort.core.settings import get_settings

NIFTI_HEADER_SIZES = {nib.Nifti1Header: 348, nib.Nifti2Header: 540}
_CHUNK = 1 << 20


def _expanded_limit(path: Path, nbytes: int, what: str) -> None:
    limit = get_settings().max_file_bytes
    if nbytes > limit:
        raise TooLargeError(f"{what} needs {nbytes} bytes, over the limit of {limit} (max_file_bytes)", path=path)


def check_nifti_header(path: Path) -> None:
    """The header must be NIfTI-1/2 with the right ``sizeof_hdr``, positive dimensions whose
    voxels fit ``max_file_bytes``, and the file must hold all of them (not truncated)."""
    try:
        img = nib.load(str(path))
        header = img.header
        shape = tuple(int(d) for d in header.get_data_shape())
        dtype = header.get_data_dtype()
        offset = int(header.get_data_offset())
        sizeof_hdr = _raw_sizeof_hdr(path)  # nibabel "fixes" a wrong one silently on load
    except Exception as exc:  # nibabel raises many types (ImageFileError, EOFError, zlib.error...)
        raise InvalidInputError(f"has no readable NIfTI header ({type(exc).__name__}: {exc})", path=path) from exc
    expected = NIFTI_HEADER_SIZES.get(type(header))
    if expected is None:
        raise InvalidInputError(f"is not a NIfTI-1/2 file ({type(header).__name__})", path=path)
    if sizeof_hdr not in (expected, int.from_bytes(expected.to_bytes(4, "little"), "big")):
        raise InvalidInputError(f"header says sizeof_hdr={sizeof_hdr}; a {type(header).__name__[:6]} header is "
                                f"{expected}: corrupt", path=path)
    if not shape or min(shape) <= 0:
        raise InvalidInputError(f"header has dimensions {shape}; every one must be positive", path=path)
    nbytes = math.prod(shape) * dtype.itemsize
    _expanded_limit(path, nbytes, f"a volume of {'×'.join(map(str, shape))} {dtype}")
    needed = offset + nbytes
    if path.name.lower().endswith(".gz"):
        have = _gunzipped_bytes(path, needed)
    else:
        have = path.stat().st_size
    if have < needed:
        raise InvalidInputError(f"is corrupt or truncated: its header needs {needed} bytes of data, "
                                f"the file has {have}", path=path)


def _raw_sizeof_hdr(path: Path) -> int:
    """The header's first field as written (in the file's byte order, little read first)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        return int.from_bytes(f.read(4), "little")


def _gunzipped_bytes(path: Path, needed: int) -> int:
    """How many bytes the gzip stream gives, reading no further than ``needed``."""
    have = 0
    try:
        with gzip.open(path, "rb") as f:
            while have < needed and (block := f.read(min(_CHUNK, needed - have))):
                have += len(block)
    except (OSError, EOFError, zlib.error):
        pass  # truncated or corrupt: what came out so far is what the file holds
    return have


def check_dicom_header(path: Path) -> None:
    """The header must parse (pixels not read), and for uncompressed pixel data the file must
    hold rows × columns × samples × bits × frames bytes after it."""
    try:
        with open(path, "rb") as f:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            header_end = f.tell()
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, AttributeError, TypeError) as exc:
        raise InvalidInputError(f"has no readable DICOM header ({type(exc).__name__}: {exc})", path=path) from exc
    rows, cols = getattr(ds, "Rows", None), getattr(ds, "Columns", None)
    if rows is None or cols is None:
        raise InvalidInputError("DICOM header has no Rows/Columns: not an image", path=path)
    try:
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        nbytes = (int(rows) * int(cols) * int(getattr(ds, "SamplesPerPixel", 1) or 1) * frames
                  * math.ceil(int(getattr(ds, "BitsAllocated", 16) or 16) / 8))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"DICOM header has unusable image dimensions ({exc})", path=path) from exc
    _expanded_limit(path, nbytes, f"pixel data of {rows}×{cols}×{frames}")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and getattr(syntax, "is_compressed", False):
        return  # compressed frames: their size says nothing; the reader decodes them
    have = path.stat().st_size - header_end
    if have < nbytes:
        raise InvalidInputError(f"is corrupt or truncated: pixel data needs {nbytes} bytes, the file has "
                                f"{max(have, 0)} after the header", path=path)
