"""The job pipeline: import → (train) → sample → validate, one Celery task per stage.

Every task takes only the job id; the request lives in the ``Job`` row. A task claims the job
(:mod:`workers.lease`), skips its stage when the result is already there (a redelivered
message after a crash), otherwise does the work and commits the result rows in one
transaction, then hands the job to the next stage (``queued``) or finishes it. Files are
written with :func:`store.atomic.atomic_dir`, so nothing half written is ever visible.

Failures: a :class:`~synthcohort.errors.SynthcohortError` marks the job ``failed`` with its
message verbatim (and the model/cohort ``failed``); any other exception is recorded as an
internal error. Either way the chain stops (``Ignore``: the message is acknowledged, the next
stage is not sent). A cancel request stops training at the next step and marks everything
``cancelled``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import Ignore
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from synthcohort.core import layout
from synthcohort.core.atomic import atomic_dir, sha256_file
from synthcohort.core.errors import InvalidInputError, SynthcohortError
from synthcohort.core.progress import Progress, ProgressCallback
from synthcohort.core.settings import get_settings
from synthcohort.core.threads import apply_torch_threads, torch_threads
from synthcohort.imaging.sample_files import read_manifest
from synthcohort.store.db import (
    ApiKey,
    Cohort,
    CohortStatus,
    DatasetGrant,
    DatasetRecord,
    Job,
    JobKind,
    JobStatus,
    ModelRecordRow,
    Role,
    Sample,
    Verdict,
    session_factory,
    utcnow,
)
from synthcohort.store.ingest import import_path
from synthcohort.validation.config import ValidationConfig
from synthcohort.validation.policy import sample_state, validation_config
from synthcohort.workers.celery_app import app
from synthcohort.workers.health import host_slots
from synthcohort.workers.lease import Claim, JobLease, stale_s
from synthcohort.workers.progress import JobProgress, stage_spans

log = logging.getLogger(__name__)

TORCH_STAGES = ("train", "sample", "validate")
BUSY_RETRY_S = 10  # a copy of a stage another live worker runs waits this long, then looks again


def busy_retry_s() -> float:
    """A busy copy looks again after BUSY_RETRY_S, or sooner when leases go stale sooner."""
    return min(BUSY_RETRY_S, stale_s())


class StageCancelled(Exception):
    """Raised inside a stage when the job's cancel flag was seen."""


class ClaimLost(Exception):
    """Raised when another worker took the job over; this worker must write nothing more."""


class StageWait(Exception):
    """The stage cannot start yet (e.g. its model is still training): retry it later."""


# -- what a job consists of --------------------------------------------------------------------
def job_plan(job: Job) -> list[str]:
    """The stages of a job, in order (the chain :func:`workers.dispatch.enqueue_job` sends)."""
    if job.kind == JobKind.import_dataset:
        return ["import"]
    if job.kind == JobKind.train:
        return ["train"]
    if job.kind == JobKind.cohort:
        return (["train"] if _needs_training(job) else []) + ["sample", "validate"]
    raise InvalidInputError(f"unknown job kind {job.kind!r}", field="kind")


def _needs_training(job: Job) -> bool:
    """A cohort request names a trained model, or asks us to train one first."""
    return not (job.request or {}).get("model_id")


def cohort_model_id(job: Job) -> str:
    """The model a cohort job trains, fixed in advance so a redelivered job resumes it."""
    given = (job.request or {}).get("model_id")
    if given:
        return str(given)
    return "mdl-" + hashlib.sha256(f"{job.id}:model".encode()).hexdigest()[:12]  # generators.training.MODEL_ID


# -- the stage runner ---------------------------------------------------------------------------
StageWork = Callable[[JobLease, Job, sessionmaker[Session], Callable[..., JobProgress]], None]


def _stoppable(report: JobProgress, lease: JobLease) -> ProgressCallback:
    """A progress callback that also stops the stage at a report once the job is cancelled or the
    claim is lost: validation has no ``should_stop`` of its own, and its utility classifiers can run
    for many minutes on a CPU (their epochs report progress)."""
    def on_progress(p: Progress) -> None:
        report(p)
        if lease.should_stop():
            raise ClaimLost() if lease.lost else StageCancelled()
    return on_progress


