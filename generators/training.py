"""From a stored dataset version to a trained model under ``models/<mdl-id>/``, and back.

The service's workers call :func:`train_model` and :func:`sample_model`; the CLI calls the
same functions. A model directory holds ``checkpoint.pt`` (everything needed to resume or
sample, see :meth:`generators.base.Generator.checkpoint`) and ``model.json`` (a
:class:`ModelRecord`). Training is class-conditional on every class of the train split, so
the minority class borrows structure from the others; the record names the target class.
If ``checkpoint.pt`` already exists, training resumes from it: that is how a job redelivered
after its worker died continues where the last checkpoint left it.

A training run that is stopped by a signal or an error leaves its record at ``interrupted``,
with the step of the checkpoint it can resume from; one whose process vanished without a word
(SIGKILL, a power cut) is still ``training`` on disk, and :attr:`ModelRecord.state` reads it as
``interrupted`` once that process is gone.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ValidationError

from synthcohort.core import layout
from synthcohort.core.atomic import atomic_write_text, sha256_file
from synthcohort.core.device import select_device
from synthcohort.core.errors import InvalidInputError, NotFoundError
from synthcohort.core.progress import Progress, ProgressCallback
from synthcohort.core.seeding import derive_seed, numpy_rng
from synthcohort.core.settings import get_settings
from synthcohort.core.signals import signal_name
from synthcohort.core.version import code_version
from synthcohort.generators.base import Generator, GeneratorSpec, TrainingData
from synthcohort.generators.presets import resolve_preset
from synthcohort.generators.registry import get_generator
from synthcohort.imaging.sample_dir import write_sample_dir
from synthcohort.store.datasets import DatasetStore

MODEL_ID = re.compile(r"^mdl-[0-9a-f]{12}$")
SAMPLE_CHUNK = 64  # images per generate call; fixed, so a seed always means the same images
# config fields that may differ between the first run and a resume without changing the result
RESUME_FREE_FIELDS = {"checkpoint_every", "log_every"}


class ModelRecord(BaseModel):
    """``model.json``: what was trained, on what, how far, and the checkpoint's checksum."""

    model_id: str
    dataset_id: str
    class_name: str  # the target (minority) class; the model knows every class in ``classes``
    class_index: int
    classes: list[str]
    generator: str
    steps: int  # requested
    step: int  # reached (less than ``steps`` when stopped); when interrupted, that of the checkpoint
    status: Literal["training", "stopped", "interrupted", "complete"]
    seed: int
    mask_conditioned: bool
    config: dict[str, Any]
    preset: str = "none"  # the presets merged under the user's config, "+"-joined (generators.presets)
    spec: dict[str, Any]
    spacing: list[float] | None = None
    checkpoint_sha256: str | None = None
    code_version: dict[str, Any] | str  # core.version.code_version() (a bare version string in old records)
    created_at: str
    updated_at: str
    history: dict[str, Any] = {}  # summary: logged points, first and last metrics
    interrupted_by: str | None = None  # the exception or signal that stopped an interrupted run
    process: dict[str, Any] | None = None  # host and pid of the process training it, while ``training``
    torch_threads: int | None = None  # torch's intra-op threads in the run that wrote it: its images_per_s depend on it

    @property
    def state(self) -> str:
        """``status``, except that a ``training`` record whose process is gone (same host, pid not
        running) is ``interrupted``: it can be resumed with the same model id."""
        if self.status == "training" and self.process and self.process.get("host") == socket.gethostname():
            if not _pid_alive(int(self.process.get("pid") or 0)):
                return "interrupted"
        return self.status


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def new_model_id() -> str:
    return "mdl-" + uuid.uuid4().hex[:12]


def model_dir(model_id: str) -> Path:
    if not MODEL_ID.match(model_id or ""):
        raise InvalidInputError(f"{model_id!r} is not a model id (mdl- and 12 hex digits)", field="model_id")
    return layout.model_dir(model_id)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _history_summary(history: list[dict[str, float]]) -> dict[str, Any]:
    if not history:
        return {"logged": 0}
    return {"logged": len(history), "first": history[0], "last": history[-1]}


def _make_config(family: type[Generator], config: dict | None, checkpoint_every: int | None):
    fields = dict(config or {})
    if checkpoint_every is not None:
        fields["checkpoint_every"] = int(checkpoint_every)
    try:
        return family.Config(**fields)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or '?'}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid {family.name} config ({reasons})", field="config") from None


def _write_record(record: ModelRecord) -> None:
    atomic_write_text(model_dir(record.model_id) / layout.MODEL_RECORD, record.model_dump_json(indent=2))


