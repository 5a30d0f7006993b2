"""The validate stage of the pipeline, run as the real Celery task (in-process ``apply``) on real
BreastMNIST: it writes the report, the Sample rows with checksums and flags, and applies the
release rule; a planted near-copy of a training image is held. Failures are recorded verbatim
and leave nothing half written; a redelivered message changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthcohort.core import layout
from synthcohort.core.errors import InvalidInputError
from synthcohort.store.db import (
    Cohort,
    CohortStatus,
    DatasetRecord,
    Job,
    JobKind,
    JobStatus,
    ModelRecordRow,
    Role,
    Sample,
    SampleState,
    session_factory,
)

pytestmark = pytest.mark.shared_data

FAST_VALIDATION = {"bootstrap": 20, "encoder_epochs": 2, "utility": False, "tsne": False, "use_inception": False,
                   "kid_subsets": 5, "kid_subset_size": 20}
N_COPIES, N_OTHER = 4, 12


@pytest.fixture
def cohort_setup(synthcohort_home, shared_data):
    """A dataset, a model row and a cohort whose sample dir holds 4 exact copies of malignant
    training images and 12 real malignant validation images; the job waits for 'validate'."""
    from synthcohort.api.keys import create_api_key
    from synthcohort.imaging.sample_dir import write_sample_dir
    from synthcohort.store.ingest import import_path
    from synthcohort.store.migrate import upgrade_database

    upgrade_database()
    version = import_path(shared_data / "medmnist" / "breastmnist.npz", classes=["malignant", "normal_benign"],
                          modality="US")
    meta = version.meta
    train, val = version.split("train"), version.split("val")
    copies = train.images[train.labels == 0][:N_COPIES]
    others = val.images[val.labels == 0][:N_OTHER]
    images = np.concatenate([copies, others]).astype(np.float32)
    cohort_id, job_id, model_id = "coh-test0001", "job-test0001", "mdl-test0001"
    write_sample_dir(layout.cohorts_dir() / cohort_id / "samples", images, class_name="malignant",
                     seed=0, model_id=model_id)
    factory = session_factory()
    with factory() as s:
        # an admin's job: FAST_VALIDATION cuts the encoder's epochs, which only an admin may do
        owner, _ = create_api_key(s, Role.admin, "admin")
        s.add(DatasetRecord(id=meta.id, name=meta.name, modality=meta.modality, spatial_dims=meta.spatial_dims,
                            classes=list(meta.classes), counts=meta.counts, meta=meta.model_dump(mode="json")))
        s.add(Job(id=job_id, kind=JobKind.cohort, status=JobStatus.queued, stage="validate", target_id=cohort_id,
                  owner_id=owner.id, request={"model_id": model_id, "count": len(images), "seed": 0,
                                                  "validation": dict(FAST_VALIDATION)}))
        s.flush()
        s.add(ModelRecordRow(id=model_id, dataset_id=meta.id, class_name="malignant", generator="wgan-gp",
                             steps=1, seed=0, status=JobStatus.succeeded, checkpoint_sha256="0" * 64))
        s.flush()
        s.add(Cohort(id=cohort_id, dataset_id=meta.id, model_id=model_id, class_name="malignant",
                     generator="wgan-gp", count=len(images), seed=0, status=CohortStatus.sampling, job_id=job_id,
                     owner_id=owner.id))
        s.commit()
    return factory, job_id, cohort_id


def set_request(factory, job_id: str, **changes) -> None:
    with factory() as s:
        job = s.get(Job, job_id)
        job.request = {**job.request, **changes}
        s.commit()


def test_validate_stage_records_samples_and_holds_the_copies(cohort_setup):
    from synthcohort.core.atomic import sha256_file
    from synthcohort.workers.tasks import validate_cohort_task

    factory, job_id, cohort_id = cohort_setup
    validate_cohort_task.apply(args=[job_id])
    base = layout.cohorts_dir() / cohort_id
    with factory() as s:
        job, cohort = s.get(Job, job_id), s.get(Cohort, cohort_id)
        assert job.status == JobStatus.succeeded, job.error
        assert (job.percent, job.stage, job.attempts, job.error) == (100.0, "done", 1, None)
        assert cohort.status == CohortStatus.ready
        report = json.loads((base / "report" / "report.json").read_text())
        assert cohort.verdict.value == report["verdict"] and cohort.reasons == report["reasons"]
        assert set(cohort.metrics) == set(report["metrics"])
        assert report["provenance"]["cohort_id"] == cohort_id and report["provenance"]["job_id"] == job_id
        samples = s.query(Sample).filter(Sample.cohort_id == cohort_id).order_by(Sample.index).all()
        assert [x.index for x in samples] == list(range(N_COPIES + N_OTHER))
        for x in samples:
            assert x.sha256 == sha256_file(base / "samples" / x.file)
            expected = SampleState.held if (x.flags or cohort.verdict.value == "failed") else SampleState.released
            assert x.state == expected
        for x in samples[:N_COPIES]:  # exact copies of training images
            assert "near_copy" in {f["kind"] for f in x.flags}, x.flags
            assert x.state == SampleState.held
            assert "nearest_train" in x.scores
    assert not [p for p in base.iterdir() if p.name.startswith(".")]  # no temporary leftovers

    # a redelivered message finds the job finished and changes nothing
    before = (base / "report" / "report.json").stat().st_mtime_ns
    validate_cohort_task.apply(args=[job_id])
    with factory() as s:
        assert s.get(Job, job_id).attempts == 1
        assert s.query(Sample).filter(Sample.cohort_id == cohort_id).count() == N_COPIES + N_OTHER
    assert (base / "report" / "report.json").stat().st_mtime_ns == before


@pytest.mark.parametrize(("validation", "role", "message"), [
    ({"bogus": 1}, Role.admin, "Extra inputs are not permitted"),
    ({"similarity_threshold": 0.5}, Role.requester, "only an admin key may loosen a validation gate"),
    ({**FAST_VALIDATION}, Role.requester, "only an admin key may loosen a validation gate"),
])
def test_bad_validation_request_fails_the_job_cleanly(cohort_setup, validation, role, message):
    from synthcohort.api.keys import create_api_key
    from synthcohort.workers.tasks import validate_cohort_task

    factory, job_id, cohort_id = cohort_setup
    set_request(factory, job_id, validation=validation)
    with factory() as s:
        key, _ = create_api_key(s, role, "owner")
        s.get(Job, job_id).owner_id = key.id
        s.commit()
    validate_cohort_task.apply(args=[job_id])
    with factory() as s:
        job, cohort = s.get(Job, job_id), s.get(Cohort, cohort_id)
        assert job.status == JobStatus.failed and message in job.error, job.error
        assert cohort.status == CohortStatus.failed and cohort.verdict is None
        assert cohort.reasons == [job.error]
        assert s.query(Sample).filter(Sample.cohort_id == cohort_id).count() == 0
    assert not (layout.cohorts_dir() / cohort_id / "report").exists()


def test_the_worker_judges_overrides_by_the_owners_role(cohort_setup):
    from synthcohort.api.keys import create_api_key
    from synthcohort.workers.tasks import owner_role, request_validation

    factory, job_id, _ = cohort_setup
    with factory() as s:
        requester, _ = create_api_key(s, Role.requester, "requester")
        s.get(Job, job_id).owner_id = requester.id
        s.commit()
        assert owner_role(factory, s.get(Job, job_id)) == Role.requester
    set_request(factory, job_id, validation={"similarity_threshold": 0.95, "copy_quantile": 0.2})
    with factory() as s:
        cfg = request_validation(factory, s.get(Job, job_id))
    assert cfg.similarity_threshold == 0.95 and cfg.copy_quantile == 0.2
    set_request(factory, job_id, validation={"similarity_threshold": 0.5})
    with factory() as s, pytest.raises(InvalidInputError, match="only an admin"):
        request_validation(factory, s.get(Job, job_id))