def run_stage(task: Task, job_id: str, stage: str, work: StageWork) -> str:
    """Claim, run (or skip) one stage, then pass the job on. Returns the job id for logs."""
    factory = session_factory()
    with factory() as s:
        job = s.get(Job, job_id)
        if job is None:
            log.error("job %s: not in the database %s; message dropped", job_id, get_settings().sqlalchemy_url())
            raise Ignore()
        plan = job_plan(job)
    lease = JobLease(factory, job_id, stage)
    outcome = lease.claim(plan)
    if outcome is Claim.finished:
        log.info("job %s: already finished; %s not run", job_id, stage)
        raise Ignore()
    if outcome is Claim.passed:
        log.info("job %s: %s already done; passing on to the next stage", job_id, stage)
        return job_id
    if outcome is Claim.busy:
        log.info("job %s: held by a live worker; %s retries in %.0f s", job_id, stage, busy_retry_s())
        raise task.retry(countdown=busy_retry_s(), max_retries=None)
    with factory() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
    spans = stage_spans(plan)

    def progress(extra: dict[str, Any] | None = None) -> JobProgress:
        return JobProgress(lease, spans[stage], extra_metrics=extra)

    try:
        with lease:
            if job.cancel_requested:
                raise StageCancelled()
            if job.kind == JobKind.cohort and stage == plan[0]:
                request_validation(factory, job)  # refuse early, not after training
            if stage in TORCH_STAGES:  # this host's share of the CPUs, set in the thread that runs the work
                threads = apply_torch_threads(torch_threads(processes=host_slots()))
                log.info("job %s: %s with %d torch threads", job_id, stage, threads)
            work(lease, job, factory, progress)
            lease.check_now()
            if lease.lost:
                raise ClaimLost()
            if lease.cancelled:
                raise StageCancelled()
            _advance(lease, job, plan, stage, spans)
    except StageWait:
        lease.write({"status": JobStatus.queued})
        raise task.retry(countdown=busy_retry_s(), max_retries=None) from None
    except ClaimLost:
        log.warning("job %s: claim lost during %s; leaving it to its new holder", job_id, stage)
        raise Ignore() from None
    except StageCancelled:
        _finish_failed(lease, job, JobStatus.cancelled, "cancelled on request")
        raise Ignore() from None
    except SynthcohortError as exc:
        _finish_failed(lease, job, JobStatus.failed, exc.message)
        raise Ignore() from None
    except Ignore:
        raise
    except Exception as exc:  # a bug or an environment failure: record it, keep the trace in the log
        log.exception("job %s: %s failed", job_id, stage)
        _finish_failed(lease, job, JobStatus.failed, f"internal error in {stage}: {type(exc).__name__}: {exc}")
        raise Ignore() from None
    return job_id


def _advance(lease: JobLease, job: Job, plan: list[str], stage: str, spans: dict) -> None:
    """Stage done: the job waits for the next stage, or has succeeded."""
    i = plan.index(stage)
    if i + 1 < len(plan):
        values = {"status": JobStatus.queued, "stage": plan[i + 1], "percent": spans[stage][1], "eta_s": None}
    else:
        values = {"status": JobStatus.succeeded, "stage": "done", "percent": 100.0, "eta_s": None}
    with lease.factory() as s:
        res = s.execute(
            update(Job).where(Job.id == job.id, Job.attempts == lease.attempt, Job.status == JobStatus.running)
            .values(**values, updated_at=utcnow())
        )
        s.commit()
    if res.rowcount != 1:
        raise ClaimLost()


def _finish_failed(lease: JobLease, job: Job, status: JobStatus, message: str) -> None:
    """Job (and its model or cohort) ends ``failed``/``cancelled`` with ``message``."""
    with lease.factory() as s:
        current = s.get(Job, job.id)
        if current is None or not lease.owns(current):
            return
        current.status = status
        current.error = message
        current.eta_s = None
        if job.kind == JobKind.train and job.target_id:
            model = s.get(ModelRecordRow, job.target_id)
            if model is not None and model.status != JobStatus.succeeded:
                model.status = status
        if job.kind == JobKind.cohort and job.target_id:
            cohort = s.get(Cohort, job.target_id)
            if cohort is not None:
                cohort.status = CohortStatus.cancelled if status == JobStatus.cancelled else CohortStatus.failed
                if status == JobStatus.failed:
                    cohort.reasons = [message]
            model = s.get(ModelRecordRow, cohort_model_id(job))
            if model is not None and model.job_id == job.id and model.status != JobStatus.succeeded:
                model.status = status
        s.commit()
    if job.kind == JobKind.import_dataset:
        discard_upload(job.request or {})
    log.info("job %s: %s: %s", job.id, status.value, message)