def read_record(model_id: str) -> ModelRecord:
    """The ``model.json`` of a model; NotFoundError if there is none."""
    path = model_dir(model_id) / layout.MODEL_RECORD
    if not path.is_file():
        raise NotFoundError(f"no model {model_id!r}", field="model_id")
    return ModelRecord.model_validate_json(path.read_text(encoding="utf-8"))


def train_model(dataset_id: str, class_name: str, generator: str, *, steps: int, seed: int = 0,
                mask: bool = False, config: dict | None = None, model_id: str | None = None,
                device: str | None = None, progress: ProgressCallback | None = None,
                should_stop: Callable[[], bool] | None = None,
                checkpoint_every: int | None = None, preset: str = "auto") -> ModelRecord:
    """Train (or resume) ``generator`` on the train split of ``dataset_id`` for ``class_name``.

    ``preset`` (:mod:`generators.presets`): "auto" uses the small-data settings for a small 2D
    class when ``config`` is empty, and a latent-diffusion Bernoulli decoder for binary images;
    "small-data" always merges them under ``config``; "none" never."""

    family = get_generator(generator)
    if int(steps) < 1:
        raise InvalidInputError(f"must be at least 1, got {steps}", field="steps")
    ds = DatasetStore().get(dataset_id)
    meta = ds.meta
    class_index = ds.class_index(class_name)
    if mask and not meta.has_masks:
        raise InvalidInputError(f"dataset {dataset_id} has no masks to condition on", field="mask")
    train = ds.split("train")
    if not np.any(train.labels == class_index):
        raise InvalidInputError(f"the train split of {dataset_id} has no {class_name!r} images", field="class")
    preset_name, preset_fields = resolve_preset(
        preset, family.name, class_train_images=int((train.labels == class_index).sum()),
        spatial_dims=meta.spatial_dims, image_size=meta.image_size, user_config=config,
        images=train.images)
    cfg = _make_config(family, {**preset_fields, **(config or {})}, checkpoint_every)
    spec = GeneratorSpec(spatial_dims=meta.spatial_dims, in_channels=meta.channels,
                         image_size=tuple(int(s) for s in meta.image_size),
                         num_classes=len(meta.classes), mask_conditioned=bool(mask))

    model_id = model_id or new_model_id()
    mdir = model_dir(model_id)
    ckpt = mdir / layout.CHECKPOINT
    dev = select_device(device or get_settings().device)
    created_at = _now()
    if ckpt.is_file():  # a redelivered job: continue from the last checkpoint
        model = Generator.load(ckpt, dev)
        previous = read_record(model_id) if (mdir / layout.MODEL_RECORD).is_file() else None
        _check_resume(model, previous, family, spec, cfg, seed, dataset_id, class_name)
        model.config.checkpoint_every = cfg.checkpoint_every
        model.config.log_every = cfg.log_every
        created_at = previous.created_at if previous else created_at
    else:
        if (mdir / layout.MODEL_RECORD).is_file():
            prev = read_record(model_id)
            if prev.dataset_id != dataset_id or prev.generator != family.name:
                raise InvalidInputError(f"{model_id} already exists for another job", field="model_id")
        model = family(spec, cfg, device=dev, seed=seed)

    def record(status: str, sha: str | None, step: int | None = None, **extra: Any) -> ModelRecord:
        return ModelRecord(
            model_id=model_id, dataset_id=dataset_id, class_name=class_name, class_index=class_index,
            classes=list(meta.classes), generator=family.name, steps=int(steps),
            step=model.step if step is None else step,
            status=status, seed=int(seed), mask_conditioned=bool(mask), config=model.config.model_dump(),
            preset=preset_name,
            spec=asdict(spec), spacing=list(meta.spacing) if meta.spacing else None,
            checkpoint_sha256=sha, code_version=code_version(), created_at=created_at, updated_at=_now(),
            history=_history_summary(model.history), torch_threads=torch.get_num_threads(), **extra,
        )

    _write_record(record("training", sha256_file(ckpt) if ckpt.is_file() else None,
                         process={"host": socket.gethostname(), "pid": os.getpid()}))
    data = TrainingData(train.images, train.labels, train.masks if mask else None,
                        class_names=tuple(meta.classes), dataset_id=dataset_id)
    try:
        model.fit(data, int(steps), progress=progress, checkpoint_path=ckpt, should_stop=should_stop)
    except BaseException as exc:  # a signal (SystemExit, KeyboardInterrupt) or an error: say so, resumable
        saved = ckpt.is_file()
        _write_record(record("interrupted", sha256_file(ckpt) if saved else None,
                             step=model.saved_step if saved else 0, interrupted_by=_what_stopped(exc)))
        raise
    final = record("complete" if model.step >= int(steps) else "stopped", sha256_file(ckpt))
    _write_record(final)
    return final


