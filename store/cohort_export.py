"""Stream the released samples of a cohort as one archive (zip or tar), converted on the fly.

Why streamed: a 3D cohort of thousands of volumes is gigabytes; the API sends it while it is
written, and memory must not grow with the cohort. Each member is written in pieces of at most
:data:`CHUNK_BYTES` into a small non-seekable buffer that is drained (yielded) after every
piece. zip uses data descriptors (``zipfile`` on a non-seekable file object); tar headers come
from ``tarfile.TarInfo`` and the stream is written here, gzip through ``gzip.GzipFile`` with
mtime 0 so archives are reproducible byte for byte.

Every archive holds, besides ``images/`` (and ``masks/``):

- ``manifest.csv``: file, mask_file, class, label, index, seed, model_id, checkpoint_sha256
  and one ``score_<name>`` column per validation score;
- ``datalist.json``: MONAI decathlon style, ``{"training": [{"image", "label", "mask"?}]}``,
  readable with ``monai.data.load_decathlon_datalist(path, is_segmentation=False)``;
- ``provenance.json``: the ``provenance`` argument (plus ``code_version`` when it has none);
- ``SHA256SUMS``: ``sha256sum -c`` format over every other member; written last.

Format ``npz`` puts all samples in one ``cohort.npz`` (``images`` float32 (N, C, *S),
``labels`` int64, ``index`` int64, ``masks`` uint8 if any). It is built in a temporary file
(``.npy`` members streamed sample by sample, so memory stays bounded) and then streamed.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import nibabel as nib
import numpy as np

from synthcohort.core.errors import InvalidInputError, NotFoundError
from synthcohort.core.version import code_version
from synthcohort.imaging.dicom_writer import encode_dicom_series
from synthcohort.imaging.sample_files import is_volume_file, png_bytes, read_sample_file
from synthcohort.store.datasets import DatasetStore

Format = Literal["png", "nifti", "dicom", "npz"]
ArchiveKind = Literal["zip", "tar", "tar.gz"]
FORMATS = ("png", "nifti", "dicom", "npz")
ARCHIVES = ("zip", "tar", "tar.gz")
ARCHIVE_SUFFIX = {"zip": ".zip", "tar": ".tar", "tar.gz": ".tar.gz"}
MEDIA_TYPE = {"zip": "application/zip", "tar": "application/x-tar", "tar.gz": "application/gzip"}
CHUNK_BYTES = 256 * 1024
# Fixed member timestamp (1980-01-01, the earliest zip can hold): same cohort, same archive bytes.
_EPOCH = 315532800
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
MANIFEST_COLUMNS = ["file", "mask_file", "class", "label", "index", "seed", "model_id", "checkpoint_sha256"]


@dataclass
class ReleasedSample:
    """One sample the API may hand out (state ``released``); paths relative to the sample dir."""

    index: int
    file: str
    mask_file: str | None
    class_name: str
    seed: int
    model_id: str
    checkpoint_sha256: str
    scores: dict[str, Any] = field(default_factory=dict)


def archive_filename(cohort_id: str, archive: str) -> str:
    """The download's file name, e.g. ``coh-1a2b.zip``."""
    _check_choice(archive, ARCHIVES, "archive")
    return f"{cohort_id}{ARCHIVE_SUFFIX[archive]}"


def stream_archive(
    samples_dir: Path,
    released: Sequence[ReleasedSample],
    *,
    fmt: Format,
    archive: ArchiveKind,
    provenance: dict[str, Any],
    class_labels: Mapping[str, int] | None = None,
) -> Iterator[bytes]:
    """Yield the archive of ``released`` (only those) in ``fmt``, piece by piece.

    Labels, modality, 2D spacing and the DICOM value range come from ``provenance`` keys
    ``classes`` (class names in label order), ``modality``, ``spacing`` and ``normalisation``;
    whatever is missing is read from the dataset version ``provenance["dataset_id"]``.
    ``class_labels`` overrides the class → label map. Bad arguments raise
    :class:`InvalidInputError` before the first byte is yielded.
    """
    _check_choice(fmt, FORMATS, "format")
    _check_choice(archive, ARCHIVES, "archive")
    samples_dir = Path(samples_dir)
    samples = sorted(released, key=lambda s: int(s.index))
    if len({s.index for s in samples}) != len(samples):
        raise InvalidInputError("the same sample index is listed twice", field="released")
    ctx = _ExportContext.resolve(provenance, samples, class_labels)
    for s in samples:  # fail before streaming rather than mid-archive
        for rel in filter(None, (s.file, s.mask_file)):
            if not (samples_dir / rel).is_file():
                raise NotFoundError("released sample file is missing", path=samples_dir / rel)
    if fmt == "png" and samples and is_volume_file(samples[0].file):
        raise InvalidInputError("PNG holds 2D images only; use nifti, dicom or npz for 3D", field="format")
    return _stream(samples_dir, samples, fmt, archive, provenance, ctx)