# -- import -----------------------------------------------------------------------------------
def _import_kwargs(request: dict[str, Any], import_path: Callable) -> tuple[Path, dict[str, Any]]:
    """The request's fields that ``store.ingest.import_path`` takes, by name."""
    path = request.get("path") or request.get("upload_path")
    if not path:
        raise InvalidInputError("the import request names no file or path", field="path")
    params = inspect.signature(import_path).parameters
    kwargs = {k: v for k, v in request.items() if k in params and k != "path" and v is not None}
    if "size" in kwargs:
        kwargs["size"] = tuple(kwargs["size"])
    return Path(path), kwargs


def do_import(lease: JobLease, job: Job, factory: sessionmaker[Session], progress) -> None:
    if job.target_id:
        with factory() as s:
            if s.get(DatasetRecord, job.target_id) is not None:
                return  # done by an earlier delivery
    path, kwargs = _import_kwargs(job.request or {}, import_path)
    try:
        version = import_path(path, progress=progress(), **kwargs)
    except SynthcohortError as exc:
        raise _as_upload_error(job.request or {}, exc) from None
    meta = version.meta
    with factory() as s:
        current = s.get(Job, job.id)
        if current is None or not lease.owns(current):
            raise ClaimLost()
        row = s.get(DatasetRecord, meta.id)
        if row is None:
            s.add(DatasetRecord(
                id=meta.id, name=meta.name, modality=str(meta.modality), spatial_dims=meta.spatial_dims,
                classes=list(meta.classes), counts=json.loads(json.dumps(meta.counts)),
                meta=meta.model_dump(mode="json"), owner_id=job.owner_id,
            ))
            s.flush()
        elif row.owner_id is None:  # the API recorded the store's version a moment before us
            row.owner_id = job.owner_id
        if job.owner_id is not None and s.get(DatasetGrant, (meta.id, job.owner_id)) is None:
            s.add(DatasetGrant(dataset_id=meta.id, key_id=job.owner_id))  # same data, a second importer
        current.target_id = meta.id
        s.commit()
    discard_upload(job.request or {})  # the version is in the store now


def _as_upload_error(request: dict[str, Any], exc: SynthcohortError) -> SynthcohortError:
    """An upload's error names ``upload <client name>`` (and the member), not the server's path."""
    if not request.get("upload"):
        return exc
    stored = str(request.get("path"))
    name = f"upload {request.get('filename') or Path(stored).name}"
    return type(exc)(exc.reason.replace(stored, "the upload"), path=name, field=exc.field, member=exc.member)


def discard_upload(request: dict[str, Any]) -> None:
    """Remove an upload's folder once its import has ended (done, failed or cancelled)."""
    if not request.get("upload") or not request.get("path"):
        return
    folder = Path(request["path"]).parent
    if folder.parent == layout.uploads_dir():
        shutil.rmtree(folder, ignore_errors=True)


@app.task(bind=True, name="synthcohort.import_dataset", acks_late=True)
def import_dataset(self: Task, job_id: str) -> str:
    return run_stage(self, job_id, "import", do_import)