def _what_stopped(exc: BaseException) -> str:
    name = signal_name(exc.code) if isinstance(exc, SystemExit) else None
    return name or type(exc).__name__ + (f": {exc}" if str(exc) else "")


def _check_resume(model: Generator, previous: ModelRecord | None, family: type[Generator],
                  spec: GeneratorSpec, cfg, seed: int, dataset_id: str, class_name: str) -> None:
    """A checkpoint is only continued by the same job: same family, data, spec, seed, config."""
    def differs(what: str) -> InvalidInputError:
        return InvalidInputError(f"its existing checkpoint was trained with another {what}; "
                                 "use a new model id", field="model_id")

    if model.name != family.name:
        raise differs("generator")
    if model.spec != spec:
        raise differs("dataset shape or mask setting")
    if model.seed != int(seed):
        raise differs("seed")
    mine = {k: v for k, v in model.config.model_dump().items() if k not in RESUME_FREE_FIELDS}
    theirs = {k: v for k, v in cfg.model_dump().items() if k not in RESUME_FREE_FIELDS}
    if mine != theirs:
        raise differs("config")
    if previous is not None and (previous.dataset_id != dataset_id or previous.class_name != class_name):
        raise differs("dataset or class")


def load_model(model_id: str, device: str | None = None) -> tuple[Generator, ModelRecord]:
    """The trained generator (on ``device``, default from settings) and its record."""
    rec = read_record(model_id)
    ckpt = model_dir(model_id) / layout.CHECKPOINT
    if not ckpt.is_file():
        raise NotFoundError(f"model {model_id} has no checkpoint yet (status {rec.status})", path=ckpt)
    if rec.checkpoint_sha256 and sha256_file(ckpt) != rec.checkpoint_sha256:
        raise InvalidInputError("checksum differs from model.json (corrupt or replaced)", path=ckpt)
    model = Generator.load(ckpt, select_device(device or get_settings().device))
    return model, rec


def list_models() -> list[ModelRecord]:
    """Every model with a ``model.json``, oldest first."""
    root = layout.models_dir()
    if not root.is_dir():
        return []
    out = [read_record(d.name) for d in root.iterdir() if MODEL_ID.match(d.name) and (d / layout.MODEL_RECORD).is_file()]
    return sorted(out, key=lambda r: (r.created_at, r.model_id))


def sample_model(model_id: str, n: int, *, seed: int, out_dir: Path, class_name: str | None = None,
                 device: str | None = None, progress: ProgressCallback | None = None) -> list[dict[str, str]]:
    """Write ``n`` samples of ``class_name`` (default: the model's target class) as a sample
    directory; a mask-conditioned model gets masks drawn (seeded) from the real train-split
    masks of that class. Same seed, device and checkpoint → the same files."""
    if int(n) < 1:
        raise InvalidInputError(f"must be at least 1, got {n}", field="n")
    model, rec = load_model(model_id, device)
    class_name = class_name or rec.class_name
    if class_name not in rec.classes:
        raise InvalidInputError(f"unknown class {class_name!r}; the model knows {', '.join(rec.classes)}",
                                field="class")
    ci = rec.classes.index(class_name)
    masks = _draw_masks(rec, ci, int(n), seed) if rec.mask_conditioned else None
    images = []
    for k, start in enumerate(range(0, int(n), SAMPLE_CHUNK)):
        b = min(SAMPLE_CHUNK, int(n) - start)
        m = None if masks is None else masks[start:start + b]
        images.append(model.sample(b, ci, seed=derive_seed(seed, "chunk", k), masks=m, batch_size=SAMPLE_CHUNK))
        if progress:
            progress(Progress("sample", start + b, int(n)))
    return write_sample_dir(Path(out_dir), np.concatenate(images), class_name=class_name, seed=int(seed),
                            model_id=model_id, masks=masks,
                            spacing=tuple(rec.spacing) if rec.spacing else None)


def _draw_masks(rec: ModelRecord, class_index: int, n: int, seed: int) -> np.ndarray:
    train = DatasetStore().get(rec.dataset_id).split("train")
    if train.masks is None:
        raise InvalidInputError(f"dataset {rec.dataset_id} has no masks", field="mask")
    pool = train.masks[train.labels == class_index]
    if len(pool) == 0:
        raise InvalidInputError(f"no {rec.classes[class_index]!r} masks in the train split", field="class")
    idx = numpy_rng(derive_seed(seed, "masks", class_index)).integers(0, len(pool), size=n)
    return pool[idx].astype(np.uint8)