def _stream(
    samples_dir: Path, samples: list[ReleasedSample], fmt: str, archive: str,
    provenance: dict[str, Any], ctx: _ExportContext,
) -> Iterator[bytes]:
    sink = _Sink()
    writer: _ZipWriter | _TarWriter = _ZipWriter(sink) if archive == "zip" else _TarWriter(sink, gz=archive == "tar.gz")
    # Per-sample text goes to spools (on disk past CHUNK_BYTES), so it does not grow memory either.
    sums, manifest, datalist = _Spool(), _Spool(), _Spool()

    def emit(name: str, pieces: Iterable[bytes], size: int, compress: bool) -> Iterator[bytes]:
        digest = hashlib.sha256()
        member = writer.open(name, size, compress)
        for piece in pieces:
            digest.update(piece)
            member.write(piece)
            if len(sink) >= CHUNK_BYTES:
                yield sink.drain()
        writer.close(member)
        sums.write(f"{digest.hexdigest()}  {name}\n")
        if len(sink) >= CHUNK_BYTES:
            yield sink.drain()

    with sums, manifest, datalist:
        columns = _manifest_columns(samples, npz=fmt == "npz")
        rows = csv.DictWriter(manifest, fieldnames=columns, restval="", lineterminator="\n")
        rows.writeheader()
        datalist.write(_datalist_head(ctx, fmt, len(samples), volumes=bool(samples) and is_volume_file(samples[0].file)))
        if fmt == "npz":
            with tempfile.TemporaryFile() as tmp:
                _write_npz(tmp, samples_dir, samples, ctx)
                size = tmp.seek(0, os.SEEK_END)
                tmp.seek(0)
                yield from emit("cohort.npz", iter(lambda: tmp.read(CHUNK_BYTES), b""), size, compress=False)
            for i, s in enumerate(samples):
                row = _row(s, "cohort.npz", "cohort.npz" if s.mask_file else "", ctx, npz_row=i)
                rows.writerow(row)
                datalist.write(_datalist_item(row, first=i == 0))
        else:
            for i, s in enumerate(samples):
                image_name, members = _convert(samples_dir, s, fmt, ctx, kind="images")
                mask_name = ""
                if s.mask_file:
                    mask_name, mask_members = _convert(samples_dir, s, fmt, ctx, kind="masks")
                    members += mask_members
                for name, data in members:
                    yield from emit(name, _pieces(data), len(data), compress=fmt == "dicom")
                row = _row(s, image_name, mask_name, ctx)
                rows.writerow(row)
                datalist.write(_datalist_item(row, first=i == 0))
        datalist.write("\n  ]\n}\n")
        yield from emit("manifest.csv", manifest.pieces(), manifest.size, compress=True)
        yield from emit("datalist.json", datalist.pieces(), datalist.size, compress=True)
        record = {"code_version": code_version(), **provenance}
        data = (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
        yield from emit("provenance.json", _pieces(data), len(data), compress=True)
        member = writer.open("SHA256SUMS", sums.size, True)  # not listed in itself
        for piece in sums.pieces():
            member.write(piece)
            if len(sink) >= CHUNK_BYTES:
                yield sink.drain()
        writer.close(member)
    writer.finish()
    if len(sink):
        yield sink.drain()


# --- what goes in ------------------------------------------------------------------------------


@dataclass
class _ExportContext:
    labels: dict[str, int]
    classes: list[str]
    modality: str | None
    spacing_2d: tuple[float, float] | None
    value_range: tuple[float, float]
    dataset_id: str | None

    @classmethod
    def resolve(
        cls, provenance: dict[str, Any], samples: Sequence[ReleasedSample], class_labels: Mapping[str, int] | None
    ) -> _ExportContext:
        if not isinstance(provenance, dict):
            raise InvalidInputError("must be a JSON object", field="provenance")
        dataset_id = provenance.get("dataset_id")
        classes = provenance.get("classes")
        modality = provenance.get("modality")
        spacing = provenance.get("spacing")
        normalisation = provenance.get("normalisation")
        missing = (class_labels is None and classes is None, modality is None, spacing is None, normalisation is None)
        if any(missing) and dataset_id:
            meta = _dataset_meta(str(dataset_id))
            if meta is not None:
                classes = classes if classes is not None else list(meta.classes)
                modality = modality if modality is not None else meta.modality
                spacing = spacing if spacing is not None else meta.spacing
                normalisation = normalisation if normalisation is not None else meta.normalisation
        if class_labels is not None:
            labels = {str(k): int(v) for k, v in class_labels.items()}
        elif classes is not None:
            labels = {str(c): i for i, c in enumerate(classes)}
        else:
            raise InvalidInputError(
                "names neither 'classes' nor a known 'dataset_id'; cannot give samples a label",
                field="provenance",
            )
        for s in samples:
            if s.class_name not in labels:
                raise InvalidInputError(
                    f"sample {s.index} has class {s.class_name!r}, not one of {sorted(labels)}", field="class"
                )
        spacing_2d = None
        if spacing is not None and len(spacing) >= 2:
            spacing_2d = (float(spacing[-2]), float(spacing[-1]))
        ordered = sorted(labels, key=labels.__getitem__)
        return cls(labels, ordered, modality, spacing_2d, _value_range(normalisation), dataset_id)


def _dataset_meta(dataset_id: str):
    """The dataset's metadata from the store, or None where it is not on this machine."""
    try:

        return DatasetStore().get(dataset_id).meta
    except (ImportError, NotFoundError):
        return None


def _value_range(normalisation: Mapping[str, Any] | None) -> tuple[float, float]:
    """What stored 0 and 1 meant in the source's units, so DICOM rescale gives them back:
    a CT window gives Hounsfield units, ``divide`` the raw pixel scale; else [0, 1]."""
    if not normalisation:
        return (0.0, 1.0)
    method = normalisation.get("method")
    if method == "window":
        width, level = float(normalisation["width"]), float(normalisation["level"])
        return (level - width / 2.0, level + width / 2.0)
    if method == "divide":
        return (0.0, float(normalisation["divisor"]))
    return (0.0, 1.0)


def _sample_id(s: ReleasedSample) -> str:
    return f"{s.model_id}-{int(s.index):06d}"[-64:]


def _convert(
    samples_dir: Path, s: ReleasedSample, fmt: str, ctx: _ExportContext, *, kind: str
) -> tuple[str, list[tuple[str, bytes]]]:
    """Members for one image (kind "images") or its mask ("masks"): (datalist path, [(name, bytes)])."""
    src = samples_dir / (s.file if kind == "images" else s.mask_file)
    stem = f"{kind}/{int(s.index):06d}"
    is_mask = kind == "masks"
    if fmt == "png":
        if src.name.endswith(".png"):
            return f"{stem}.png", [(f"{stem}.png", src.read_bytes())]
        arr, _ = read_sample_file(src)
        return f"{stem}.png", [(f"{stem}.png", png_bytes(arr))]
    if fmt == "nifti":
        if src.name.endswith(".nii.gz"):
            return f"{stem}.nii.gz", [(f"{stem}.nii.gz", src.read_bytes())]
        arr, spacing = read_sample_file(src)
        return f"{stem}.nii.gz", [(f"{stem}.nii.gz", _nifti_bytes(arr, spacing or ctx.spacing_2d, is_mask))]
    # dicom: one file for a 2D image, a folder (one series) for a volume

    arr, spacing = read_sample_file(src)
    if is_mask:
        arr = (arr > 0.5).astype(np.float32)
    volume = arr.ndim == 4
    files = encode_dicom_series(
        arr,
        sample_id=_sample_id(s),
        model_id=s.model_id,
        spacing=spacing if volume else ctx.spacing_2d,
        modality=ctx.modality,
        seed=int(s.seed),
        value_range=(0.0, 1.0) if is_mask else ctx.value_range,
        series_number=2 if is_mask else 1,
        series_label="mask" if is_mask else "",
    )
    if not volume:
        return f"{stem}.dcm", [(f"{stem}.dcm", files[0])]
    return stem, [(f"{stem}/{k + 1:04d}.dcm", data) for k, data in enumerate(files)]


def _nifti_bytes(arr: np.ndarray, spacing: Sequence[float] | None, is_mask: bool) -> bytes:
    """A 2D (C, H, W) image as a 1-slice NIfTI volume (H, W, 1[, C]), gzip with mtime 0."""

    plane = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)  # (H, W) or (H, W, C)
    vol = plane[:, :, None] if plane.ndim == 2 else plane[:, :, None, :]
    sh, sw = (float(spacing[-2]), float(spacing[-1])) if spacing else (1.0, 1.0)
    data = (vol > 0.5).astype(np.uint8) if is_mask else vol.astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([sh, sw, 1.0, 1.0]))
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), mtime=0)