# -- train --------------------------------------------------------------------------------------
def _checkpoint_every(steps: int) -> int:
    """Save often enough that a killed worker loses ≤ 5 % of the run (tiny models: cheap)."""
    return max(1, min(500, steps // 20))


def _checkpoint_step(path: Path) -> int:
    """The step a checkpoint holds (0 when absent): recorded as ``resumed_from_step``."""
    if not path.exists():
        return 0
    import torch  # here, not at module level: the API imports this module to send tasks

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return int(ckpt.get("step", 0))


def _train_request(job: Job) -> dict[str, Any]:
    """Model id and training arguments, for a train job or a cohort job that trains."""
    r = job.request or {}
    if job.kind == JobKind.train:
        if not job.target_id:
            raise InvalidInputError("train job has no model id", field="target_id")
        return {"model_id": job.target_id, "dataset_id": r["dataset_id"], "class_name": r["class_name"],
                "generator": r["generator"], "steps": int(r["steps"]), "seed": int(r.get("seed", 0)),
                "mask": bool(r.get("mask", False)), "config": r.get("config") or None,
                "preset": r.get("preset", "auto")}
    return {"model_id": cohort_model_id(job), "dataset_id": r["dataset_id"], "class_name": r["class_name"],
            "generator": r["generator"], "steps": int(r.get("train_steps") or r.get("steps")),
            "seed": int(r.get("train_seed", r.get("seed", 0))), "mask": bool(r.get("mask", False)),
            "config": r.get("config") or None, "preset": r.get("preset", "auto")}


def do_train(lease: JobLease, job: Job, factory: sessionmaker[Session], progress) -> None:
    from synthcohort.generators.training import train_model  # the torch boundary: the API imports this module

    t = _train_request(job)
    model_id = t["model_id"]
    with factory() as s:
        model = s.get(ModelRecordRow, model_id)
        if model is not None and model.status == JobStatus.succeeded and model.checkpoint_sha256:
            return  # trained by an earlier delivery
        if model is None:
            model = ModelRecordRow(
                id=model_id, dataset_id=t["dataset_id"], class_name=t["class_name"],
                generator=t["generator"], steps=t["steps"], seed=t["seed"], mask_conditioned=t["mask"],
                config=t["config"] or {}, job_id=job.id, owner_id=job.owner_id,
            )
            s.add(model)
        model.status = JobStatus.running
        if job.kind == JobKind.cohort:
            cohort = s.get(Cohort, job.target_id)
            if cohort is not None:
                cohort.model_id = model_id
                cohort.status = CohortStatus.training
        s.commit()
    ckpt = layout.model_dir(model_id) / layout.CHECKPOINT
    start = _checkpoint_step(ckpt)
    if start:
        log.info("job %s: resuming %s from step %d", job.id, model_id, start)
    lease.write({"metrics": {"resumed_from_step": start}})
    record = train_model(
        t["dataset_id"], t["class_name"], t["generator"], steps=t["steps"], seed=t["seed"], mask=t["mask"],
        config=t["config"], model_id=model_id, device=get_settings().device,
        progress=progress({"resumed_from_step": start}), should_stop=lease.should_stop,
        checkpoint_every=_checkpoint_every(t["steps"]), preset=t["preset"],
    )
    if lease.lost:
        raise ClaimLost()
    if lease.cancelled:
        raise StageCancelled()
    digest = sha256_file(ckpt)
    with factory() as s:
        current = s.get(Job, job.id)
        if current is None or not lease.owns(current):
            raise ClaimLost()
        model = s.get(ModelRecordRow, model_id)
        model.status = JobStatus.succeeded
        model.checkpoint_sha256 = digest
        model.config = record.config  # the effective config (preset and user fields): what made the model
        s.commit()


@app.task(bind=True, name="synthcohort.train_model", acks_late=True)
def train_model_task(self: Task, job_id: str) -> str:
    return run_stage(self, job_id, "train", do_train)


# -- sample -------------------------------------------------------------------------------------
def do_sample(lease: JobLease, job: Job, factory: sessionmaker[Session], progress) -> None:
    from synthcohort.generators.training import sample_model  # the torch boundary: the API imports this module

    model_id = cohort_model_id(job)
    with factory() as s:
        cohort = s.get(Cohort, job.target_id)
        if cohort is None:
            raise InvalidInputError(f"cohort {job.target_id} not found", field="target_id")
        model = s.get(ModelRecordRow, model_id)
        if model is None:
            raise InvalidInputError(f"model {model_id} not found", field="model_id")
        if model.status in (JobStatus.failed, JobStatus.cancelled):
            raise InvalidInputError(f"model {model_id} is {model.status.value}, not trained", field="model_id")
        if model.status != JobStatus.succeeded:
            raise StageWait()  # its own train job is still running
        cohort.model_id = model_id
        cohort.status = CohortStatus.sampling
        s.commit()
        count, seed, class_name = cohort.count, cohort.seed, cohort.class_name
    out = layout.cohort_samples_dir(job.target_id)
    if (out / "manifest.csv").exists():
        return  # sampled by an earlier delivery
    with atomic_dir(out) as tmp:
        sample_model(model_id, count, seed=seed, out_dir=tmp, class_name=class_name,
                     device=get_settings().device, progress=progress())


@app.task(bind=True, name="synthcohort.sample_cohort", acks_late=True)
def sample_cohort(self: Task, job_id: str) -> str:
    return run_stage(self, job_id, "sample", do_sample)


# -- validate -----------------------------------------------------------------------------------
def sample_rows(cohort_id: str, samples_dir: Path, report: dict[str, Any]) -> list[Sample]:
    """``Sample`` rows from the manifest (file, checksum) and the report (flags, scores)."""
    by_index = {int(r["index"]): r for r in report.get("samples", [])}
    rows = []
    for m in read_manifest(samples_dir):
        idx = int(m["index"])
        r = by_index.get(idx, {})
        flags = list(r.get("flags") or [])
        scores: dict[str, Any] = {}
        if r.get("nearest_train") is not None:
            scores["nearest_train"] = r["nearest_train"]
        for f in flags:
            if f.get("score") is not None:
                scores[f"{f.get('kind')}_score"] = f["score"]
        rows.append(Sample(
            cohort_id=cohort_id, index=idx, file=m["file"], mask_file=m.get("mask_file") or None,
            sha256=sha256_file(samples_dir / m["file"]), flags=flags, scores=scores,
            state=sample_state(report["verdict"], flags),
        ))
    return rows


def owner_role(factory: sessionmaker[Session], job: Job) -> Role:
    """The role of the key that asked for the job; jobs made on the server itself count as admin."""
    if job.owner_id is None:
        return Role.admin
    with factory() as s:
        owner = s.get(ApiKey, job.owner_id)
        return owner.role if owner is not None else Role.requester


def request_validation(factory: sessionmaker[Session], job: Job) -> ValidationConfig | None:
    """The job's validation overrides, under the rule of ``validation.policy`` for its owner."""
    return validation_config((job.request or {}).get("validation"), admin=owner_role(factory, job) == Role.admin)


def do_validate(lease: JobLease, job: Job, factory: sessionmaker[Session], progress) -> None:
    from synthcohort.validation.pipeline import validate_cohort  # the torch boundary, as above

    with factory() as s:
        cohort = s.get(Cohort, job.target_id)
        if cohort is None:
            raise InvalidInputError(f"cohort {job.target_id} not found", field="target_id")
        if cohort.status == CohortStatus.ready and cohort.verdict is not None:
            return  # validated by an earlier delivery
        cohort.status = CohortStatus.validating
        s.commit()
        model = s.get(ModelRecordRow, cohort.model_id) if cohort.model_id else None
        provenance = {
            "cohort_id": cohort.id, "job_id": job.id, "dataset_id": cohort.dataset_id,
            "model_id": cohort.model_id, "generator": cohort.generator, "class_name": cohort.class_name,
            "count": cohort.count, "seed": cohort.seed,
            "checkpoint_sha256": model.checkpoint_sha256 if model else None,
        }  # the code version is the validation pipeline's own (core.version.code_version)
        dataset_id, class_name = cohort.dataset_id, cohort.class_name
    cfg = request_validation(factory, job)
    samples_dir, report_dir = layout.cohort_samples_dir(job.target_id), layout.cohort_report_dir(job.target_id)
    if not (report_dir / layout.REPORT_JSON).exists():
        with atomic_dir(report_dir) as tmp:
            validate_cohort(dataset_id, class_name, samples_dir, tmp, config=cfg,
                            provenance=provenance, progress=_stoppable(progress(), lease))
    report = json.loads((report_dir / layout.REPORT_JSON).read_text())
    rows = sample_rows(job.target_id, samples_dir, report)
    with factory() as s:
        current = s.get(Job, job.id)
        if current is None or not lease.owns(current):
            raise ClaimLost()
        cohort = s.get(Cohort, job.target_id)
        for old in s.query(Sample).filter(Sample.cohort_id == cohort.id).all():
            if not old.reviews:
                s.delete(old)
        s.flush()
        existing = {x.index for x in s.query(Sample).filter(Sample.cohort_id == cohort.id)}
        s.add_all([r for r in rows if r.index not in existing])
        cohort.verdict = Verdict(report["verdict"])
        cohort.reasons = list(report.get("reasons", []))
        cohort.metrics = report.get("metrics", {})
        cohort.status = CohortStatus.ready
        s.commit()


@app.task(bind=True, name="synthcohort.validate_cohort", acks_late=True)
def validate_cohort_task(self: Task, job_id: str) -> str:
    return run_stage(self, job_id, "validate", do_validate)


STAGE_TASKS: dict[str, Task] = {
    "import": import_dataset,
    "train": train_model_task,
    "sample": sample_cohort,
    "validate": validate_cohort_task,
}
