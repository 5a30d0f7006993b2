"""Request and response bodies of the REST API (pydantic). Field names are the contract in
the service README / OpenAPI document; ``extra="forbid"`` makes a misspelt field a 422 naming it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_serializer,
    field_validator,
    model_validator,
)

from synthcohort.generators.presets import PresetName
from synthcohort.validation.config import MIN_SAMPLES, ValidationConfig

T = TypeVar("T")


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


# A moment in time, always with its zone: SQLite hands back naive datetimes on a reload, so
# without this a replayed answer would lose the "Z" the first one had.
Instant = Annotated[datetime, AfterValidator(_utc)]

SEED_MAX = 2**31 - 1  # seeds are stored in 32-bit integer columns
MAX_COHORT_COUNT = 100_000
MAX_STEPS = 10_000_000
SampleFormat = Literal["png", "nifti", "dicom", "npz"]
ArchiveKind = Literal["zip", "tar", "tar.gz"]
PRESET_HELP = ("Settings merged under `config`: auto (small-data for a small 2D class when `config` is empty; a "
               "Bernoulli decoder for latent diffusion on binary images), small-data, none.")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


# ---------------------------------------------------------------- jobs
class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    stage: str | None
    percent: float
    eta_s: float | None
    metrics: dict[str, Any]
    error: str | None
    target_id: str | None
    created_at: Instant
    updated_at: Instant


class JobAccepted(BaseModel):
    job_id: str
    status: str


# ---------------------------------------------------------------- datasets
class DatasetPathRequest(Request):
    """Register a file or folder already on the server (admin only)."""

    path: str = Field(min_length=1, description="A path on the server: a MedMNIST .npz, a folder or an archive.")
    name: str | None = Field(default=None, max_length=200)
    format: str = Field(default="auto", max_length=40)
    modality: str | None = Field(default=None, max_length=20)
    size: list[int] | None = Field(default=None, description="Resample to (H, W) or (D, H, W).")
    normalise: str | None = Field(default=None, max_length=200)
    classes: list[str] | None = Field(default=None, description="Label names in label order.")
    class_name: str | None = Field(default=None, max_length=200, description="The class of a source without classes.")
    seed: int = Field(default=0, ge=0, le=SEED_MAX)


class DatasetOut(BaseModel):
    id: str
    name: str
    modality: str
    spatial_dims: int
    classes: list[str]
    counts: dict[str, Any]
    meta: dict[str, Any]
    shared: bool = Field(description="an admin shared it with every key; else only its importers (and admins) see it")
    created_at: Instant


class DatasetShare(Request):
    """Admin only: share a dataset version with every key, or take the sharing back."""

    shared: bool


# ---------------------------------------------------------------- models
class ModelCreate(Request):
    dataset_id: str = Field(min_length=1, max_length=40)
    class_name: str = Field(min_length=1, max_length=200)
    generator: str = Field(min_length=1, max_length=40)
    steps: int = Field(gt=0, le=MAX_STEPS)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    mask: bool = False
    config: dict[str, Any] = Field(default_factory=dict)
    preset: PresetName = Field(default="auto", description=PRESET_HELP)


class ModelAccepted(BaseModel):
    model_id: str
    job_id: str
    status: str


class ModelOut(BaseModel):
    id: str
    dataset_id: str
    class_name: str
    generator: str
    steps: int
    seed: int
    mask: bool
    config: dict[str, Any]
    status: str
    checkpoint_sha256: str | None
    job_id: str | None
    created_at: Instant
    history: list[Any] | dict[str, Any] | None = None
    code_version: dict[str, Any] | str | None = Field(
        default=None, description="The code that trained it: version, git commit, dirty, source (one model only).")


# ---------------------------------------------------------------- cohorts
# Every ValidationConfig field, optional, with its bounds, description and requester rule, so that
# /openapi.json documents the overrides. Only the fields a request sets are kept (and judged by
# validation.policy); the rest stay the service's defaults.
ValidationOverrides = create_model(
    "ValidationOverrides",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Validation settings to change. `requester` says what a non-admin key may do with each: "
            "set it, only raise or only lower it (the stricter way), or nothing (admin).",
    **{name: ((Annotated[f.annotation, *f.metadata] if f.metadata else f.annotation) | None,
              Field(None, description=f.description, json_schema_extra=f.json_schema_extra))
       for name, f in ValidationConfig.model_fields.items()},
)


class CohortCreate(Request):
    """Either ``model_id`` (sample a trained model) or dataset_id + class_name + generator +
    train_steps (train one first, inside the same job)."""

    model_id: str | None = Field(default=None, max_length=40)
    dataset_id: str | None = Field(default=None, max_length=40)
    class_name: str | None = Field(default=None, max_length=200)
    generator: str | None = Field(default=None, max_length=40)
    train_steps: int | None = Field(default=None, gt=0, le=MAX_STEPS)
    config: dict[str, Any] = Field(default_factory=dict, description="Generator config when training.")
    preset: PresetName = Field(default="auto", description=PRESET_HELP + " (when training)")
    mask: bool = Field(default=False, description="Train mask-conditioned (when training).")
    validation: ValidationOverrides | None = Field(default=None, description="Validation config overrides.")  # type: ignore[valid-type]
    count: int = Field(ge=MIN_SAMPLES, le=MAX_COHORT_COUNT,
                       description=f"Samples to generate; validation needs at least {MIN_SAMPLES}.")
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    format: SampleFormat = "png"

    @field_serializer("validation")
    def _only_what_was_set(self, value: BaseModel | None) -> dict[str, Any] | None:
        return value.model_dump(exclude_unset=True) if value is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> CohortCreate:
        train_fields = {"dataset_id": self.dataset_id, "class_name": self.class_name,
                        "generator": self.generator, "train_steps": self.train_steps}
        if self.model_id is not None:
            given = [k for k, v in train_fields.items() if v is not None]
            if given:
                raise ValueError(f"give model_id or {', '.join(train_fields)}, not both (got {', '.join(given)})")
        else:
            missing = [k for k, v in train_fields.items() if v is None]
            if missing:
                raise ValueError(f"without model_id these are needed: {', '.join(missing)}")
        return self


class CohortOut(BaseModel):
    id: str
    status: str
    verdict: str | None
    reasons: list[Any]
    count: int
    released: int
    held: int
    rejected: int
    job_id: str | None
    model_id: str | None
    dataset_id: str
    class_name: str
    generator: str
    seed: int
    format: str
    metrics: dict[str, Any]
    created_at: Instant


class ReviewOut(BaseModel):
    id: int
    decision: str
    reason_code: str | None = None
    reason: str
    reviewer_id: int
    reviewer_name: str
    created_at: Instant


class AuditEntry(ReviewOut):
    """One decision of a cohort's audit trail: which sample, who, when, why."""

    index: int