def _write_npz(fp: BinaryIO, samples_dir: Path, samples: list[ReleasedSample], ctx: _ExportContext) -> None:
    """Write cohort.npz into ``fp``, one sample at a time (each .npy member is streamed)."""
    n = len(samples)
    has_masks = any(s.mask_file for s in samples)
    if has_masks and not all(s.mask_file for s in samples):
        raise InvalidInputError("only some released samples have a mask", field="released")
    with zipfile.ZipFile(fp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as z:
        for key, rel_of in (("images", "file"), ("masks", "mask_file")):
            if key == "masks" and not has_masks:
                continue
            shape = None
            if n == 0:
                _npz_member(z, key, np.zeros((0,), np.float32 if key == "images" else np.uint8))
                continue
            with z.open(key + ".npy", "w", force_zip64=True) as out:
                for s in samples:
                    path = samples_dir / getattr(s, rel_of)
                    arr, _ = read_sample_file(path)
                    if shape is None:
                        shape = arr.shape
                        dtype = "<f4" if key == "images" else "|u1"
                        np.lib.format.write_array_header_2_0(
                            out, {"descr": dtype, "fortran_order": False, "shape": (n, *shape)}
                        )
                    elif arr.shape != shape:
                        raise InvalidInputError(f"has shape {arr.shape}, the first sample {shape}", path=path)
                    block = arr.astype("<f4") if key == "images" else (arr > 0.5).astype(np.uint8)
                    out.write(np.ascontiguousarray(block).tobytes())
        _npz_member(z, "labels", np.asarray([ctx.labels[s.class_name] for s in samples], dtype=np.int64))
        _npz_member(z, "index", np.asarray([int(s.index) for s in samples], dtype=np.int64))


def _npz_member(z: zipfile.ZipFile, key: str, arr: np.ndarray) -> None:
    with z.open(key + ".npy", "w", force_zip64=True) as out:
        np.lib.format.write_array(out, arr, allow_pickle=False)


# --- the text members --------------------------------------------------------------------------


def _flatten(scores: Mapping[str, Any], prefix: str = "score_") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "_"))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, default=str)
        else:
            flat[name] = "" if value is None else value
    return flat


