"""The data root's layout (``SYNTHCOHORT_HOME``): the one place that spells its paths.

::

    datasets/<ds-id>/     dataset.json, samples.csv, train.npz, val.npz, test.npz   (immutable)
    models/<mdl-id>/      checkpoint.pt, model.json
    cohorts/<coh-id>/     samples/ (a sample dir), report/report.json, report.html, *.png
    uploads/<id>/         an upload until its import finishes
    workers/<name>.json   a live worker's heartbeat
    cache/                encoders per dataset version, downloaded cohorts
    synthcohort.db        metadata (SQLite default), broker.db (embedded Celery broker)

Every function reads the settings when called, so a test that changes ``SYNTHCOHORT_HOME``
and clears ``get_settings`` sees the new root.
"""

from __future__ import annotations

from pathlib import Path

from synthcohort.core.settings import get_settings

CHECKPOINT = "checkpoint.pt"
MODEL_RECORD = "model.json"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


def root() -> Path:
    return get_settings().root


def datasets_dir() -> Path:
    return root() / "datasets"


def models_dir() -> Path:
    return root() / "models"


def model_dir(model_id: str) -> Path:
    return models_dir() / model_id


def cohorts_dir() -> Path:
    return root() / "cohorts"


def cohort_dir(cohort_id: str) -> Path:
    return cohorts_dir() / cohort_id


def cohort_samples_dir(cohort_id: str) -> Path:
    return cohort_dir(cohort_id) / "samples"


def cohort_report_dir(cohort_id: str) -> Path:
    return cohort_dir(cohort_id) / "report"


def workers_dir() -> Path:
    """One heartbeat file per live worker (``workers.health``), read by ``/v1/health``."""
    return root() / "workers"


def uploads_dir() -> Path:
    return root() / "uploads"


def cache_dir() -> Path:
    return root() / "cache"