class SampleOut(BaseModel):
    index: int
    file: str
    sha256: str = Field(description="SHA-256 of the sample file: the same in the archive, and for a regeneration "
                                    "from the same model and seed")
    state: str
    flags: list[Any]
    nearest_train: Any = None
    reviews: list[ReviewOut]
    thumbnail_url: str | None


Decision = Literal["approve", "reject", "reset"]
ReasonCode = Literal["near_copy", "artefact", "implausible_anatomy", "wrong_class", "other"]


class ReviewCreate(Request):
    """approve → released, reject → rejected, reset → back to held (the undo of either; the
    audit trail keeps every step). A reject should say why in ``reason_code``; ``other`` needs
    the why in ``reason``."""

    decision: Decision
    reason_code: ReasonCode | None = Field(
        default=None, description="Why a sample is rejected (decision reject only); `other` needs a `reason`.")
    reason: str = Field(default="", max_length=4000, description="Free text: a comment, or the why of `other`.")

    @field_validator("reason_code")
    @classmethod
    def _code_with_reject(cls, code: str | None, info: ValidationInfo) -> str | None:
        if code is not None and info.data.get("decision") != "reject":
            raise ValueError("a reason code goes with decision reject only")
        return code

    @field_validator("reason")
    @classmethod
    def _other_says_why(cls, reason: str, info: ValidationInfo) -> str:
        if info.data.get("reason_code") == "other" and not reason.strip():
            raise ValueError("reason code other needs the reason in words")
        return reason


class MeOut(BaseModel):
    """The caller's key: who the page says is signed in, and which controls it offers."""

    id: int
    name: str
    role: str


class ImageArray(BaseModel):
    """An image's pixels for the review page's canvas (window/level, slices, mask overlay):
    ``data`` is base64 of little-endian uint16, C order, in ``shape``; value / 65535 is the
    [0, 1] intensity. ``mask`` (same spatial shape, one channel) is base64 of uint8 0/1."""

    shape: list[int] = Field(description="(C, H, W) or (C, D, H, W)")
    spatial_dims: int
    dtype: Literal["uint16"] = "uint16"
    data: str
    mask: str | None = None
    spacing: list[float] | None = None


class NearestImage(BaseModel):
    """A training image nearest to a synthetic sample, with the measure and the near-copy
    threshold it was judged by (``near_copy_when``: the side of the threshold that flags)."""

    space: Literal["features", "pixels"]
    sample_id: str
    measure: Literal["feature_distance", "pixel_correlation"]
    value: float | None
    threshold: float | None
    near_copy_when: Literal["at_or_below", "at_or_above"]
    image: ImageArray


class NearestOut(BaseModel):
    index: int
    items: list[NearestImage]
    outlier_radius: float | None = Field(
        default=None, description="An outlier is farther than this from every real image of the class (features).")


ReportPicture = Literal["grid_real.png", "grid_synthetic.png", "tsne.png", "ortho_real.png", "ortho_synthetic.png",
                        "spread.png"]


class WorkerHealth(BaseModel):
    name: str | None
    pid: int | None
    queues: list[str] | None
    age_s: float = Field(description="Seconds since the worker's last heartbeat.")


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="ok: the broker is reachable and at least one worker beats; degraded otherwise "
        "(requests are still accepted; their jobs wait for a worker).")
    database_revision: str | None
    broker_reachable: bool
    workers: list[WorkerHealth] = Field(description="Workers whose heartbeat is younger than the lease's stale age.")