def _row(s: ReleasedSample, file: str, mask_file: str, ctx: _ExportContext, npz_row: int | None = None) -> dict[str, Any]:
    row = {
        "file": file, "mask_file": mask_file, "class": s.class_name, "label": ctx.labels[s.class_name],
        "index": int(s.index), "seed": int(s.seed), "model_id": s.model_id,
        "checkpoint_sha256": s.checkpoint_sha256, **_flatten(s.scores or {}),
    }
    if npz_row is not None:
        row["npz_row"] = npz_row
    return row


def _manifest_columns(samples: Sequence[ReleasedSample], *, npz: bool) -> list[str]:
    scores = sorted({k for s in samples for k in _flatten(s.scores or {})})
    return MANIFEST_COLUMNS + (["npz_row"] if npz else []) + scores


def _datalist_head(ctx: _ExportContext, fmt: str, n: int, *, volumes: bool) -> str:
    """The opening of datalist.json up to the ``training`` list; items follow one by one."""
    head = {
        "name": f"synthcohort cohort of {ctx.dataset_id or 'unknown dataset'}",
        "description": "SYNTHETIC images generated by synthcohort; no real patient.",
        "tensorImageSize": "3D" if volumes else "2D",
        "labels": {str(i): c for c, i in sorted(ctx.labels.items(), key=lambda kv: kv[1])},
        "format": fmt,
        "numTraining": n,
    }
    text = json.dumps(head, indent=2)
    return text[: text.rindex("}")].rstrip() + ',\n  "training": ['


def _datalist_item(row: dict[str, Any], *, first: bool) -> str:
    item: dict[str, Any] = {"image": row["file"], "label": row["label"]}
    if row["mask_file"]:
        item["mask"] = row["mask_file"]
    if "npz_row" in row:
        item["npz_row"] = row["npz_row"]
    return ("\n    " if first else ",\n    ") + json.dumps(item)


class _Spool:
    """Text written in order and read back in pieces; kept in memory up to CHUNK_BYTES, then on disk."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=CHUNK_BYTES, mode="w+b")
        self.size = 0

    def write(self, text: str) -> int:
        data = text.encode("utf-8")
        self._file.write(data)
        self.size += len(data)
        return len(text)

    def pieces(self) -> Iterator[bytes]:
        self._file.seek(0)
        return iter(lambda: self._file.read(CHUNK_BYTES), b"")

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


# --- archive writers over a non-seekable buffer ------------------------------------------------


def _pieces(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_BYTES):
        yield bytes(view[start : start + CHUNK_BYTES])
    if not data:
        yield b""


class _Sink:
    """A write-only, non-seekable file object whose content is taken out with :meth:`drain`."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def flush(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._buf)

    def drain(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


class _ZipWriter:
    def __init__(self, sink: _Sink):
        self.zip = zipfile.ZipFile(sink, "w", allowZip64=True)  # type: ignore[arg-type]

    def open(self, name: str, size: int, compress: bool):
        info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        info.file_size = size  # lets zipfile choose zip64 up front for a big member
        return self.zip.open(info, "w")

    def close(self, member) -> None:
        member.close()

    def finish(self) -> None:
        self.zip.close()


class _TarMember:
    def __init__(self, out, name: str, size: int):
        self.out, self.name, self.size, self.written = out, name, size, 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.written > self.size:
            raise RuntimeError(f"tar member {self.name}: more bytes than declared")
        self.out.write(data)


class _TarWriter:
    """POSIX (pax) tar written sequentially: header, data, padding to 512; two zero blocks at the
    end, padded to a 10240-byte record (what ``tarfile`` in stream mode writes)."""

    def __init__(self, sink: _Sink, gz: bool):
        self.sink = sink
        self.out = gzip.GzipFile(fileobj=sink, mode="wb", mtime=0) if gz else sink
        self.offset = 0

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.offset += len(data)

    def open(self, name: str, size: int, compress: bool) -> _TarMember:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, _EPOCH, 0o644
        info.uname = info.gname = "synthcohort"
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        member = _TarMember(self, name, size)
        return member

    def write(self, data: bytes) -> None:
        self._write(data)

    def close(self, member: _TarMember) -> None:
        if member.written != member.size:
            raise RuntimeError(f"tar member {member.name}: {member.written} bytes, declared {member.size}")
        remainder = member.size % tarfile.BLOCKSIZE
        if remainder:
            self._write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))

    def finish(self) -> None:
        self._write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        remainder = self.offset % tarfile.RECORDSIZE
        if remainder:
            self._write(tarfile.NUL * (tarfile.RECORDSIZE - remainder))
        if self.out is not self.sink:
            self.out.close()


def _check_choice(value: str, choices: Sequence[str], name: str) -> None:
    if value not in choices:
        raise InvalidInputError(f"{value!r} is not one of {', '.join(choices)}", field=name)
